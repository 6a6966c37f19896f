//! Chunked transfer decoding (RFC 9112, 7.1) in place, for sources that `PUT` with
//! `Transfer-Encoding: chunked` (ffmpeg `-method PUT`, `curl -T -`).
//!
//! The relay receives a source's bytes straight into a pool block; [`ChunkedDecoder`] strips
//! the framing from those bytes where they lie, moving the payload down over the framing, so
//! that no byte is copied anywhere else. It keeps only counters between reads (never any bytes),
//! so a read may end anywhere, even inside a size line or a CRLF.
//!
//! Limits that keep a hostile source from stalling or costing memory: a size line (digits and
//! extensions) of at most [`MAX_SIZE_LINE`] bytes, sizes that fit in `u64`, and at most
//! [`MAX_TRAILERS`] bytes of trailer section. Chunk extensions and trailers are skipped.
//! Framing must use CRLF; bare LF is refused (lenient line endings are how request smuggling
//! starts).
//!
//! It does no I/O and knows nothing of HTTP heads: [`crate::http::parse_request`] says when a
//! body is chunked.

use thiserror::Error;

/// Longest chunk-size line accepted, hex digits and extensions, without its CRLF.
pub const MAX_SIZE_LINE: usize = 1024;

/// Longest trailer section accepted after the last chunk, CRLFs included.
pub const MAX_TRAILERS: usize = 8 * 1024;

#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
pub enum ChunkedError {
    #[error("chunk size line longer than {MAX_SIZE_LINE} bytes")]
    SizeLineTooLong,
    #[error("byte 0x{0:02x} where a chunk size was expected")]
    BadSize(u8),
    #[error("chunk size does not fit in 64 bits")]
    SizeOverflow,
    #[error("chunk framing lacks a CRLF")]
    MissingCrlf,
    #[error("trailer section longer than {MAX_TRAILERS} bytes")]
    TrailersTooLong,
    #[error("bytes after the last chunk")]
    DataAfterEnd,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// At the start of a size line: a hex digit must come.
    SizeStart,
    /// Reading hex digits; `line` bytes of the size line so far.
    SizeDigits {
        value: u64,
        line: usize,
    },
    /// After the digits: whitespace, then optionally `;extensions`, until CR.
    SizeTail {
        value: u64,
        line: usize,
        in_ext: bool,
    },
    /// CR of the size line seen; LF must follow.
    SizeLf {
        value: u64,
    },
    /// `remaining` payload bytes of the current chunk to pass through.
    Data {
        remaining: u64,
    },
    /// After a chunk's payload: CR, then LF.
    DataCr,
    DataLf,
    /// In the trailer section after the last chunk: `line` bytes of the current line,
    /// `total` bytes of the section so far.
    Trailer {
        line: usize,
        total: usize,
    },
    /// CR of a trailer line seen; LF must follow. An empty line ends the body.
    TrailerLf {
        empty: bool,
        total: usize,
    },
    Finished,
    Failed(ChunkedError),
}

/// Decoder state across reads of one chunked body.
#[derive(Clone, Debug)]
pub struct ChunkedDecoder {
    state: State,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkedDecoder {
    pub fn new() -> Self {
        Self {
            state: State::SizeStart,
        }
    }

    /// Strips the chunk framing from `buf`, the bytes just received, in place: on return the
    /// payload bytes they carried are at `buf[..n]`, in order. Errors are final (every later call
    /// returns the same error): the source's connection should be closed.
    pub fn decode_in_place(&mut self, buf: &mut [u8]) -> Result<usize, ChunkedError> {
        let mut read = 0;
        let mut written = 0;
        while read < buf.len() {
            if let State::Data { remaining } = self.state {
                let n = remaining.min((buf.len() - read) as u64) as usize;
                if written != read {
                    buf.copy_within(read..read + n, written);
                }
                written += n;
                read += n;
                let remaining = remaining - n as u64;
                self.state = if remaining == 0 {
                    State::DataCr
                } else {
                    State::Data { remaining }
                };
                continue;
            }
            let byte = buf[read];
            read += 1;
            self.state = match self.step(byte) {
                Ok(next) => next,
                Err(e) => {
                    self.state = State::Failed(e);
                    return Err(e);
                }
            };
        }
        if let State::Failed(e) = self.state {
            return Err(e);
        }
        Ok(written)
    }

    /// True once the last chunk (size 0) and the trailer section were consumed.
    pub fn is_finished(&self) -> bool {
        self.state == State::Finished
    }

    /// One framing byte (any state but `Data`).
    fn step(&self, byte: u8) -> Result<State, ChunkedError> {
        Ok(match self.state {
            State::SizeStart => State::SizeDigits {
                value: u64::from(hex(byte).ok_or(ChunkedError::BadSize(byte))?),
                line: 1,
            },
            // The CR ending a size line is not part of its length.
            State::SizeDigits { value, .. } | State::SizeTail { value, .. } if byte == b'\r' => {
                State::SizeLf { value }
            }
            State::SizeDigits { value, line } => {
                let line = next_line_len(line)?;
                match hex(byte) {
                    Some(digit) => State::SizeDigits {
                        value: value
                            .checked_mul(16)
                            .and_then(|v| v.checked_add(u64::from(digit)))
                            .ok_or(ChunkedError::SizeOverflow)?,
                        line,
                    },
                    None => size_tail(value, line, false, byte)?,
                }
            }
            State::SizeTail {
                value,
                line,
                in_ext,
            } => size_tail(value, next_line_len(line)?, in_ext, byte)?,
            State::SizeLf { value } => {
                expect_lf(byte)?;
                if value == 0 {
                    State::Trailer { line: 0, total: 0 }
                } else {
                    State::Data { remaining: value }
                }
            }
            State::DataCr => {
                if byte != b'\r' {
                    return Err(ChunkedError::MissingCrlf);
                }
                State::DataLf
            }
            State::DataLf => {
                expect_lf(byte)?;
                State::SizeStart
            }
            State::Trailer { line, total } => {
                let total = total + 1;
                if total > MAX_TRAILERS {
                    return Err(ChunkedError::TrailersTooLong);
                }
                match byte {
                    b'\r' => State::TrailerLf {
                        empty: line == 0,
                        total,
                    },
                    b'\n' => return Err(ChunkedError::MissingCrlf),
                    _ => State::Trailer {
                        line: line + 1,
                        total,
                    },
                }
            }
            State::TrailerLf { empty, total } => {
                expect_lf(byte)?;
                if empty {
                    State::Finished
                } else {
                    State::Trailer {
                        line: 0,
                        total: total + 1,
                    }
                }
            }
            State::Finished => return Err(ChunkedError::DataAfterEnd),
            State::Failed(e) => return Err(e),
            State::Data { .. } => unreachable!("payload bytes are moved in bulk"),
        })
    }
}

/// The byte after the hex digits of a size line: whitespace, `;` starting extensions, extension
/// bytes, or the CR that ends the line.
fn size_tail(value: u64, line: usize, in_ext: bool, byte: u8) -> Result<State, ChunkedError> {
    match byte {
        b'\r' => Ok(State::SizeLf { value }),
        b'\n' => Err(ChunkedError::MissingCrlf),
        b';' => Ok(State::SizeTail {
            value,
            line,
            in_ext: true,
        }),
        b' ' | b'\t' => Ok(State::SizeTail {
            value,
            line,
            in_ext,
        }),
        // Extensions are skipped: any visible byte (and obs-text) is allowed in them.
        _ if in_ext && (byte >= 0x20 && byte != 0x7f) => Ok(State::SizeTail {
            value,
            line,
            in_ext,
        }),
        _ => Err(ChunkedError::BadSize(byte)),
    }
}

fn next_line_len(line: usize) -> Result<usize, ChunkedError> {
    if line >= MAX_SIZE_LINE {
        return Err(ChunkedError::SizeLineTooLong);
    }
    Ok(line + 1)
}

fn expect_lf(byte: u8) -> Result<(), ChunkedError> {
    if byte == b'\n' {
        Ok(())
    } else {
        Err(ChunkedError::MissingCrlf)
    }
}

fn hex(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// Decodes `wire` delivered in reads ending at `ends` (clamped, sorted, and a last read to the
/// end added), as a relay would read it: the payload passed out, the outcome, and whether the
/// body ended. For tests and the fuzz target, which check that the reads never matter.
pub fn decode_in_reads(wire: &[u8], ends: &[usize]) -> (Vec<u8>, Result<(), ChunkedError>, bool) {
    let mut decoder = ChunkedDecoder::new();
    let mut out = Vec::new();
    let mut start = 0;
    let mut ends: Vec<usize> = ends.iter().map(|&e| e.min(wire.len())).collect();
    ends.push(wire.len());
    ends.sort_unstable();
    for end in ends {
        let mut piece = wire[start..end].to_vec();
        start = end;
        match decoder.decode_in_place(&mut piece) {
            Ok(n) => {
                assert!(n <= piece.len());
                out.extend_from_slice(&piece[..n]);
            }
            Err(e) => return (out, Err(e), decoder.is_finished()),
        }
    }
    (out, Ok(()), decoder.is_finished())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decode_all(wire: &[u8]) -> (Vec<u8>, Result<(), ChunkedError>, bool) {
        decode_in_reads(wire, &[])
    }

    #[test]
    fn decodes_what_curl_and_ffmpeg_send() {
        // The tail of `curl -T -`: one chunk, then the last chunk and no trailers.
        let (out, res, done) = decode_all(b"3\r\nabc\r\n0\r\n\r\n");
        assert_eq!((out.as_slice(), res, done), (&b"abc"[..], Ok(()), true));
        let (out, res, done) = decode_all(b"2284\r\n");
        assert_eq!((out, res, done), (vec![], Ok(()), false));
    }

    #[test]
    fn extensions_trailers_and_case() {
        let wire = b"A;name=\"v\" \r\n0123456789\r\n00000001 ; x\r\nZ\r\n0\r\nX-Checksum: 1\r\nY: 2\r\n\r\n";
        let (out, res, done) = decode_all(wire);
        assert_eq!(out, b"0123456789Z");
        assert_eq!(res, Ok(()));
        assert!(done);
    }

    #[test]
    fn framing_errors() {
        let cases: &[(&[u8], ChunkedError)] = &[
            (b"g\r\n", ChunkedError::BadSize(b'g')),
            (b"\r\n", ChunkedError::BadSize(b'\r')),
            (b"3\nabc", ChunkedError::MissingCrlf),
            (b"3\r\nabcX", ChunkedError::MissingCrlf),
            (b"3\r\nabc\rX", ChunkedError::MissingCrlf),
            (b"3 4\r\n", ChunkedError::BadSize(b'4')),
            (b"3\x01\r\n", ChunkedError::BadSize(1)),
            (b"10000000000000000\r\n", ChunkedError::SizeOverflow),
            (b"0\r\n\r\nX", ChunkedError::DataAfterEnd),
            (b"0\r\nX: y\n", ChunkedError::MissingCrlf),
            (b"-1\r\n", ChunkedError::BadSize(b'-')),
        ];
        for (wire, want) in cases {
            let (_, res, _) = decode_all(wire);
            assert_eq!(res, Err(*want), "{:?}", String::from_utf8_lossy(wire));
        }
        // The largest size that fits is fine.
        let (_, res, _) = decode_all(b"ffffffffffffffff\r\nab");
        assert_eq!(res, Ok(()));
    }

    #[test]
    fn limits_hold() {
        let mut line = b"1;".to_vec();
        line.resize(MAX_SIZE_LINE, b'x');
        line.extend_from_slice(b"\r\nA\r\n");
        assert_eq!(decode_all(&line).0, b"A");
        let mut line = b"1;".to_vec();
        line.resize(MAX_SIZE_LINE + 1, b'x');
        assert_eq!(decode_all(&line).1, Err(ChunkedError::SizeLineTooLong));
        let mut zeros = vec![b'0'; MAX_SIZE_LINE + 1];
        zeros.extend_from_slice(b"1\r\n");
        assert_eq!(decode_all(&zeros).1, Err(ChunkedError::SizeLineTooLong));
        let mut trailers = b"0\r\n".to_vec();
        while trailers.len() < MAX_TRAILERS + 16 {
            trailers.extend_from_slice(b"X-Pad: 0123456789\r\n");
        }
        assert_eq!(decode_all(&trailers).1, Err(ChunkedError::TrailersTooLong));
    }

    #[test]
    fn errors_are_final() {
        let mut decoder = ChunkedDecoder::new();
        assert_eq!(
            decoder.decode_in_place(&mut b"z".to_vec()),
            Err(ChunkedError::BadSize(b'z'))
        );
        assert_eq!(
            decoder.decode_in_place(&mut b"3\r\nabc\r\n".to_vec()),
            Err(ChunkedError::BadSize(b'z'))
        );
        assert_eq!(
            decoder.decode_in_place(&mut []),
            Err(ChunkedError::BadSize(b'z'))
        );
    }

    /// A body as a sender could frame it: chunks of the given sizes, with or without
    /// extensions, upper or lower case hex with leading zeros, optional trailers.
    fn encode(payload: &[u8], sizes: &[usize], style: u8) -> Vec<u8> {
        let mut wire = Vec::new();
        let mut rest = payload;
        let mut sizes = sizes.iter().cycle();
        while !rest.is_empty() {
            let n = (*sizes.next().unwrap()).clamp(1, rest.len());
            let size = match style % 3 {
                0 => format!("{n:x}"),
                1 => format!("{n:08X}"),
                _ => format!("{n:x} ;ext=1;q=\"a b\""),
            };
            wire.extend_from_slice(size.as_bytes());
            wire.extend_from_slice(b"\r\n");
            wire.extend_from_slice(&rest[..n]);
            wire.extend_from_slice(b"\r\n");
            rest = &rest[n..];
        }
        wire.extend_from_slice(b"0\r\n");
        if style & 4 != 0 {
            wire.extend_from_slice(b"Expires: never\r\n");
        }
        wire.extend_from_slice(b"\r\n");
        wire
    }

    proptest! {
        /// Any payload, cut into any chunks, delivered in any reads, decodes to itself.
        #[test]
        fn any_payload_any_chunks_any_reads(
            payload in proptest::collection::vec(any::<u8>(), 0..3000),
            sizes in proptest::collection::vec(1usize..700, 1..8),
            style in any::<u8>(),
            reads in proptest::collection::vec(any::<prop::sample::Index>(), 0..24),
        ) {
            let wire = encode(&payload, &sizes, style);
            let ends: Vec<usize> = reads.iter().map(|i| i.index(wire.len() + 1)).collect();
            let (out, res, done) = decode_in_reads(&wire, &ends);
            prop_assert_eq!(res, Ok(()));
            prop_assert!(done);
            prop_assert_eq!(out, payload);
        }

        /// On arbitrary bytes the outcome does not depend on how they were split into reads:
        /// same error (or none), same end state, and the payload passed out before any error is
        /// a prefix of what byte-at-a-time reads pass out.
        #[test]
        fn arbitrary_bytes_split_invariant(
            wire in proptest::collection::vec(
                prop_oneof![Just(b'\r'), Just(b'\n'), Just(b'0'), Just(b'1'), Just(b';'), any::<u8>()],
                0..400),
            reads in proptest::collection::vec(any::<prop::sample::Index>(), 0..12),
        ) {
            let every_byte: Vec<usize> = (1..wire.len()).collect();
            let reference = decode_in_reads(&wire, &every_byte);
            for ends in [vec![], reads.iter().map(|i| i.index(wire.len() + 1)).collect()] {
                let got = decode_in_reads(&wire, &ends);
                prop_assert_eq!(got.1, reference.1);
                prop_assert_eq!(got.2, reference.2);
                prop_assert!(reference.0.starts_with(&got.0));
                if got.1.is_ok() {
                    prop_assert_eq!(&got.0, &reference.0);
                }
            }
        }
    }
}
