//! VAN frames on arbitrary bytes: `FrameHeader::decode` accepts exactly the headers `encode`
//! writes (up to the reserved bytes), and `FrameDecoder` yields the same frames, and the same
//! error, whatever the pieces the bytes arrive in.
#![no_main]

use dataplane::frame::{FrameDecoder, FrameError, FrameHeader, HEADER_LEN, MAX_PAYLOAD};
use libfuzzer_sys::fuzz_target;
use van_fuzz::read_ends;

type Frames = Vec<(FrameHeader, Vec<u8>)>;

fn decode(wire: &[u8], ends: &[usize]) -> (Frames, Result<usize, FrameError>) {
    let mut decoder = FrameDecoder::new();
    let mut frames = Vec::new();
    let mut start = 0;
    for &end in ends {
        decoder.push(&wire[start..end]);
        start = end;
        loop {
            match decoder.next_frame() {
                Ok(Some((h, p))) => {
                    assert_eq!(p.len(), h.len as usize);
                    frames.push((h, p.to_vec()));
                }
                Ok(None) => break,
                Err(e) => return (frames, Err(e)),
            }
        }
    }
    (frames, Ok(decoder.buffered()))
}

fuzz_target!(|data: &[u8]| {
    let Some((&seed, wire)) = data.split_first() else {
        return;
    };
    match FrameHeader::decode(wire) {
        Ok(Some(h)) => {
            assert!(h.len <= MAX_PAYLOAD);
            let mut expected = [0u8; HEADER_LEN];
            expected.copy_from_slice(&wire[..HEADER_LEN]);
            expected[2..4].fill(0); // reserved: ignored on receipt, zero on send
            assert_eq!(h.encode(), expected);
        }
        Ok(None) => assert!(wire.len() < HEADER_LEN),
        Err(_) => assert!(wire.len() >= HEADER_LEN),
    }

    let whole = decode(wire, &[wire.len()]);
    let split = decode(wire, &read_ends(seed, wire.len()));
    assert_eq!(whole, split);
    // Without error, the frames and what is left buffered account for every byte.
    if let Ok(buffered) = whole.1 {
        let used: usize = whole.0.iter().map(|(_, p)| HEADER_LEN + p.len()).sum();
        assert_eq!(used + buffered, wire.len());
        // Re-encoding the frames gives back the bytes they came from (reserved bytes zeroed).
        let mut at = 0;
        for (h, p) in &whole.0 {
            let mut original = wire[at..at + HEADER_LEN].to_vec();
            original[2..4].fill(0);
            assert_eq!(h.encode().as_slice(), original.as_slice());
            assert_eq!(
                &wire[at + HEADER_LEN..at + HEADER_LEN + p.len()],
                p.as_slice()
            );
            at += HEADER_LEN + p.len();
        }
    }
});
