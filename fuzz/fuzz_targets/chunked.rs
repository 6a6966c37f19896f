//! `ChunkedDecoder::decode_in_place` on arbitrary bytes in arbitrary reads: never panics, and
//! the outcome does not depend on the reads: same error or none, same end state, and the
//! payload passed out is a prefix of (or, without error, equal to) what one-byte reads pass out.
#![no_main]

use dataplane::chunked::decode_in_reads;
use libfuzzer_sys::fuzz_target;
use van_fuzz::read_ends;

fuzz_target!(|data: &[u8]| {
    let Some((&seed, wire)) = data.split_first() else {
        return;
    };
    let one_byte_reads: Vec<usize> = (1..=wire.len()).collect();
    let reference = decode_in_reads(wire, &one_byte_reads);
    for ends in [vec![wire.len()], read_ends(seed, wire.len())] {
        let got = decode_in_reads(wire, &ends);
        assert_eq!(got.1, reference.1);
        assert_eq!(got.2, reference.2);
        assert!(reference.0.starts_with(&got.0));
        if got.1.is_ok() {
            assert_eq!(got.0, reference.0);
        }
    }
    // Payload never exceeds the bytes in.
    assert!(reference.0.len() <= wire.len());
});
