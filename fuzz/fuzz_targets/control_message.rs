//! Control-protocol frames on arbitrary bytes (what a hostile or broken peer can send to the
//! pnc's control socket or a proxy's PNC client): decoding never panics or over-allocates,
//! whatever decodes re-encodes and decodes again, and the streaming reader agrees with it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    control::protocol::fuzz_decode(data);
});
