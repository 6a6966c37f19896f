//! The streaming VAN frame reader on arbitrary bytes: it never panics, yields the same frames and
//! the same error whatever the pieces the bytes arrive in, on both of its paths (events, and
//! payloads placed by the caller), and agrees with the buffering `FrameDecoder`.
#![no_main]

use dataplane::frame::{FrameDecoder, FrameError, FrameHeader, HEADER_LEN, MAX_PAYLOAD};
use dataplane::frame_reader::{FrameEvent, FrameReader, Need};
use libfuzzer_sys::fuzz_target;
use van_fuzz::read_ends;

type Frames = Vec<(FrameHeader, Vec<u8>)>;

/// Frames read with `next_event`, checking the event grammar, and the error if one came.
fn read_events(wire: &[u8], ends: &[usize]) -> (Frames, Option<FrameError>) {
    let mut reader = FrameReader::new();
    let mut frames = Vec::new();
    let mut open: Option<(FrameHeader, Vec<u8>)> = None;
    let mut start = 0;
    for &end in ends {
        let mut input = &wire[start..end];
        start = end;
        loop {
            match reader.next_event(&mut input) {
                Ok(None) => break,
                Ok(Some(FrameEvent::Header(h))) => {
                    assert!(open.is_none() && h.len <= MAX_PAYLOAD);
                    open = Some((h, Vec::new()));
                }
                Ok(Some(FrameEvent::Payload {
                    header,
                    offset,
                    bytes,
                })) => {
                    let (h, p) = open.as_mut().expect("payload inside a frame");
                    assert_eq!((*h, offset as usize), (header, p.len()));
                    p.extend_from_slice(bytes);
                }
                Ok(Some(FrameEvent::Done(h))) => {
                    let (o, p) = open.take().expect("done ends a frame");
                    assert_eq!((o, p.len()), (h, h.len as usize));
                    frames.push((h, p));
                }
                Err(e) => {
                    assert_eq!(reader.next_event(&mut &wire[..]), Err(e.clone()));
                    return (frames, Some(e));
                }
            }
        }
        assert!(input.is_empty());
    }
    (frames, None)
}

/// Frames read the way a receiver into blocks reads them: payloads placed by the caller.
fn read_in_place(wire: &[u8], ends: &[usize]) -> (Frames, Option<FrameError>) {
    let mut reader = FrameReader::new();
    let mut frames = Vec::new();
    let mut block = Vec::new();
    let mut start = 0;
    for &end in ends {
        let mut input = &wire[start..end];
        start = end;
        while !input.is_empty() {
            match reader.need() {
                Some(Need::Header { missing }) => {
                    let take = missing.min(input.len());
                    let mut head = &input[..take];
                    input = &input[take..];
                    loop {
                        match reader.next_event(&mut head) {
                            Ok(None) => break,
                            Ok(Some(FrameEvent::Header(_))) => block.clear(),
                            Ok(Some(FrameEvent::Done(h))) => {
                                frames.push((h, std::mem::take(&mut block)))
                            }
                            Ok(Some(FrameEvent::Payload { .. })) => panic!("header bytes only"),
                            Err(e) => return (frames, Some(e)),
                        }
                    }
                }
                Some(Need::Payload {
                    header, remaining, ..
                }) => {
                    let n = (remaining as usize).min(input.len());
                    block.extend_from_slice(&input[..n]);
                    input = &input[n..];
                    if let Some(h) = reader.payload_placed(n as u32) {
                        assert_eq!(h, header);
                        frames.push((h, std::mem::take(&mut block)));
                    }
                }
                None => panic!("errors return above"),
            }
        }
    }
    (frames, None)
}

fuzz_target!(|data: &[u8]| {
    let Some((&seed, wire)) = data.split_first() else {
        return;
    };
    let whole = read_events(wire, &[wire.len()]);
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
