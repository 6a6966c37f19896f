//! Viewers that check every byte they receive, one report per viewer.
//!
//! A test publishes generated records ([`GeneratedSource`], vanbench's own source) and watches
//! them with [`CheckedViewers`]: one thread per viewer reads `/live/S` (raw bytes) or `/van/S`
//! (VAN frames, read with vanbench's `FrameChecker`) and feeds the payload to vanbench's
//! `RecordChecker`, the same checker the benchmarks run. Nothing is summed over viewers: each
//! [`ViewerReport`] says what one viewer got, so a test can hold every viewer to the promise.
//!
//! The checker joins mid-stream and counts damage only once it has seen a whole record; the
//! bytes before that are checked here ([`ViewerReport::prefix`]): they must be the tail of the
//! record before the first whole one, so a viewer is checked from its first byte.

use crate::{RawViewer, Relay, SOURCE_PASSWORD, SOURCE_USER, VAN_TOKEN};
use anyhow::{Result, bail};
use std::io::Read;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use vanbench::http::HttpUrl;
use vanbench::record::{CheckStats, HEADER_LEN, MAGIC, RecordChecker, filler};
use vanbench::source::{Framing, Method, SourceConfig, SourceProgress, SourceReport, run_source};
use vanbench::van::{FrameChecker, FrameStats, StreamEnd};

/// The record size every generated test source sends.
pub const RECORD_LEN: usize = 1024;

/// A vanbench source publishing generated records from a thread of the test; stopped on drop.
pub struct GeneratedSource {
    stop: Arc<AtomicBool>,
    progress: Arc<SourceProgress>,
    thread: Option<JoinHandle<Result<SourceReport>>>,
    bitrate: u64,
}

impl GeneratedSource {
    /// Publishes `stream` at `bitrate` bit/s (a chunked PUT of [`RECORD_LEN`]-byte records,
    /// numbered from `start_seq`) and waits until the relay has taken it and the first bytes
    /// went out.
    pub fn start(relay: &Relay, stream: &str, bitrate: u64, start_seq: u64) -> Self {
        let cfg = SourceConfig {
            url: HttpUrl::parse(&relay.url(&format!("/live/{stream}"))).expect("source URL"),
            user: SOURCE_USER.into(),
            password: SOURCE_PASSWORD.into(),
            method: Method::Put,
            framing: Framing::Chunked,
            bitrate: Some(bitrate),
            record_size: RECORD_LEN,
            duration: None,
            start_seq,
            raw: None,
            content_type: "application/octet-stream".into(),
            pace: Duration::from_millis(2),
        };
        let stop = Arc::new(AtomicBool::new(false));
        let progress = Arc::new(SourceProgress::default());
        let thread = {
            let (stop, progress) = (stop.clone(), progress.clone());
            std::thread::Builder::new()
                .name(format!("source-{stream}"))
                .spawn(move || run_source(&cfg, &stop, &progress))
                .expect("source thread")
        };
        let source = Self {
            stop,
            progress,
            thread: Some(thread),
            bitrate,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !source.progress.started.load(Ordering::Relaxed) {
            if source.thread.as_ref().is_some_and(JoinHandle::is_finished) {
                let outcome = source.stop();
                panic!("the source stopped before sending: {outcome:?}");
            }
            assert!(
                Instant::now() < deadline,
                "the source sent nothing within 30 s; relay log:\n{}",
                relay.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        source
    }

    /// Body bytes sent so far.
    pub fn bytes(&self) -> u64 {
        self.progress.bytes.load(Ordering::Relaxed)
    }

    pub fn bitrate(&self) -> u64 {
        self.bitrate
    }

    /// Stops sending (closing the connection) and reports.
    pub fn stop(mut self) -> Result<SourceReport> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .expect("running")
            .join()
            .expect("source thread")
    }
}

impl Drop for GeneratedSource {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Which kind of viewer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `GET /live/S`: the raw stream bytes.
    Plain,
    /// `GET /van/S` with the test token: VAN frames around the stream bytes.
    Van,
}

/// How a viewer's response ended, if it did before the viewer was stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ending {
    /// Still open when the test stopped it.
    Open,
    /// The relay closed the connection.
    Eof,
    /// A VAN end frame.
    EndFrame,
    /// A VAN redirect frame.
    Redirect,
    /// A read error, or bytes that are not VAN frames.
    Broken(String),
}

/// What one viewer received, checked record by record.
#[derive(Debug)]
pub struct ViewerReport {
    pub index: usize,
    pub kind: Kind,
    /// The record checker's counts (records, lost, duplicated, out of order, corrupt).
    pub stats: CheckStats,
    /// VAN frame counts (zero for a plain viewer).
    pub frames: FrameStats,
    /// The bytes before the first whole record: `Ok(n)` when they are the last `n` bytes of the
    /// record before it, `Err` with what is wrong otherwise.
    pub prefix: Result<usize, String>,
    /// Sequence numbers of the first and the last whole record received.
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    pub ending: Ending,
    /// When the response ended (not for [`Ending::Open`]).
    pub ended_at: Option<Instant>,
    /// (receive time, latency) of every record, latency = receive time − the source's send
    /// time, both microseconds of CLOCK_REALTIME.
    pub latencies: Vec<(u64, u64)>,
}

impl ViewerReport {
    /// Every problem with what this viewer received: bytes before the first record that do not
    /// belong to the stream, records lost, repeated, reordered or damaged, frames out of
    /// sequence, or no record at all. Empty when every byte was right.
    pub fn damage(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Err(e) = &self.prefix {
            problems.push(format!("first bytes: {e}"));
        }
        let s = &self.stats;
        for (what, n) in [
            ("lost", s.lost),
            ("duplicated", s.duplicated),
            ("out of order", s.out_of_order),
            ("corrupt", s.corrupt),
            ("VAN frame sequence gaps", self.frames.seq_gaps),
        ] {
            if n > 0 {
                problems.push(format!("{n} {what}"));
            }
        }
        if let Ending::Broken(why) = &self.ending {
            problems.push(format!("broken: {why}"));
        }
        problems
    }

    /// The `q` quantile (0..=1) of the latencies of records received between `from` and `to`
    /// (CLOCK_REALTIME microseconds); `None` if none was.
    pub fn latency_quantile_us(&self, from: u64, to: u64, q: f64) -> Option<u64> {
        let mut l: Vec<u64> = self
            .latencies
            .iter()
            .filter(|(at, _)| (from..to).contains(at))
            .map(|&(_, l)| l)
            .collect();
        if l.is_empty() {
            return None;
        }
        l.sort_unstable();
        let i = ((l.len() - 1) as f64 * q).round() as usize;
        Some(l[i])
    }
}

/// Microseconds of CLOCK_REALTIME, the clock the source stamps records with.
pub fn now_us() -> u64 {
    vanbench::sys::now_us()
}

/// Checks the bytes before the first whole record `first_seq` (found in `head` at the first
/// place its header occurs): they must be the tail of record `first_seq - 1`, shorter than a
/// record. The send time inside that tail (unknown here) is not compared.
fn check_prefix(head: &[u8], first_seq: u64) -> Result<usize, String> {
    let Some(at) = head.windows(8).enumerate().find_map(|(i, w)| {
        (w[..4] == MAGIC && head.len() >= i + 16 && head[i + 8..i + 16] == first_seq.to_le_bytes())
            .then_some(i)
    }) else {
        return Err(format!(
            "record {first_seq} does not start within the first {} bytes",
            head.len()
        ));
    };
    let len = u32::from_le_bytes(head[at + 4..at + 8].try_into().expect("4 bytes")) as usize;
    if at == 0 {
        return Ok(0);
    }
    if at >= len || first_seq == 0 {
        return Err(format!(
            "{at} bytes before record {first_seq} (records are {len} bytes)"
        ));
    }
    // Record first_seq - 1 as the source wrote it, but for its send time (bytes 16..24).
    let prev = first_seq - 1;
    let mut want = Vec::with_capacity(len);
    want.extend_from_slice(&MAGIC);
    want.extend_from_slice(&(len as u32).to_le_bytes());
    want.extend_from_slice(&prev.to_le_bytes());
    want.extend_from_slice(&[0; 8]);
    want.extend_from_slice(filler(prev, len - HEADER_LEN));
    let tail = &want[len - at..];
    let differs = head[..at]
        .iter()
        .zip(tail)
        .enumerate()
        .any(|(i, (got, want))| {
            let in_record = len - at + i;
            !(16..24).contains(&in_record) && got != want
        });
    if differs {
        return Err(format!(
            "the {at} bytes before record {first_seq} are not the end of record {prev}"
        ));
    }
    Ok(at)
}

/// How many first bytes a viewer keeps to check the bytes before its first whole record.
const HEAD_KEPT: usize = 4 * vanbench::record::MAX_RECORD_LEN;

/// One viewer's reading and checking state.
struct Checker {
    records: RecordChecker,
    frames: Option<FrameChecker>,
    stats: CheckStats,
    frame_stats: FrameStats,
    /// The first payload bytes, until the first whole record is known.
    head: Option<Vec<u8>>,
    prefix: Result<usize, String>,
    first_seq: Option<u64>,
    last_seq: Option<u64>,
    latencies: Vec<(u64, u64)>,
    live: Arc<Live>,
}

/// What a viewer's thread publishes while it runs.
#[derive(Default)]
struct Live {
    payload: AtomicU64,
    /// One past the newest whole record's sequence number; 0 before the first.
    next_seq: AtomicU64,
    /// Set once the response ended (or the viewer failed).
    ended: AtomicBool,
}

impl Checker {
    fn payload(&mut self, data: &[u8], now: u64) {
        self.live
            .payload
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        if let Some(head) = self.head.as_mut() {
            let room = HEAD_KEPT.saturating_sub(head.len());
            head.extend_from_slice(&data[..room.min(data.len())]);
        }
        let (first, last, latencies) =
            (&mut self.first_seq, &mut self.last_seq, &mut self.latencies);
        self.records.push(data, &mut self.stats, &mut |seq, sent| {
            first.get_or_insert(seq);
            *last = Some(seq);
            latencies.push((now, now.saturating_sub(sent)));
        });
        if let Some(last) = self.last_seq {
            self.live.next_seq.store(last + 1, Ordering::Relaxed);
        }
        if let (Some(first), Some(head)) = (self.first_seq, self.head.as_ref()) {
            self.prefix = check_prefix(head, first);
            self.head = None;
        } else if self.head.as_ref().is_some_and(|h| h.len() >= HEAD_KEPT) {
            self.prefix = Err(format!("no whole record in the first {HEAD_KEPT} bytes"));
            self.head = None;
        }
    }

    /// Consumes received bytes; `Some` once the response ended (end or redirect frame) or
    /// turned out not to be VAN frames.
    fn push(&mut self, data: &[u8]) -> Option<Ending> {
        let now = now_us();
        let Some(mut reader) = self.frames.take() else {
            self.payload(data, now);
            return None;
        };
        let mut payload = Vec::new();
        let r = reader.push(data, &mut self.frame_stats, &mut |p, _| {
            payload.extend_from_slice(p)
        });
        self.frames = Some(reader);
        self.payload(&payload, now);
        match r {
            Ok(None) => None,
            Ok(Some(StreamEnd::End)) => Some(Ending::EndFrame),
            Ok(Some(StreamEnd::Redirect)) => Some(Ending::Redirect),
            Err(e) => Some(Ending::Broken(format!("not VAN frames: {e}"))),
        }
    }
}

fn read_until_stopped(
    mut viewer: RawViewer,
    mut checker: Checker,
    stop: &AtomicBool,
) -> (Checker, Ending, Option<Instant>) {
    let first = std::mem::take(&mut viewer.head.body);
    if let Some(ending) = checker.push(&first) {
        return (checker, ending, Some(Instant::now()));
    }
    if let Err(e) = viewer
        .stream
        .set_read_timeout(Some(Duration::from_millis(100)))
    {
        return (checker, Ending::Broken(e.to_string()), Some(Instant::now()));
    }
    let mut buf = vec![0u8; 64 * 1024];
    while !stop.load(Ordering::Relaxed) {
        match viewer.stream.read(&mut buf) {
            Ok(0) => return (checker, Ending::Eof, Some(Instant::now())),
            Ok(n) => {
                if let Some(ending) = checker.push(&buf[..n]) {
                    return (checker, ending, Some(Instant::now()));
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) => {}
            Err(e) => return (checker, Ending::Broken(e.to_string()), Some(Instant::now())),
        }
    }
    (checker, Ending::Open, None)
}

struct Running {
    live: Arc<Live>,
    thread: JoinHandle<ViewerReport>,
}

/// Viewers reading and checking a stream, each on its own thread, until [`CheckedViewers::stop`].
pub struct CheckedViewers {
    stop: Arc<AtomicBool>,
    viewers: Vec<Running>,
}

impl CheckedViewers {
    /// Opens `n` viewers of `stream`; every one must get its `200` within `limit`.
    pub fn open(addr: SocketAddr, kind: Kind, stream: &str, n: usize, limit: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (path, headers) = match kind {
            Kind::Plain => (format!("/live/{stream}"), String::new()),
            Kind::Van => (
                format!("/van/{stream}"),
                format!("Authorization: Bearer {VAN_TOKEN}\r\n"),
            ),
        };
        let (tx, rx) = std::sync::mpsc::channel::<(usize, Result<()>)>();
        let mut viewers = Vec::with_capacity(n);
        for index in 0..n {
            let live = Arc::new(Live::default());
            let checker = Checker {
                records: RecordChecker::new(),
                frames: (kind == Kind::Van).then(FrameChecker::new),
                stats: CheckStats::default(),
                frame_stats: FrameStats::default(),
                head: Some(Vec::new()),
                prefix: Err("no whole record arrived".into()),
                first_seq: None,
                last_seq: None,
                latencies: Vec::new(),
                live: live.clone(),
            };
            let (stop, path, headers, tx) =
                (stop.clone(), path.clone(), headers.clone(), tx.clone());
            let thread = std::thread::Builder::new()
                .name(format!("viewer-{index}"))
                .stack_size(256 * 1024)
                .spawn(move || {
                    let opened = RawViewer::open(addr, &path, &headers).and_then(|v| {
                        if v.head.status != 200 {
                            bail!("answered {} {:?}", v.head.status, v.head.headers);
                        }
                        Ok(v)
                    });
                    let live = checker.live.clone();
                    let (checker, ending, ended_at) = match opened {
                        Ok(viewer) => {
                            let _ = tx.send((index, Ok(())));
                            read_until_stopped(viewer, checker, &stop)
                        }
                        Err(e) => {
                            let why = format!("{e:#}");
                            let _ = tx.send((index, Err(e)));
                            (checker, Ending::Broken(why), Some(Instant::now()))
                        }
                    };
                    live.ended.store(ending != Ending::Open, Ordering::Relaxed);
                    ViewerReport {
                        index,
                        kind,
                        stats: checker.stats,
                        frames: checker.frame_stats,
                        prefix: checker.prefix,
                        first_seq: checker.first_seq,
                        last_seq: checker.last_seq,
                        ending,
                        ended_at,
                        latencies: checker.latencies,
                    }
                })
                .expect("viewer thread");
            viewers.push(Running { live, thread });
        }
        drop(tx);
        let viewers = Self { stop, viewers };
        let deadline = Instant::now() + limit;
        for _ in 0..n {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok((_, Ok(()))) => {}
                Ok((i, Err(e))) => panic!("viewer {i} of {stream} was not served: {e:#}"),
                Err(_) => panic!("not every viewer of {stream} got its answer within {limit:?}"),
            }
        }
        viewers
    }

    /// Payload bytes each viewer received so far (VAN: frame payloads).
    pub fn payload_bytes(&self) -> Vec<u64> {
        self.viewers
            .iter()
            .map(|v| v.live.payload.load(Ordering::Relaxed))
            .collect()
    }

    /// Waits until every viewer has received record `seq` (or a later one), up to `limit`.
    /// `Err` lists the viewers that had not, with the newest record each had.
    pub fn wait_until_all_have(&self, seq: u64, limit: Duration) -> Result<(), String> {
        let deadline = Instant::now() + limit;
        loop {
            let behind: Vec<String> = self
                .viewers
                .iter()
                .enumerate()
                .filter_map(|(i, v)| {
                    let next = v.live.next_seq.load(Ordering::Relaxed);
                    let ended = if v.live.ended.load(Ordering::Relaxed) {
                        " (its response ended)"
                    } else {
                        ""
                    };
                    (next <= seq).then(|| match next {
                        0 => format!("viewer {i}: no record{ended}"),
                        n => format!("viewer {i}: up to {}{ended}", n - 1),
                    })
                })
                .collect();
            if behind.is_empty() {
                return Ok(());
            }
            // A viewer whose response ended gets nothing more: no use waiting for it.
            let hopeless = behind.iter().any(|b| b.ends_with("ended)"));
            if hopeless || Instant::now() >= deadline {
                return Err(format!(
                    "{} of {} viewers had not received record {seq} (waited up to {limit:?}): {}",
                    behind.len(),
                    self.viewers.len(),
                    behind.join(", ")
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// How many viewers' responses have ended so far.
    pub fn ended(&self) -> usize {
        self.viewers
            .iter()
            .filter(|v| v.live.ended.load(Ordering::Relaxed))
            .count()
    }

    /// Waits until every viewer's response has ended, up to `limit`; `Err` says how many had not.
    pub fn wait_until_all_ended(&self, limit: Duration) -> Result<(), String> {
        let deadline = Instant::now() + limit;
        loop {
            let open = self.viewers.len() - self.ended();
            if open == 0 {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "{open} of {} responses had not ended within {limit:?}",
                    self.viewers.len()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The newest record every viewer has received (the smallest of their newest), if each has one.
    pub fn newest_common_seq(&self) -> Option<u64> {
        self.viewers
            .iter()
            .map(|v| v.live.next_seq.load(Ordering::Relaxed).checked_sub(1))
            .min()
            .flatten()
    }

    /// Stops every viewer and returns what each received.
    pub fn stop(mut self) -> Vec<ViewerReport> {
        self.stop.store(true, Ordering::Relaxed);
        std::mem::take(&mut self.viewers)
            .into_iter()
            .map(|v| v.thread.join().expect("viewer thread"))
            .collect()
    }
}

impl Drop for CheckedViewers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Each viewer's share of what the source sent over the same interval: (bytes each viewer
/// received between two samples) / (bytes the source sent between them).
pub fn delivered_ratios(before: &[u64], after: &[u64], source_bytes: u64) -> Vec<f64> {
    before
        .iter()
        .zip(after)
        .map(|(b, a)| (a - b) as f64 / source_bytes.max(1) as f64)
        .collect()
}

/// Stops `source`, gives every viewer of `groups` up to `limit` to receive its last record, stops
/// them, and fails the test if any received a wrong byte (checked first: damage says more than
/// lateness) or did not catch up.
pub fn stop_and_check_every_byte(
    source: GeneratedSource,
    groups: Vec<CheckedViewers>,
    limit: Duration,
) -> Vec<ViewerReport> {
    let last = source.stop().expect("the source ran").next_seq - 1;
    let caught_up: Vec<_> = groups
        .iter()
        .map(|g| g.wait_until_all_have(last, limit))
        .collect();
    let reports: Vec<ViewerReport> = groups.into_iter().flat_map(CheckedViewers::stop).collect();
    assert_every_byte_right(&reports);
    for c in caught_up {
        c.unwrap_or_else(|e| panic!("{e}"));
    }
    reports
}

/// Fails the test with every viewer that received anything wrong.
pub fn assert_every_byte_right(reports: &[ViewerReport]) {
    let damaged: Vec<String> = reports
        .iter()
        .filter_map(|r| {
            let d = r.damage();
            (!d.is_empty()).then(|| format!("viewer {} ({:?}): {}", r.index, r.kind, d.join(", ")))
        })
        .collect();
    assert!(
        damaged.is_empty(),
        "{} of {} viewers received wrong bytes:\n{}",
        damaged.len(),
        reports.len(),
        damaged.join("\n")
    );
}

/// Fails the test with every viewer whose share of the source's bytes is under `min`.
pub fn assert_every_ratio_at_least(ratios: &[f64], min: f64, what: &str) {
    let short: Vec<String> = ratios
        .iter()
        .enumerate()
        .filter(|(_, r)| **r < min)
        .map(|(i, r)| format!("viewer {i}: {r:.3}"))
        .collect();
    assert!(
        short.is_empty(),
        "{} of {} viewers received less than {min} of {what}: {}",
        short.len(),
        ratios.len(),
        short.join(", ")
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use vanbench::record::encode_record;

    fn records(first: u64, n: u64) -> Vec<u8> {
        let mut out = Vec::new();
        for seq in first..first + n {
            encode_record(seq, 1_000 + seq, RECORD_LEN, &mut out);
        }
        out
    }

    #[test]
    fn a_join_anywhere_in_the_record_before_is_a_valid_prefix() {
        let stream = records(10, 4);
        // Joins at a record boundary, inside the header (send time included), inside the filler.
        for join in [RECORD_LEN, 3, 17, 20, 500, RECORD_LEN - 1] {
            let bytes = &stream[join..];
            let first = 10 + join.div_ceil(RECORD_LEN) as u64;
            let expected = (RECORD_LEN - join % RECORD_LEN) % RECORD_LEN;
            assert_eq!(check_prefix(bytes, first), Ok(expected), "join at {join}");
        }
    }

    #[test]
    fn damaged_or_foreign_bytes_before_the_first_record_are_found() {
        let stream = records(10, 4);
        let mut damaged = stream[500..].to_vec();
        damaged[100] ^= 1;
        assert!(check_prefix(&damaged, 11).is_err());
        // A whole record skipped before the first one the checker took.
        assert!(check_prefix(&stream[500..], 12).is_err());
        // Garbage in front of the very first record of the stream.
        let garbage = [b"xyz".as_slice(), &records(0, 2)].concat();
        assert!(check_prefix(&garbage, 0).is_err());
        assert!(check_prefix(&records(0, 2), 0) == Ok(0));
        assert!(check_prefix(&stream[500..], 99).is_err());
    }

    #[test]
    fn a_viewer_checker_reports_prefix_loss_and_latency() {
        let stream = records(10, 6);
        let mut checker = Checker {
            records: RecordChecker::new(),
            frames: None,
            stats: CheckStats::default(),
            frame_stats: FrameStats::default(),
            head: Some(Vec::new()),
            prefix: Err("no whole record arrived".into()),
            first_seq: None,
            last_seq: None,
            latencies: Vec::new(),
            live: Arc::default(),
        };
        let cut = [&stream[700..2 * RECORD_LEN + 5], &stream[4 * RECORD_LEN..]].concat();
        for piece in cut.chunks(333) {
            assert_eq!(checker.push(piece), None);
        }
        assert_eq!(checker.prefix, Ok(RECORD_LEN - 700));
        assert_eq!((checker.first_seq, checker.last_seq), (Some(11), Some(15)));
        assert_eq!(checker.stats.lost, 2);
        assert_eq!(checker.stats.corrupt, 1);
        assert_eq!(checker.live.next_seq.load(Ordering::Relaxed), 16);
        assert_eq!(checker.latencies.len() as u64, checker.stats.records);
    }
}
