//! Checking a VAN frame stream: sequence order, heartbeats and how it ended, on top of the one
//! streaming reader (`dataplane::frame_reader::FrameReader`).
//!
//! The reader keeps only the 24-byte header being assembled and hands payload bytes out in
//! place, so a load generator with 10,000 viewers passes them straight through to the record
//! checker as they arrive, without a frame of memory per connection. What is counted here (gaps,
//! heartbeats) is the load generator's business, not the reader's. No I/O here.

use dataplane::frame::{FrameError, FrameKind};
use dataplane::frame_reader::{FrameEvent, FrameReader};

/// Counters over the frames of one or many VAN viewers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FrameStats {
    /// Data frames received whole.
    pub frames: u64,
    /// Data frames whose seq was not the previous one plus one (a gap, a repeat or a step back):
    /// zero when every frame arrived once and in order.
    pub seq_gaps: u64,
    /// Heartbeat frames.
    pub heartbeats: u64,
}

impl FrameStats {
    pub fn merge(&mut self, o: &FrameStats) {
        self.frames += o.frames;
        self.seq_gaps += o.seq_gaps;
        self.heartbeats += o.heartbeats;
    }
}

/// What ended a VAN stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamEnd {
    /// An end frame: the source is gone.
    End,
    /// A redirect frame: resume elsewhere (a load generator does not follow it).
    Redirect,
}

/// A VAN viewer's frame checking: feed it received bytes in any pieces.
#[derive(Debug, Default)]
pub struct FrameChecker {
    reader: FrameReader,
    last_seq: Option<u64>,
    ended: Option<StreamEnd>,
}

impl FrameChecker {
    pub fn new() -> Self {
        Self::default()
    }

    /// Consumes `data`; data payload bytes go to `on_payload` in order, with their frame's
    /// timestamp (when the relay read them from its source). Returns how the stream
    /// ended once an end or redirect frame has been read whole (bytes after it are ignored).
    /// An error is final: the stream is not VAN frames.
    pub fn push(
        &mut self,
        mut data: &[u8],
        stats: &mut FrameStats,
        on_payload: &mut impl FnMut(&[u8], u64),
    ) -> Result<Option<StreamEnd>, FrameError> {
        while self.ended.is_none() {
            match self.reader.next_event(&mut data)? {
                None => break,
                Some(FrameEvent::Header(h)) if h.kind == FrameKind::Data => {
                    if let Some(last) = self.last_seq
                        && h.seq != last.wrapping_add(1)
                    {
                        stats.seq_gaps += 1;
                    }
                    self.last_seq = Some(h.seq);
                }
                Some(FrameEvent::Header(_)) => {}
                Some(FrameEvent::Payload { header, bytes, .. }) => {
                    if header.kind == FrameKind::Data {
                        on_payload(bytes, header.timestamp_us);
                    }
                }
                Some(FrameEvent::Done(h)) => match h.kind {
                    FrameKind::Data => stats.frames += 1,
                    FrameKind::Heartbeat => stats.heartbeats += 1,
                    FrameKind::End => self.ended = Some(StreamEnd::End),
                    FrameKind::Redirect => self.ended = Some(StreamEnd::Redirect),
                },
            }
        }
        Ok(self.ended)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{CheckStats, RecordChecker, encode_record};
    use dataplane::frame::encode_frame;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn records_inside_frames_survive_any_split(
            sizes in proptest::collection::vec(1usize..3000, 1..30),
            cut in 1usize..2000,
            first_seq in 0u64..1000,
        ) {
            let mut records = Vec::new();
            for seq in 0..40u64 {
                encode_record(seq, seq, 512, &mut records);
            }
            // Cut the record bytes into frames of arbitrary sizes, like a relay's reads.
            let mut wire = Vec::new();
            let mut at = 0;
            let mut fseq = first_seq;
            for s in sizes.iter().cycle() {
                if at == records.len() { break; }
                let end = (at + s).min(records.len());
                wire.extend(encode_frame(FrameKind::Data, fseq, 0, &records[at..end]));
                wire.extend(encode_frame(FrameKind::Heartbeat, fseq + 1, 0, &[]));
                fseq += 1;
                at = end;
            }
            wire.extend(encode_frame(FrameKind::End, fseq, 0, b"source gone"));
            let mut reader = FrameChecker::new();
            let mut fstats = FrameStats::default();
            let mut checker = RecordChecker::new();
            let mut rstats = CheckStats::default();
            let mut end = None;
            for piece in wire.chunks(cut) {
                end = reader.push(piece, &mut fstats, &mut |p, _| {
                    checker.push(p, &mut rstats, &mut |_, _| {});
                }).unwrap();
            }
            prop_assert_eq!(end, Some(StreamEnd::End));
            prop_assert_eq!(fstats.frames, fseq - first_seq);
            prop_assert_eq!(fstats.seq_gaps, 0);
            prop_assert_eq!(rstats.records, 40);
            prop_assert_eq!(rstats.lost + rstats.corrupt + rstats.duplicated, 0);
        }
    }

    #[test]
    fn gaps_and_repeats_are_counted() {
        let mut wire = Vec::new();
        for seq in [5u64, 6, 8, 8, 9] {
            wire.extend(encode_frame(FrameKind::Data, seq, 0, b"x"));
        }
        let mut r = FrameChecker::new();
        let mut s = FrameStats::default();
        assert_eq!(r.push(&wire, &mut s, &mut |_, _| {}), Ok(None));
        assert_eq!(s.frames, 5);
        assert_eq!(s.seq_gaps, 2);
    }

    #[test]
    fn garbage_is_an_error() {
        let mut r = FrameChecker::new();
        let mut s = FrameStats::default();
        assert!(r.push(&[0xEE; 30], &mut s, &mut |_, _| {}).is_err());
    }
}
