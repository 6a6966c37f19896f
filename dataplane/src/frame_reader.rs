//! Reading a VAN frame stream in place: the receiving side of [`crate::frame`], for a child
//! proxy that receives its parent's frames straight into its pool blocks, and for a load
//! generator that checks payload bytes as they pass.
//!
//! [`FrameReader`] is a state machine over the bytes as they arrive. It keeps only the header
//! being assembled (at most [`HEADER_LEN`] bytes) and never copies or buffers a payload: each
//! call to [`FrameReader::next_event`] takes bytes from the front of the caller's input and says
//! what they were, a whole header ([`FrameEvent::Header`]), a run of the current frame's payload
//! and where it goes in that payload ([`FrameEvent::Payload`]), or the end of the current frame
//! ([`FrameEvent::Done`]). A caller that receives payload bytes itself, straight into the place
//! they belong (a block's free tail), asks [`FrameReader::need`] how many bytes the current frame
//! still wants, receives at most that many, and reports them with
//! [`FrameReader::payload_placed`].
//!
//! Guarantees:
//! - **Any split.** However the byte stream is cut into inputs (one byte at a time, one read per
//!   frame, everything at once), the reader yields the same headers in the same order, each
//!   frame's payload as the same bytes at the same offsets, and the same error at the same byte.
//! - **Headers before payload.** A header is decoded and validated by [`FrameHeader::decode`]
//!   (known kind, `len` at most [`MAX_PAYLOAD`](crate::frame::MAX_PAYLOAD)) before any byte of its
//!   payload is handed out, so a caller may reserve `len` bytes when it sees the header.
//! - **Exact accounting.** Every input byte is consumed exactly once, as header or payload; a
//!   frame's `Payload` events cover offsets `0..len` contiguously and in order, then `Done`
//!   follows (straight after `Header` for an empty payload). Payload bytes are sub-slices of the
//!   input, never copies.
//! - **Errors are final.** Bytes that are not VAN frames give a [`FrameError`], and every later
//!   call gives the same error: the caller closes the connection. Nothing here panics on any
//!   input, and nothing allocates.
//!
//! What it does not do: no I/O, and no meaning of sequence numbers or frame kinds (gaps,
//! duplicates and the end of a stream are the caller's: the stream window's writer for a child
//! proxy, the record checker for vanbench). After an `end` frame it reads on as if more frames
//! followed; a caller that stops there stops reading.

use crate::frame::{FrameError, FrameHeader, HEADER_LEN};

/// What a run of input bytes was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameEvent<'a> {
    /// A whole, valid header: a frame begins, and its `len` payload bytes follow.
    Header(FrameHeader),
    /// The next payload bytes of the frame `header`, which belong at `offset` in its payload.
    Payload {
        header: FrameHeader,
        offset: u32,
        bytes: &'a [u8],
    },
    /// The frame `header` is whole: every byte of its payload has been handed out.
    Done(FrameHeader),
}

/// What the reader wants next, for a caller that receives bytes straight into place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// `missing` more header bytes: receive at most that many and pass them to
    /// [`FrameReader::next_event`].
    Header { missing: usize },
    /// `remaining` more payload bytes of `header`'s frame, the first of them at `offset` in its
    /// payload: receive at most that many into place and report them with
    /// [`FrameReader::payload_placed`] (or pass them to [`FrameReader::next_event`]).
    Payload {
        header: FrameHeader,
        offset: u32,
        remaining: u32,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum State {
    /// Assembling a header: `filled` bytes of it are in `FrameReader::header`.
    Header {
        filled: usize,
    },
    /// Handing out the payload of `header`; `received` bytes of it so far.
    Payload {
        header: FrameHeader,
        received: u32,
    },
    Failed(FrameError),
}

/// The streaming VAN frame reader (see the module docs for what it guarantees).
#[derive(Clone, Debug)]
pub struct FrameReader {
    header: [u8; HEADER_LEN],
    state: State,
}

impl Default for FrameReader {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameReader {
    pub fn new() -> Self {
        Self {
            header: [0; HEADER_LEN],
            state: State::Header { filled: 0 },
        }
    }

    /// Takes bytes from the front of `input` (advancing it) and says what they were. `Ok(None)`
    /// once `input` is used up with nothing more to report; call again with the next bytes.
    /// Call it until then: one input may hold many frames.
    pub fn next_event<'a>(
        &mut self,
        input: &mut &'a [u8],
    ) -> Result<Option<FrameEvent<'a>>, FrameError> {
        match &mut self.state {
            State::Failed(e) => Err(e.clone()),
            State::Header { filled } => {
                if input.is_empty() {
                    return Ok(None);
                }
                let take = (HEADER_LEN - *filled).min(input.len());
                let (head, rest) = input.split_at(take);
                self.header[*filled..*filled + take].copy_from_slice(head);
                *filled += take;
                *input = rest;
                if *filled < HEADER_LEN {
                    return Ok(None);
                }
                match FrameHeader::decode(&self.header) {
                    Ok(Some(header)) => {
                        self.state = State::Payload {
                            header,
                            received: 0,
                        };
                        Ok(Some(FrameEvent::Header(header)))
                    }
                    // Unreachable with HEADER_LEN bytes at hand; treated as corrupt all the same.
                    Ok(None) => Err(self.fail(FrameError::UnknownKind(self.header[0]))),
                    Err(e) => Err(self.fail(e)),
                }
            }
            State::Payload { header, received } => {
                let header = *header;
                if *received == header.len {
                    self.state = State::Header { filled: 0 };
                    return Ok(Some(FrameEvent::Done(header)));
                }
                if input.is_empty() {
                    return Ok(None);
                }
                let offset = *received;
                let take = ((header.len - offset) as usize).min(input.len());
                let (bytes, rest) = input.split_at(take);
                *received += take as u32;
                *input = rest;
                Ok(Some(FrameEvent::Payload {
                    header,
                    offset,
                    bytes,
                }))
            }
        }
    }

    /// What the reader wants next. Meaningful once [`FrameReader::next_event`] has returned
    /// `Ok(None)` (before that, a whole frame may still be waiting for its `Done`); `None` after
    /// an error.
    pub fn need(&self) -> Option<Need> {
        match &self.state {
            State::Header { filled } => Some(Need::Header {
                missing: HEADER_LEN - filled,
            }),
            State::Payload { header, received } => Some(Need::Payload {
                header: *header,
                offset: *received,
                remaining: header.len - received,
            }),
            State::Failed(_) => None,
        }
    }

    /// The caller put the next `n` payload bytes of the current frame in place itself (at most
    /// the `remaining` of [`Need::Payload`]). Returns the frame's header when this completes it:
    /// the same moment [`FrameEvent::Done`] marks on the other path.
    ///
    /// # Panics
    /// If no payload is wanted or `n` is more than is: a bug in the caller, never the peer's
    /// doing, since the caller chose how many bytes to receive.
    pub fn payload_placed(&mut self, n: u32) -> Option<FrameHeader> {
        let State::Payload { header, received } = &mut self.state else {
            panic!("payload_placed without a frame whose payload is wanted");
        };
        assert!(
            n <= header.len - *received,
            "more payload placed than wanted"
        );
        *received += n;
        if *received < header.len {
            return None;
        }
        let header = *header;
        self.state = State::Header { filled: 0 };
        Some(header)
    }

    /// True after an error: the stream is not VAN frames.
    pub fn is_failed(&self) -> bool {
        matches!(self.state, State::Failed(_))
    }

    fn fail(&mut self, e: FrameError) -> FrameError {
        self.state = State::Failed(e.clone());
        e
    }
}

/// Whole frames (header and payload), as the tests and the fuzz target collect them.
pub type Frames = Vec<(FrameHeader, Vec<u8>)>;

/// Reads `wire` delivered in reads ending at `ends` (clamped, sorted, and a last read to the end
/// added) with [`FrameReader::next_event`], asserting the event grammar on the way: the whole
/// frames, and the error that stopped the reading if one did. For tests and the fuzz target,
/// which check that the reads never matter.
pub fn read_events(wire: &[u8], ends: &[usize]) -> (Frames, Option<FrameError>) {
    let mut reader = FrameReader::new();
    let mut frames: Frames = Vec::new();
    let mut open: Option<(FrameHeader, Vec<u8>)> = None;
    let mut start = 0;
    for end in read_ends(wire.len(), ends) {
        let mut input = &wire[start..end];
        start = end;
        loop {
            match reader.next_event(&mut input) {
                Ok(None) => {
                    assert!(input.is_empty());
                    break;
                }
                Ok(Some(FrameEvent::Header(h))) => {
                    assert!(open.is_none(), "header inside a frame");
                    open = Some((h, Vec::new()));
                }
                Ok(Some(FrameEvent::Payload {
                    header,
                    offset,
                    bytes,
                })) => {
                    let (h, p) = open.as_mut().expect("payload outside a frame");
                    assert_eq!((*h, offset as usize), (header, p.len()));
                    assert!(!bytes.is_empty());
                    p.extend_from_slice(bytes);
                }
                Ok(Some(FrameEvent::Done(h))) => {
                    let (o, p) = open.take().expect("done outside a frame");
                    assert_eq!((o, p.len()), (h, h.len as usize));
                    frames.push((h, p));
                }
                Err(e) => {
                    assert!(open.is_none(), "an error inside a payload");
                    assert_eq!(reader.next_event(&mut &b"more"[..]), Err(e.clone()));
                    assert!(reader.is_failed() && reader.need().is_none());
                    return (frames, Some(e));
                }
            }
        }
    }
    (frames, None)
}

/// Like [`read_events`], the way a receiver into blocks reads: headers through
/// [`FrameReader::next_event`], each payload "received" in place (copied here) in the amounts
/// [`FrameReader::need`] asks for and reported with [`FrameReader::payload_placed`].
pub fn read_in_place(wire: &[u8], ends: &[usize]) -> (Frames, Option<FrameError>) {
    let mut reader = FrameReader::new();
    let mut frames: Frames = Vec::new();
    let mut block = Vec::new();
    let mut start = 0;
    for end in read_ends(wire.len(), ends) {
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
                            Ok(Some(FrameEvent::Payload { .. })) => {
                                unreachable!("header bytes only")
                            }
                            Err(e) => return (frames, Some(e)),
                        }
                    }
                }
                Some(Need::Payload {
                    header,
                    offset,
                    remaining,
                }) => {
                    assert_eq!(offset as usize, block.len());
                    let n = (remaining as usize).min(input.len());
                    block.extend_from_slice(&input[..n]);
                    input = &input[n..];
                    if let Some(h) = reader.payload_placed(n as u32) {
                        assert_eq!(h, header);
                        frames.push((h, std::mem::take(&mut block)));
                    }
                }
                None => unreachable!("errors return above"),
            }
        }
    }
    (frames, None)
}

/// `ends` clamped to `len`, sorted, with `len` added: where each read ends.
fn read_ends(len: usize, ends: &[usize]) -> Vec<usize> {
    let mut ends: Vec<usize> = ends.iter().map(|&e| e.min(len)).collect();
    ends.push(len);
    ends.sort_unstable();
    ends
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{FrameDecoder, FrameKind, MAX_PAYLOAD, encode_frame};
    use proptest::prelude::*;

    fn cut_every(len: usize, piece: usize) -> Vec<usize> {
        (1..=len.div_ceil(piece))
            .map(|i| (i * piece).min(len))
            .collect()
    }

    fn frames() -> impl Strategy<Value = Frames> {
        let kinds = [
            FrameKind::Data,
            FrameKind::Redirect,
            FrameKind::End,
            FrameKind::Heartbeat,
        ];
        proptest::collection::vec(
            (
                proptest::sample::select(kinds.to_vec()),
                any::<u64>(),
                any::<u8>(),
                proptest::collection::vec(any::<u8>(), 0..300),
            )
                .prop_map(|(kind, seq, flags, payload)| {
                    let header = FrameHeader {
                        kind,
                        flags,
                        len: payload.len() as u32,
                        seq,
                        timestamp_us: seq.wrapping_mul(3),
                    };
                    (header, payload)
                }),
            0..20,
        )
    }

    fn encode(frames: &Frames) -> Vec<u8> {
        let mut wire = Vec::new();
        for (header, payload) in frames {
            wire.extend_from_slice(&header.encode());
            wire.extend_from_slice(payload);
        }
        wire
    }

    #[test]
    fn an_empty_frame_is_done_at_once() {
        let wire = encode_frame(FrameKind::Heartbeat, 7, 0, &[]);
        let mut r = FrameReader::new();
        let mut input = &wire[..];
        let Some(FrameEvent::Header(h)) = r.next_event(&mut input).unwrap() else {
            panic!("a header first");
        };
        assert_eq!(r.next_event(&mut input), Ok(Some(FrameEvent::Done(h))));
        assert_eq!(r.next_event(&mut input), Ok(None));
        assert_eq!(
            r.need(),
            Some(Need::Header {
                missing: HEADER_LEN
            })
        );
    }

    #[test]
    fn a_lying_length_is_refused_before_any_payload() {
        let mut wire = encode_frame(FrameKind::Data, 1, 0, b"x");
        wire[4..8].copy_from_slice(&(MAX_PAYLOAD + 1).to_le_bytes());
        let mut r = FrameReader::new();
        assert_eq!(
            r.next_event(&mut &wire[..]),
            Err(FrameError::PayloadTooLarge(MAX_PAYLOAD + 1))
        );
        assert_eq!(
            r.next_event(&mut &b""[..]),
            Err(FrameError::PayloadTooLarge(MAX_PAYLOAD + 1))
        );
    }

    proptest! {
        /// Any split of a valid frame sequence yields the same frames, on both paths, and the
        /// same as the buffering decoder.
        #[test]
        fn any_split_yields_the_same_frames(
            frames in frames(),
            piece in 1usize..80,
        ) {
            let wire = encode(&frames);
            let whole = read_events(&wire, &[wire.len()]);
            prop_assert_eq!(whole.1.clone(), None);
            prop_assert_eq!(&whole.0, &frames);
            let ends = cut_every(wire.len(), piece);
            prop_assert_eq!(&read_events(&wire, &ends), &whole);
            prop_assert_eq!(&read_in_place(&wire, &ends), &whole);
            let mut decoder = FrameDecoder::new();
            decoder.push(&wire);
            let mut buffered = Vec::new();
            while let Some((h, p)) = decoder.next_frame().unwrap() {
                buffered.push((h, p.to_vec()));
            }
            prop_assert_eq!(buffered, whole.0);
        }

        /// Garbage is an error (or frames, or a wait for more), never a panic, and the same
        /// whatever the split.
        #[test]
        fn garbage_is_an_error_never_a_panic(
            prefix in frames(),
            garbage in proptest::collection::vec(any::<u8>(), 0..200),
            piece in 1usize..40,
        ) {
            let mut wire = encode(&prefix);
            wire.extend_from_slice(&garbage);
            let whole = read_events(&wire, &[wire.len()]);
            prop_assert!(whole.0.len() >= prefix.len());
            let ends = cut_every(wire.len(), piece);
            prop_assert_eq!(&read_events(&wire, &ends), &whole);
            prop_assert_eq!(&read_in_place(&wire, &ends), &whole);
        }
    }
}
