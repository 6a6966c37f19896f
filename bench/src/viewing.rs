//! What every viewer does, whichever client runs it ([`crate::viewers`]' shards or
//! [`crate::crowd`]): the request it sends, reading the response head, checking each read's
//! bytes (VAN frames → record checker → latency histogram), and the sums a group of viewers
//! keeps ([`Tally`]) and publishes for progress lines ([`LiveFigures`]).

use crate::http::HttpUrl;
use crate::record::{CheckStats, RecordChecker};
use crate::sys;
use crate::van::{FrameChecker, FrameStats};
use dataplane::response_head::parse_response_head;
use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

#[derive(Clone, Debug)]
pub enum ViewerMode {
    /// `GET /live/{stream}`: close-delimited raw bytes.
    Plain,
    /// `GET /van/{stream}` with `Authorization: Bearer {token}`: VAN frames.
    Van { token: String },
}

/// How the viewers behave: two clients, so that the relay is measured with a harsh one too.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientKind {
    /// Few threads, each an epoll loop whose viewers share one read buffer and take turns of
    /// a few reads: cheap enough to leave the CPU to the relay.
    Shards,
    /// Like an outside load generator: a multi-threaded tokio runtime, every viewer its own
    /// task with its own 64 KiB buffer reading as fast as it can, all connecting at once
    /// unless `connect_rate` paces them. See [`crowd`].
    Crowd,
}

#[derive(Clone, Debug)]
pub struct ViewersConfig {
    /// Which client the viewers behave like.
    pub client: ClientKind,
    pub url: HttpUrl,
    pub mode: ViewerMode,
    pub n: usize,
    /// The measured window; `None` runs until stopped.
    pub duration: Option<Duration>,
    /// New connections per second; `None` connects all at once.
    pub connect_rate: Option<f64>,
    /// How many viewers stop reading once connected.
    pub stall: usize,
    pub threads: usize,
    /// Crowd client: let its allocator back the viewers' read buffers with transparent huge
    /// pages (see [`crate::crowd`]); off unless asked for.
    pub huge_pages: bool,
    /// Longest wait for one viewer's `200`.
    pub connect_timeout: Duration,
    /// The stream's bit rate, for `expected_bps`; unknown when `None` (then taken from
    /// `source` if given).
    pub bitrate: Option<u64>,
    pub relay_pid: Option<u32>,
    /// Print a live line to stderr this often.
    pub progress: Option<Duration>,
}

/// Bytes read at a time while waiting for a response head.
const HEAD_READ: usize = 4096;
/// Failure reasons logged to stderr per group (the rest are only counted).
const LOGGED_FAILURES: u32 = 5;

/// Cross-thread state of one run.
#[derive(Default)]
pub(crate) struct Shared {
    pub(crate) measuring: AtomicBool,
    pub(crate) stop: AtomicBool,
    pub(crate) connected: AtomicUsize,
    pub(crate) failed: AtomicUsize,
    pub(crate) ended: AtomicUsize,
    pub(crate) stalled: AtomicUsize,
    pub(crate) live: Vec<LiveFigures>,
    /// One per viewer that reads, taken in turn by [`Shared::gap_watch`].
    pub(crate) gaps: Box<[GapWatch]>,
    pub(crate) next_gap: AtomicUsize,
}

impl Shared {
    /// The next free [`GapWatch`]; `None` once every one is taken.
    pub(crate) fn gap_watch(&self) -> Option<&GapWatch> {
        self.gaps.get(self.next_gap.fetch_add(1, Ordering::Relaxed))
    }
}

/// One viewer's longest wait between two reads that brought records: how long it saw nothing
/// when a relay above it died ([`crate::summary::GapMs`]). Atomics, because viewer tasks are
/// dropped without finishing and the summary reads what they left; a cache line each, so that
/// viewers of different threads never share one.
#[derive(Default)]
#[repr(align(64))]
pub(crate) struct GapWatch {
    /// Receive time (µs since the epoch) of the last read that brought a record; 0 before any.
    last_us: AtomicU64,
    longest_us: AtomicU64,
}

impl GapWatch {
    /// A read brought records at `now_us`.
    pub(crate) fn records_at(&self, now_us: u64) {
        let last = self.last_us.swap(now_us, Ordering::Relaxed);
        if last != 0 {
            self.longest_us
                .fetch_max(now_us.saturating_sub(last), Ordering::Relaxed);
        }
    }

    /// The longest gap as of `end_us`, counting the wait since the last record (a viewer that
    /// never resumed shows it); `None` if no record came.
    pub(crate) fn longest_us(&self, end_us: u64) -> Option<u64> {
        let last = self.last_us.load(Ordering::Relaxed);
        (last != 0).then(|| {
            self.longest_us
                .load(Ordering::Relaxed)
                .max(end_us.saturating_sub(last))
        })
    }
}

/// What a shard publishes every tick for progress lines.
#[derive(Default)]
pub(crate) struct LiveFigures {
    pub(crate) bytes: AtomicU64,
    pub(crate) records: AtomicU64,
    pub(crate) lost: AtomicU64,
    pub(crate) corrupt: AtomicU64,
    pub(crate) seq_gaps: AtomicU64,
    /// p99 latency (µs) of the last progress interval.
    pub(crate) interval_p99_us: AtomicU64,
}

/// What a group of viewers adds up: one per shard thread (shards) or per runtime worker
/// thread (crowd), so that no lock is contended and the sums are plain.
pub(crate) struct Tally {
    pub(crate) stats: CheckStats,
    pub(crate) frames: FrameStats,
    pub(crate) latency: Histogram<u64>,
    /// VAN viewers: the relay's stamp on the frame that completed each record − its send time.
    pub(crate) ingest: Histogram<u64>,
    /// Latency of the current progress interval, kept only when progress lines are printed.
    pub(crate) interval: Option<Histogram<u64>>,
    pub(crate) connect: Histogram<u64>,
    pub(crate) window_bytes: u64,
    /// Microseconds from the run's start to the last `200`.
    pub(crate) last_connected_us: u64,
    pub(crate) failures: BTreeMap<String, u64>,
    pub(crate) logged: u32,
}

pub(crate) fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

impl Tally {
    pub(crate) fn new(progress: bool) -> Self {
        Self {
            stats: CheckStats::default(),
            frames: FrameStats::default(),
            latency: histogram(),
            ingest: histogram(),
            interval: progress.then(histogram),
            connect: histogram(),
            window_bytes: 0,
            last_connected_us: 0,
            failures: BTreeMap::new(),
            logged: 0,
        }
    }

    pub(crate) fn fail(&mut self, reason: String) {
        if self.logged < LOGGED_FAILURES {
            self.logged += 1;
            eprintln!("vanbench: viewer failed: {reason}");
        }
        *self.failures.entry(reason).or_insert(0) += 1;
    }

    /// A viewer got its `200` after `took`, at `since_start` from the run's start.
    pub(crate) fn connected(&mut self, took: Duration, since_start: Duration) {
        self.connect
            .saturating_record((took.as_micros() as u64).max(1));
        self.last_connected_us = self.last_connected_us.max(since_start.as_micros() as u64);
    }

    /// Copies the running sums to `live` for progress lines; `interval` also takes (and resets)
    /// the p99 of the interval just ended.
    pub(crate) fn publish(&mut self, live: &LiveFigures, interval: bool) {
        live.bytes.store(self.stats.bytes, Ordering::Relaxed);
        live.records.store(self.stats.records, Ordering::Relaxed);
        live.lost.store(self.stats.lost, Ordering::Relaxed);
        live.corrupt.store(self.stats.corrupt, Ordering::Relaxed);
        live.seq_gaps.store(self.frames.seq_gaps, Ordering::Relaxed);
        if interval && let Some(h) = self.interval.as_mut() {
            live.interval_p99_us
                .store(h.value_at_quantile(0.99), Ordering::Relaxed);
            h.reset();
        }
    }
}

/// A viewer's own checking state: all it keeps between reads.
pub(crate) struct ViewerCheck<'a> {
    records: RecordChecker,
    frames: Option<FrameChecker>,
    gap: Option<&'a GapWatch>,
}

pub(crate) enum Outcome {
    /// Keep reading.
    More,
    /// The stream ended (close, end or redirect frame).
    Ended,
    /// Bytes that are not VAN frames.
    Broken(String),
}

impl<'a> ViewerCheck<'a> {
    pub(crate) fn new(van: bool, gap: Option<&'a GapWatch>) -> Self {
        Self {
            records: RecordChecker::new(),
            frames: van.then(FrameChecker::new),
            gap,
        }
    }
}

/// Checks the bytes one read returned.
pub(crate) fn consume(
    tally: &mut Tally,
    check: &mut ViewerCheck<'_>,
    data: &[u8],
    measuring: bool,
) -> Outcome {
    let Tally {
        stats,
        frames,
        latency,
        ingest,
        interval,
        window_bytes,
        ..
    } = tally;
    let now = sys::now_us();
    let mut got_records = false;
    let mut on_record = |_seq: u64, sent_us: u64| {
        got_records = true;
        let l = now.saturating_sub(sent_us).max(1);
        latency.saturating_record(l);
        if let Some(h) = interval.as_mut() {
            h.saturating_record(l);
        }
    };
    let outcome = match check.frames.as_mut() {
        None => {
            if measuring {
                *window_bytes += data.len() as u64;
            }
            check.records.push(data, stats, &mut on_record);
            Outcome::More
        }
        Some(reader) => {
            let mut payload = 0u64;
            let r = reader.push(data, frames, &mut |p, stamped_us| {
                payload += p.len() as u64;
                check.records.push(p, stats, &mut |seq, sent_us| {
                    on_record(seq, sent_us);
                    // How long the record's last bytes waited for the relay to read them.
                    ingest.saturating_record(stamped_us.saturating_sub(sent_us).max(1));
                });
            });
            if measuring {
                *window_bytes += payload;
            }
            match r {
                Ok(None) => Outcome::More,
                Ok(Some(_)) => Outcome::Ended,
                Err(e) => Outcome::Broken(e.to_string()),
            }
        }
    };
    if got_records && let Some(g) = check.gap {
        g.records_at(now);
    }
    outcome
}

pub(crate) fn request_head(cfg: &ViewersConfig) -> String {
    let auth = match &cfg.mode {
        ViewerMode::Plain => String::new(),
        ViewerMode::Van { token } => format!("Authorization: Bearer {token}\r\n"),
    };
    format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: vanbench\r\nAccept: */*\r\n{auth}\
         Connection: close\r\n\r\n",
        cfg.url.path,
        cfg.url.authority()
    )
}

/// What a connection's response head said.
pub(crate) enum Opened {
    /// `200`: the stream and any body bytes read after the head.
    Stream(tokio::net::TcpStream, Vec<u8>),
    /// `301`/`302`/`307`/`308` with a `Location` (a PNC's `/resolve`, or a proxy that stopped
    /// accepting).
    Redirect(String),
}

/// Redirects a viewer follows before it gives up (a PNC's `/resolve` is one, a proxy that
/// stopped accepting meanwhile another).
const MAX_REDIRECTS: usize = 4;

/// Connects and reads the response head.
pub(crate) async fn open(addr: SocketAddr, head: &str) -> Result<Opened, String> {
    let sock = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    }
    .map_err(|e| format!("socket: {e}"))?;
    let stream = sock
        .connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    // Close with a reset: 10,000 viewers leave no TIME_WAIT behind to exhaust ports.
    let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
    let mut written = 0;
    while written < head.len() {
        stream.writable().await.map_err(|e| format!("write: {e}"))?;
        match stream.try_write(&head.as_bytes()[written..]) {
            Ok(n) => written += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(format!("write: {e}")),
        }
    }
    // The head is read into a buffer of its own that grows as needed; what follows it is
    // handed back, so nothing is read twice.
    let mut got = Vec::with_capacity(HEAD_READ);
    loop {
        stream.readable().await.map_err(|e| format!("read: {e}"))?;
        let have = got.len();
        got.resize(have + HEAD_READ, 0);
        match stream.try_read(&mut got[have..]) {
            Ok(0) => return Err("closed before a response".into()),
            Ok(n) => got.truncate(have + n),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                got.truncate(have);
                continue;
            }
            Err(e) => return Err(format!("read: {e}")),
        }
        match parse_response_head(&got) {
            Ok(None) => {}
            Ok(Some(h)) if h.status == 200 && h.is_chunked() => {
                return Err("chunked response bodies are not supported".into());
            }
            Ok(Some(h)) if h.status == 200 => {
                got.drain(..h.len);
                return Ok(Opened::Stream(stream, got));
            }
            Ok(Some(h)) if matches!(h.status, 301 | 302 | 307 | 308) => {
                return match h.location {
                    Some(to) => Ok(Opened::Redirect(to)),
                    None => Err(format!("HTTP {} without a Location", h.status)),
                };
            }
            Ok(Some(h)) => return Err(format!("HTTP {} {}", h.status, h.reason)),
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// [`open`] bounded by the connect timeout; the error is the failure's reason.
pub(crate) async fn open_within(
    addr: SocketAddr,
    head: &str,
    timeout: Duration,
) -> Result<(tokio::net::TcpStream, Vec<u8>), String> {
    let follow = async {
        let (mut addr, mut head) = (addr, head.to_string());
        for _ in 0..=MAX_REDIRECTS {
            match open(addr, &head).await? {
                Opened::Stream(stream, rest) => return Ok((stream, rest)),
                Opened::Redirect(to) => {
                    let url = HttpUrl::parse(&to).map_err(|e| format!("redirect: {e}"))?;
                    addr = url.socket_addr().map_err(|e| format!("redirect: {e}"))?;
                    head = retarget(&head, &url);
                }
            }
        }
        Err(format!("more than {MAX_REDIRECTS} redirects"))
    };
    match tokio::time::timeout(timeout, follow).await {
        Ok(r) => r,
        Err(_) => Err("no 200 within the connect timeout".into()),
    }
}

/// The same request (method, headers) aimed at `url`: the request line's target and `Host`
/// replaced.
fn retarget(head: &str, url: &HttpUrl) -> String {
    let mut lines = head.split("\r\n");
    let method = lines
        .next()
        .and_then(|l| l.split(' ').next())
        .unwrap_or("GET");
    let mut out = format!("{method} {} HTTP/1.1\r\n", url.path);
    for line in lines {
        if line.len() > 5 && line[..5].eq_ignore_ascii_case("host:") {
            out += &format!("Host: {}\r\n", url.authority());
        } else if !line.is_empty() {
            out += line;
            out += "\r\n";
        }
    }
    out + "\r\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gap_watch_keeps_the_longest_wait_and_counts_one_not_yet_ended() {
        let g = GapWatch::default();
        assert_eq!(g.longest_us(5_000), None);
        for at in [1_000, 1_004, 1_010, 1_500, 1_505] {
            g.records_at(at);
        }
        // The longest wait between reads (490 µs), unless the one since the last is longer.
        assert_eq!(g.longest_us(1_600), Some(490));
        assert_eq!(g.longest_us(3_005), Some(1_500));
    }

    #[test]
    fn a_redirected_request_keeps_its_headers_and_names_the_new_target() {
        let head = "GET /resolve/demo HTTP/1.1\r\nHost: 127.0.0.1:7000\r\nUser-Agent: vanbench\r\n\
                    Authorization: Bearer t\r\nConnection: close\r\n\r\n";
        let url = HttpUrl::parse("http://127.0.0.2:9000/live/demo?x=1").unwrap();
        assert_eq!(
            retarget(head, &url),
            "GET /live/demo?x=1 HTTP/1.1\r\nHost: 127.0.0.2:9000\r\nUser-Agent: vanbench\r\n\
             Authorization: Bearer t\r\nConnection: close\r\n\r\n"
        );
    }
}
