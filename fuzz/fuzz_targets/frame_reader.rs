//! The streaming VAN frame reader on arbitrary bytes: it never panics, yields the same frames and
//! the same error whatever the pieces the bytes arrive in, on both of its paths (events, and
//! payloads placed by the caller), and agrees with the buffering `FrameDecoder`.
#![no_main]

use dataplane::frame::{FrameDecoder, HEADER_LEN};
use dataplane::frame_reader::{read_events, read_in_place};
use libfuzzer_sys::fuzz_target;
use van_fuzz::read_ends;

fuzz_target!(|data: &[u8]| {
    let Some((&seed, wire)) = data.split_first() else {
        return;
    };
    let whole = read_events(wire, &[]);
    let ends = read_ends(seed, wire.len());
    assert_eq!(read_events(wire, &ends), whole);
    assert_eq!(read_in_place(wire, &ends), whole);

    let mut decoder = FrameDecoder::new();
    decoder.push(wire);
    let mut buffered = Vec::new();
    let error = loop {
        match decoder.next_frame() {
            Ok(Some((h, p))) => buffered.push((h, p.to_vec())),
            Ok(None) => break None,
            Err(e) => break Some(e),
        }
    };
    assert_eq!((buffered, error), whole);
    if whole.1.is_some() {
        // An error is found at a header: the frames before it account for the bytes up to it.
        let used: usize = whole.0.iter().map(|(_, p)| HEADER_LEN + p.len()).sum();
        assert!(used + HEADER_LEN <= wire.len());
    }
});
