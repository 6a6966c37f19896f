//! Control-protocol frames on arbitrary bytes (what a hostile or broken peer can send to the
//! pnc's control socket or a proxy's PNC client), for both directions: decoding never panics or
//! over-allocates, whatever decodes re-encodes and decodes again, and the streaming reader, fed
//! the bytes in arbitrary reads, returns exactly the messages, error and leftover the frame
//! decoder finds in them.
#![no_main]

use control::protocol::{PncMsg, ProxyMsg, decoders_agree};
use libfuzzer_sys::fuzz_target;
use van_fuzz::read_ends;

fuzz_target!(|data: &[u8]| {
    let Some((&seed, wire)) = data.split_first() else {
        return;
    };
    for ends in [vec![wire.len()], read_ends(seed, wire.len())] {
        decoders_agree::<ProxyMsg>(wire, &ends);
        decoders_agree::<PncMsg>(wire, &ends);
    }
});
