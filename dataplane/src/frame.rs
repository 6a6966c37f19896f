//! The VAN frame: the unit a child proxy or a VAN-aware client receives from
//! `GET /van/{stream}` (DESIGN.md, "Wire protocols", a contract).
//!
//! Every frame is a fixed 24-byte little-endian header followed by `len` payload bytes:
//!
//! ```text
//! offset size field
//!      0    1 kind          1 data, 2 redirect, 3 end, 4 heartbeat
//!      1    1 flags         bit 0: the payload starts at a random-access point (a keyframe)
//!      2    2 reserved      zero on send, ignored on receipt
//!      4    4 len           payload length in bytes, at most MAX_PAYLOAD
//!      8    8 seq           stream-local sequence number
//!     16    8 timestamp_us  microseconds since the Unix epoch when the source's bytes arrived
//! ```
//!
//! What `seq` means depends on the kind:
//! - data: the frame's own sequence number; consecutive frames of a stream count up by one.
//! - redirect ([0037], [0046]): the sequence number to resume from at the new place; the payload
//!   is the new proxy's `host:port` in UTF-8.
//! - end: the sequence number the next data frame would have had; the payload, possibly empty, is
//!   a UTF-8 reason.
//! - heartbeat: the next sequence number the sender will send; empty payload.
//!
//! This module only encodes and decodes; it does no I/O.

use thiserror::Error;

/// Size of the fixed header in bytes.
pub const HEADER_LEN: usize = 24;

/// The largest payload a frame may carry. Bigger lengths are rejected before any allocation,
/// so a hostile peer cannot make a receiver reserve memory by lying in the header.
pub const MAX_PAYLOAD: u32 = 16 * 1024 * 1024;

/// Flag bit: the payload begins at a random-access point (e.g. an MPEG-TS keyframe).
pub const FLAG_RANDOM_ACCESS: u8 = 0x01;

/// MIME type of a VAN frame stream.
pub const CONTENT_TYPE: &str = "application/x-van-blocks";

/// The response header of `GET /van/{stream}` that names the content type of the frames'
/// payload (the source's, e.g. `video/mp2t`), so that a child proxy serves its plain viewers
/// the same type.
pub const PAYLOAD_TYPE_HEADER: &str = "X-Van-Content-Type";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FrameKind {
    Data = 1,
    Redirect = 2,
    End = 3,
    Heartbeat = 4,
}

impl FrameKind {
    fn from_wire(byte: u8) -> Option<Self> {
        match byte {
            1 => Some(Self::Data),
            2 => Some(Self::Redirect),
            3 => Some(Self::End),
            4 => Some(Self::Heartbeat),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FrameHeader {
    pub kind: FrameKind,
    pub flags: u8,
    pub len: u32,
    pub seq: u64,
    pub timestamp_us: u64,
}

#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
    #[error("frame payload of {0} bytes exceeds the limit of {MAX_PAYLOAD}")]
    PayloadTooLarge(u32),
}

impl FrameHeader {
    pub fn data(seq: u64, timestamp_us: u64, len: u32, flags: u8) -> Self {
        Self {
            kind: FrameKind::Data,
            flags,
            len,
            seq,
            timestamp_us,
        }
    }

    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[0] = self.kind as u8;
        out[1] = self.flags;
        out[4..8].copy_from_slice(&self.len.to_le_bytes());
        out[8..16].copy_from_slice(&self.seq.to_le_bytes());
        out[16..24].copy_from_slice(&self.timestamp_us.to_le_bytes());
        out
    }

    /// Decodes a header from the first `HEADER_LEN` bytes of `bytes`.
    /// `Ok(None)` when fewer than `HEADER_LEN` bytes are available.
    pub fn decode(bytes: &[u8]) -> Result<Option<Self>, FrameError> {
        let Some(raw) = bytes.get(..HEADER_LEN) else {
            return Ok(None);
        };
        let kind = FrameKind::from_wire(raw[0]).ok_or(FrameError::UnknownKind(raw[0]))?;
        let len = u32::from_le_bytes(raw[4..8].try_into().expect("4 bytes"));
        if len > MAX_PAYLOAD {
            return Err(FrameError::PayloadTooLarge(len));
        }
        Ok(Some(Self {
            kind,
            flags: raw[1],
            len,
            seq: u64::from_le_bytes(raw[8..16].try_into().expect("8 bytes")),
            timestamp_us: u64::from_le_bytes(raw[16..24].try_into().expect("8 bytes")),
        }))
    }

    pub fn is_random_access(&self) -> bool {
        self.flags & FLAG_RANDOM_ACCESS != 0
    }
}

/// Encodes a whole frame (header and payload) into a new buffer. For control frames and tests;
/// the relay's hot path sends headers and pooled payloads without joining them.
pub fn encode_frame(kind: FrameKind, seq: u64, timestamp_us: u64, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).expect("payload length fits in u32");
    let header = FrameHeader {
        kind,
        flags: 0,
        len,
        seq,
        timestamp_us,
    };
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(&header.encode());
    out.extend_from_slice(payload);
    out
}

/// Incremental decoder for a byte stream of frames, as they arrive from a socket in arbitrary
/// pieces. Feed bytes with [`FrameDecoder::push`], take whole frames with
/// [`FrameDecoder::next_frame`]. It buffers each frame whole (up to [`MAX_PAYLOAD`]): handy for
/// tests and small clients; a receiver that keeps payloads in place (a child proxy's blocks, a
/// load generator's checker) uses [`crate::frame_reader::FrameReader`] instead.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    start: usize,
}

impl FrameDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, bytes: &[u8]) {
        // Drop what was already returned once it dominates, so memory stays bounded by about
        // one frame plus one read.
        if self.start > 0 && self.start * 2 >= self.buf.len() {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete frame, if one is buffered. Errors are final: the stream is corrupt
    /// and the connection should be closed.
    pub fn next_frame(&mut self) -> Result<Option<(FrameHeader, &[u8])>, FrameError> {
        let pending = &self.buf[self.start..];
        let Some(header) = FrameHeader::decode(pending)? else {
            return Ok(None);
        };
        let total = HEADER_LEN + header.len as usize;
        if pending.len() < total {
            return Ok(None);
        }
        let payload = self.start + HEADER_LEN..self.start + total;
        self.start += total;
        Ok(Some((header, &self.buf[payload])))
    }

    /// Bytes buffered and not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn header_layout_is_the_documented_one() {
        let h = FrameHeader {
            kind: FrameKind::Redirect,
            flags: FLAG_RANDOM_ACCESS,
            len: 0x0102_0304,
            seq: 0x1122_3344_5566_7788,
            timestamp_us: 42,
        };
        let raw = h.encode();
        assert_eq!(raw[0], 2);
        assert_eq!(raw[1], 1);
        assert_eq!(&raw[2..4], &[0, 0]);
        assert_eq!(&raw[4..8], &[4, 3, 2, 1]);
        assert_eq!(raw[8], 0x88);
        assert_eq!(raw[16], 42);
    }

    #[test]
    fn rejects_unknown_kind_and_oversized_payload() {
        let mut raw = FrameHeader::data(1, 2, 3, 0).encode();
        raw[0] = 9;
        assert_eq!(FrameHeader::decode(&raw), Err(FrameError::UnknownKind(9)));
        let raw = FrameHeader::data(1, 2, MAX_PAYLOAD + 1, 0).encode();
        assert_eq!(
            FrameHeader::decode(&raw),
            Err(FrameError::PayloadTooLarge(MAX_PAYLOAD + 1))
        );
        assert_eq!(FrameHeader::decode(&raw[..HEADER_LEN - 1]), Ok(None));
    }

    proptest! {
        #[test]
        fn frames_round_trip_through_any_split(
            payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 1..20),
            cut in 1usize..97,
        ) {
            let mut wire = Vec::new();
            for (seq, p) in payloads.iter().enumerate() {
                wire.extend(encode_frame(FrameKind::Data, seq as u64, seq as u64 * 10, p));
            }
            let mut decoder = FrameDecoder::new();
            let mut got = Vec::new();
            for piece in wire.chunks(cut) {
                decoder.push(piece);
                while let Some((h, p)) = decoder.next_frame().unwrap() {
                    prop_assert_eq!(h.timestamp_us, h.seq * 10);
                    got.push((h.seq, p.to_vec()));
                }
            }
            prop_assert_eq!(decoder.buffered(), 0);
            let want: Vec<_> = payloads.into_iter().enumerate().map(|(s, p)| (s as u64, p)).collect();
            prop_assert_eq!(got, want);
        }
    }
}
