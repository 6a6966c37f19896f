//! The vanbench record: the unit a generated source sends, and the streaming checker a viewer
//! runs over whatever bytes it receives (contract: /work/briefs/vanbench-cli.md).
//!
//! ```text
//! offset size
//!      0    4  magic  b"VANR"
//!      4    4  record_len (u32 LE, whole record incl. header)
//!      8    8  seq (u64 LE)
//!     16    8  send_time_us (u64 LE, CLOCK_REALTIME microseconds, taken just before the write)
//!     24  ...  filler: deterministic bytes computed from seq
//! ```
//!
//! The filler of record `seq` is a window of a fixed pseudo-random table starting at an offset
//! derived from `seq`, so a checker compares whole slices (a `memcmp`) instead of computing
//! bytes one by one: checking every byte costs about as much as copying it.
//!
//! The checker joins mid-stream: it looks for the magic, reads a header, and only trusts the
//! candidate once its whole filler matched. From then on it expects a record at every boundary and
//! verifies every byte. It never buffers more than one 24-byte header, so it processes received
//! bytes in place. This module does no I/O.

use std::collections::VecDeque;
use std::sync::OnceLock;

/// The four bytes every record starts with.
pub const MAGIC: [u8; 4] = *b"VANR";
/// Size of the fixed header.
pub const HEADER_LEN: usize = 24;
/// The largest record the format allows (and the checker accepts as a candidate).
pub const MAX_RECORD_LEN: usize = 64 * 1024;
/// The smallest record a source may send: a header and some filler to check.
pub const MIN_RECORD_LEN: usize = 32;
/// The default record size.
pub const DEFAULT_RECORD_LEN: usize = 1024;

/// How many distinct filler start offsets there are; records whose seq differ share a filler only
/// by a 1-in-4096 chance, and their seq fields differ anyway.
const PHASES: usize = 4096;

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn table() -> &'static [u8] {
    static TABLE: OnceLock<Box<[u8]>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut t = Vec::with_capacity(PHASES + MAX_RECORD_LEN + 8);
        let mut i = 0u64;
        while t.len() < PHASES + MAX_RECORD_LEN {
            t.extend_from_slice(&splitmix64(0x5641_4E52_0000_0000 ^ i).to_le_bytes());
            i += 1;
        }
        t.truncate(PHASES + MAX_RECORD_LEN);
        t.into_boxed_slice()
    })
}

/// The filler bytes of record `seq`, `len` bytes long (`len` ≤ `MAX_RECORD_LEN - HEADER_LEN`).
pub fn filler(seq: u64, len: usize) -> &'static [u8] {
    let phase = (splitmix64(seq ^ 0x4649_4C4C) % PHASES as u64) as usize;
    &table()[phase..phase + len]
}

/// Appends record `seq` of `record_len` bytes to `out`.
///
/// # Panics
/// If `record_len` is outside `HEADER_LEN..=MAX_RECORD_LEN` (a caller's bug: the CLI validates).
pub fn encode_record(seq: u64, send_time_us: u64, record_len: usize, out: &mut Vec<u8>) {
    assert!((HEADER_LEN..=MAX_RECORD_LEN).contains(&record_len));
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&(record_len as u32).to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&send_time_us.to_le_bytes());
    out.extend_from_slice(filler(seq, record_len - HEADER_LEN));
}

/// Overwrites the send time of the record that starts at `record_start` in `buf`: a source
/// builds a batch first and stamps it just before the write.
pub fn stamp_send_time(buf: &mut [u8], record_start: usize, send_time_us: u64) {
    buf[record_start + 16..record_start + 24].copy_from_slice(&send_time_us.to_le_bytes());
}

/// Counters a checker adds to. One value may be shared by many checkers (e.g. all viewers of a
/// thread), so they are plain sums.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CheckStats {
    /// Bytes pushed into checkers.
    pub bytes: u64,
    /// Records received whole, new and byte-exact.
    pub records: u64,
    /// Sequence numbers skipped over (after the first record a checker synced to).
    pub lost: u64,
    /// Records whose seq was already delivered.
    pub duplicated: u64,
    /// Records that arrived after a later one (they were first counted lost, then taken back).
    pub out_of_order: u64,
    /// Places where the bytes stopped being valid records after sync (a wrong header at a record
    /// boundary, or a filler byte that differs). Each starts a resync.
    pub corrupt: u64,
}

impl CheckStats {
    pub fn merge(&mut self, other: &CheckStats) {
        self.bytes += other.bytes;
        self.records += other.records;
        self.lost += other.lost;
        self.duplicated += other.duplicated;
        self.out_of_order += other.out_of_order;
        self.corrupt += other.corrupt;
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Looking for the magic; `hdr[..hdr_fill]` holds a partial match.
    Search,
    /// Collecting the 24 header bytes into `hdr`.
    Header,
    /// Comparing filler bytes of the current record.
    Body,
}

/// How many recently lost sequence numbers a checker remembers to tell a late record
/// (out of order) from a repeated one (duplicated).
const LOST_MEMORY: usize = 64;

/// A streaming record checker: feed it the received bytes in any pieces.
#[derive(Debug)]
pub struct RecordChecker {
    phase: Phase,
    hdr: [u8; HEADER_LEN],
    hdr_fill: usize,
    cur_seq: u64,
    cur_send_us: u64,
    cur_len: usize,
    /// Offset inside the current record of the next byte to check.
    cur_pos: usize,
    /// True once a whole record verified: every following byte must belong to a record.
    locked: bool,
    /// The next sequence number expected, once the first record was seen.
    expected: Option<u64>,
    /// Recently lost sequence numbers (only allocated once something was lost).
    recent_lost: VecDeque<u64>,
}

impl Default for RecordChecker {
    fn default() -> Self {
        Self::new()
    }
}

impl RecordChecker {
    pub fn new() -> Self {
        Self {
            phase: Phase::Search,
            hdr: [0; HEADER_LEN],
            hdr_fill: 0,
            cur_seq: 0,
            cur_send_us: 0,
            cur_len: 0,
            cur_pos: 0,
            locked: false,
            expected: None,
            recent_lost: VecDeque::new(),
        }
    }

    /// True while the checker is synced to record boundaries.
    pub fn is_locked(&self) -> bool {
        self.locked
    }

    /// The next sequence number the checker expects, once it has seen a record.
    pub fn expected_seq(&self) -> Option<u64> {
        self.expected
    }

    /// Checks `data`, the next received bytes. `on_record(seq, send_time_us)` is called for every
    /// new, byte-exact record as its last byte is checked.
    pub fn push(
        &mut self,
        data: &[u8],
        stats: &mut CheckStats,
        on_record: &mut impl FnMut(u64, u64),
    ) {
        stats.bytes += data.len() as u64;
        self.feed(data, stats, on_record);
    }

    fn feed(
        &mut self,
        mut data: &[u8],
        stats: &mut CheckStats,
        on_record: &mut impl FnMut(u64, u64),
    ) {
        while !data.is_empty() {
            data = match self.phase {
                Phase::Search => self.search(data),
                Phase::Header => self.header(data, stats, on_record),
                Phase::Body => self.body(data, stats, on_record),
            };
        }
    }

    fn search<'a>(&mut self, data: &'a [u8]) -> &'a [u8] {
        if self.hdr_fill > 0 {
            // Continue a magic match split across pieces. The magic has no prefix that is also
            // its suffix, so on a mismatch the search restarts at the mismatching byte.
            let take = (MAGIC.len() - self.hdr_fill).min(data.len());
            if data[..take] == MAGIC[self.hdr_fill..self.hdr_fill + take] {
                self.hdr[self.hdr_fill..self.hdr_fill + take].copy_from_slice(&data[..take]);
                self.hdr_fill += take;
                if self.hdr_fill == MAGIC.len() {
                    self.phase = Phase::Header;
                }
                return &data[take..];
            }
            self.hdr_fill = 0;
        }
        let mut from = 0;
        while let Some(p) = data[from..].iter().position(|&b| b == MAGIC[0]) {
            let at = from + p;
            let m = MAGIC.len().min(data.len() - at);
            if data[at..at + m] == MAGIC[..m] {
                self.hdr[..m].copy_from_slice(&data[at..at + m]);
                self.hdr_fill = m;
                if m == MAGIC.len() {
                    self.phase = Phase::Header;
                }
                return &data[at + m..];
            }
            from = at + 1;
        }
        &[]
    }

    fn header<'a>(
        &mut self,
        data: &'a [u8],
        stats: &mut CheckStats,
        on_record: &mut impl FnMut(u64, u64),
    ) -> &'a [u8] {
        let take = (HEADER_LEN - self.hdr_fill).min(data.len());
        self.hdr[self.hdr_fill..self.hdr_fill + take].copy_from_slice(&data[..take]);
        self.hdr_fill += take;
        let rest = &data[take..];
        if self.hdr_fill < HEADER_LEN {
            return rest;
        }
        let len = u32::from_le_bytes(self.hdr[4..8].try_into().expect("4 bytes")) as usize;
        if self.hdr[..4] != MAGIC || !(HEADER_LEN..=MAX_RECORD_LEN).contains(&len) {
            // Not a record where one must be (after sync), or a false candidate (before).
            if self.locked {
                stats.corrupt += 1;
                self.locked = false;
            }
            let saved = self.hdr;
            self.phase = Phase::Search;
            self.hdr_fill = 0;
            // A true magic may start inside the rejected header bytes.
            self.feed(&saved[1..], stats, on_record);
            return rest;
        }
        self.cur_seq = u64::from_le_bytes(self.hdr[8..16].try_into().expect("8 bytes"));
        self.cur_send_us = u64::from_le_bytes(self.hdr[16..24].try_into().expect("8 bytes"));
        self.cur_len = len;
        self.cur_pos = HEADER_LEN;
        self.phase = Phase::Body;
        if len == HEADER_LEN {
            self.complete(stats, on_record);
        }
        rest
    }

    fn body<'a>(
        &mut self,
        data: &'a [u8],
        stats: &mut CheckStats,
        on_record: &mut impl FnMut(u64, u64),
    ) -> &'a [u8] {
        let take = (self.cur_len - self.cur_pos).min(data.len());
        let want = filler(self.cur_seq, self.cur_len - HEADER_LEN);
        let off = self.cur_pos - HEADER_LEN;
        if data[..take] != want[off..off + take] {
            if self.locked {
                stats.corrupt += 1;
                // The record we expected arrived, damaged: account its seq so the next record is
                // not also counted lost. Any other seq may itself be damaged bytes (a filler
                // mismatch proves nothing about the header), so it is not trusted.
                if Some(self.cur_seq) == self.expected {
                    self.account(self.cur_seq, stats);
                }
                self.locked = false;
            }
            // Resync from this piece: bytes before it matched the filler, so no record starts
            // there (short of a filler that contains the magic, a 2^-32 chance per byte).
            self.phase = Phase::Search;
            self.hdr_fill = 0;
            return data;
        }
        self.cur_pos += take;
        if self.cur_pos == self.cur_len {
            self.complete(stats, on_record);
        }
        &data[take..]
    }

    fn complete(&mut self, stats: &mut CheckStats, on_record: &mut impl FnMut(u64, u64)) {
        self.locked = true;
        self.phase = Phase::Header;
        self.hdr_fill = 0;
        if self.account(self.cur_seq, stats) {
            stats.records += 1;
            on_record(self.cur_seq, self.cur_send_us);
        }
    }

    /// Books a record's seq against the expected one; true when it is new.
    fn account(&mut self, seq: u64, stats: &mut CheckStats) -> bool {
        let Some(expected) = self.expected else {
            self.expected = Some(seq.wrapping_add(1));
            return true;
        };
        if seq == expected {
            self.expected = Some(seq.wrapping_add(1));
            return true;
        }
        if seq > expected {
            stats.lost = stats.lost.saturating_add(seq - expected);
            // Remember the most recent missing seqs, to recognise them if they come late.
            let first = expected.max(seq.saturating_sub(LOST_MEMORY as u64));
            for s in first..seq {
                if self.recent_lost.len() == LOST_MEMORY {
                    self.recent_lost.pop_front();
                }
                self.recent_lost.push_back(s);
            }
            self.expected = Some(seq.wrapping_add(1));
            return true;
        }
        if let Some(i) = self.recent_lost.iter().position(|&s| s == seq) {
            self.recent_lost.remove(i);
            stats.lost = stats.lost.saturating_sub(1);
            stats.out_of_order += 1;
            return true;
        }
        stats.duplicated += 1;
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn stream(first: u64, n: u64, len: usize) -> (Vec<u8>, Vec<usize>) {
        let mut out = Vec::new();
        let mut starts = Vec::new();
        for seq in first..first + n {
            starts.push(out.len());
            encode_record(seq, 1_000 + seq, len, &mut out);
        }
        (out, starts)
    }

    fn check(pieces: &[&[u8]]) -> (CheckStats, Vec<u64>) {
        let mut c = RecordChecker::new();
        let mut stats = CheckStats::default();
        let mut seqs = Vec::new();
        for p in pieces {
            c.push(p, &mut stats, &mut |seq, sent| {
                assert_eq!(sent, 1_000 + seq);
                seqs.push(seq);
            });
        }
        (stats, seqs)
    }

    #[test]
    fn layout_is_the_documented_one() {
        let mut out = Vec::new();
        encode_record(0x0102, 0x0A0B, 64, &mut out);
        assert_eq!(out.len(), 64);
        assert_eq!(&out[..4], b"VANR");
        assert_eq!(&out[4..8], &64u32.to_le_bytes());
        assert_eq!(&out[8..16], &0x0102u64.to_le_bytes());
        assert_eq!(&out[16..24], &0x0A0Bu64.to_le_bytes());
        assert_eq!(&out[24..], filler(0x0102, 40));
        assert_ne!(filler(1, 40), filler(2, 40));
        stamp_send_time(&mut out, 0, 7);
        assert_eq!(&out[16..24], &7u64.to_le_bytes());
    }

    #[test]
    fn whole_stream_is_all_records() {
        let (s, _) = stream(5, 50, 1024);
        let (stats, seqs) = check(&[&s]);
        assert_eq!(seqs, (5..55).collect::<Vec<_>>());
        assert_eq!(stats.records, 50);
        assert_eq!(stats.bytes, s.len() as u64);
        assert_eq!((stats.lost, stats.duplicated, stats.corrupt), (0, 0, 0));
    }

    #[test]
    fn lost_record_is_counted() {
        let (s, starts) = stream(0, 10, 100);
        let cut = [&s[..starts[4]], &s[starts[5]..]].concat();
        let (stats, seqs) = check(&[&cut]);
        assert_eq!(stats.lost, 1);
        assert_eq!(stats.records, 9);
        assert_eq!(stats.corrupt, 0);
        assert!(!seqs.contains(&4));
    }

    #[test]
    fn duplicated_and_late_records_are_told_apart() {
        let (s, st) = stream(0, 10, 100);
        let r = |i: usize| &s[st[i]..st[i] + 100];
        // 0 1 2 2 4 3 5: 2 is duplicated, 3 arrives late.
        let wire = [r(0), r(1), r(2), r(2), r(4), r(3), r(5)].concat();
        let (stats, seqs) = check(&[&wire]);
        assert_eq!(stats.duplicated, 1);
        assert_eq!(stats.out_of_order, 1);
        assert_eq!(stats.lost, 0);
        assert_eq!(seqs, vec![0, 1, 2, 4, 3, 5]);
    }

    #[test]
    fn broken_header_after_sync_is_corrupt_then_resyncs() {
        let (mut s, st) = stream(0, 10, 100);
        s[st[3]] = b'X';
        let (stats, seqs) = check(&[&s]);
        assert_eq!(stats.corrupt, 1);
        assert_eq!(stats.lost, 1);
        assert_eq!(seqs, vec![0, 1, 2, 4, 5, 6, 7, 8, 9]);
    }

    #[test]
    fn a_damaged_seq_field_is_corrupt_and_never_a_huge_loss() {
        let (mut s, st) = stream(0, 10, 100);
        s[st[4] + 15] ^= 0xFF; // the top byte of record 4's seq
        let (stats, seqs) = check(&[&s]);
        assert_eq!(stats.corrupt, 1);
        assert_eq!(stats.lost, 1, "record 4 never arrived intact");
        assert_eq!(seqs, vec![0, 1, 2, 3, 5, 6, 7, 8, 9]);
    }

    #[test]
    fn skip_into_the_middle_of_a_record_is_corrupt_plus_lost() {
        let (s, st) = stream(0, 20, 100);
        let wire = [&s[..st[3]], &s[st[7] + 37..]].concat();
        let (stats, seqs) = check(&[&wire]);
        assert_eq!(stats.corrupt, 1);
        assert_eq!(stats.lost, 5, "3..=7 never arrived whole");
        assert_eq!(seqs.len(), 15);
    }

    #[test]
    fn garbage_never_syncs() {
        let garbage: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let (stats, seqs) = check(&[b"VANR", &garbage, b"VAN", b"RVANRxxxxxxxxxx"]);
        assert!(seqs.is_empty());
        assert_eq!(stats.corrupt, 0);
    }

    proptest! {
        #[test]
        fn any_split_and_any_join_point(
            n in 2u64..40,
            len in MIN_RECORD_LEN..600,
            join_frac in 0.0f64..1.0,
            cuts in proptest::collection::vec(1usize..700, 1..50),
        ) {
            let (s, starts) = stream(100, n, len);
            let join = ((s.len() as f64) * join_frac) as usize;
            let first = starts.iter().position(|&b| b >= join).unwrap_or(n as usize) as u64;
            let tail = &s[join..];
            let mut pieces = Vec::new();
            let mut at = 0;
            let mut i = 0;
            while at < tail.len() {
                let c = cuts[i % cuts.len()].min(tail.len() - at);
                pieces.push(&tail[at..at + c]);
                at += c;
                i += 1;
            }
            let (stats, seqs) = check(&pieces);
            prop_assert_eq!(seqs, (100 + first..100 + n).collect::<Vec<_>>());
            prop_assert_eq!(stats.lost + stats.duplicated + stats.corrupt + stats.out_of_order, 0);
        }

        #[test]
        fn detects_a_lost_duplicated_or_corrupted_record(
            n in 6u64..30,
            len in MIN_RECORD_LEN..400,
            victim in 2usize..5,
            what in 0u8..3,
            byte in 0usize..10_000,
            cut in 1usize..500,
        ) {
            let (s, st) = stream(0, n, len);
            let mut wire = Vec::new();
            for (i, &start) in st.iter().enumerate() {
                let rec = &s[start..start + len];
                match (i == victim, what) {
                    (true, 0) => {}
                    (true, 1) => { wire.extend_from_slice(rec); wire.extend_from_slice(rec); }
                    (true, _) => {
                        let mut bad = rec.to_vec();
                        let at = HEADER_LEN + byte % (len - HEADER_LEN);
                        bad[at] ^= 0x5A;
                        wire.extend_from_slice(&bad);
                    }
                    (false, _) => wire.extend_from_slice(rec),
                }
            }
            let pieces: Vec<&[u8]> = wire.chunks(cut).collect();
            let (stats, seqs) = check(&pieces);
            match what {
                0 => { prop_assert_eq!(stats.lost, 1); prop_assert_eq!(stats.records, n - 1); }
                1 => { prop_assert_eq!(stats.duplicated, 1); prop_assert_eq!(stats.records, n); }
                _ => {
                    prop_assert_eq!(stats.corrupt, 1);
                    prop_assert_eq!(stats.lost, 0);
                    prop_assert_eq!(stats.records, n - 1);
                    prop_assert!(!seqs.contains(&(victim as u64)));
                }
            }
        }
    }
}
