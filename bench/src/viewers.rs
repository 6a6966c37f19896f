//! Many concurrent viewers on few threads.
//!
//! Each shard is one thread with a tokio current-thread runtime (epoll underneath) and one
//! 64 KiB read buffer shared by all of its viewers: a viewer reads into it only between awaits,
//! processes the bytes in place (VAN frames → record checker → latency histogram) and keeps
//! nothing but its checker state, a few dozen bytes. So 10,000 viewers cost about one socket and
//! one small task each, and the shard's counters and histograms are plain sums no lock guards.
//!
//! Timeline of a run: viewers connect (all at once, or at `connect_rate` spread over the
//! shards); once every one has its `200` (or failed or timed out) the measured window starts,
//! and lasts `duration`. Relay CPU, delivered bytes and self CPU are taken over the window only;
//! records, loss and latency over the whole run.

use crate::http::HttpUrl;
use crate::record::{CheckStats, RecordChecker};
use crate::source::SourceProgress;
use crate::summary::{ConnectMs, LatencyUs, Summary};
use crate::sys;
use crate::van::{FrameChecker, FrameStats};
use anyhow::Context;
use dataplane::response_head::parse_response_head;
use hdrhistogram::Histogram;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::Read;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::io::Interest;

#[derive(Clone, Debug)]
pub enum ViewerMode {
    /// `GET /live/{stream}`: close-delimited raw bytes.
    Plain,
    /// `GET /van/{stream}` with `Authorization: Bearer {token}`: VAN frames.
    Van { token: String },
}

#[derive(Clone, Debug)]
pub struct ViewersConfig {
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
    /// Longest wait for one viewer's `200`.
    pub connect_timeout: Duration,
    /// The stream's bit rate, for `expected_bps`; unknown when `None` (then taken from
    /// `source` if given).
    pub bitrate: Option<u64>,
    pub relay_pid: Option<u32>,
    /// Print a live line to stderr this often.
    pub progress: Option<Duration>,
}

/// Size of a shard's read buffer, shared by all its viewers.
const READ_BUF: usize = 64 * 1024;
/// Reads one viewer may do in a row before others get a turn.
const READS_PER_TURN: usize = 8;
/// Failure reasons logged to stderr per shard (the rest are only counted).
const LOGGED_FAILURES: u32 = 5;

/// Cross-thread state of one run.
#[derive(Default)]
struct Shared {
    measuring: AtomicBool,
    stop: AtomicBool,
    connected: AtomicUsize,
    failed: AtomicUsize,
    ended: AtomicUsize,
    stalled: AtomicUsize,
    live: Vec<LiveFigures>,
}

/// What a shard publishes every tick for progress lines.
#[derive(Default)]
struct LiveFigures {
    bytes: AtomicU64,
    records: AtomicU64,
    lost: AtomicU64,
    corrupt: AtomicU64,
    seq_gaps: AtomicU64,
    /// p99 latency (µs) of the last progress interval.
    interval_p99_us: AtomicU64,
}

/// A shard's thread-local state.
struct ShardState {
    buf: Box<[u8]>,
    stats: CheckStats,
    frames: FrameStats,
    latency: Histogram<u64>,
    /// Latency of the current progress interval, kept only when progress lines are printed.
    interval: Option<Histogram<u64>>,
    connect: Histogram<u64>,
    window_bytes: u64,
    /// Microseconds from the run's start to the last `200`.
    last_connected_us: u64,
    failures: BTreeMap<String, u64>,
    logged: u32,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

impl ShardState {
    fn new(progress: bool) -> Self {
        Self {
            buf: vec![0u8; READ_BUF].into_boxed_slice(),
            stats: CheckStats::default(),
            frames: FrameStats::default(),
            latency: histogram(),
            interval: progress.then(histogram),
            connect: histogram(),
            window_bytes: 0,
            last_connected_us: 0,
            failures: BTreeMap::new(),
            logged: 0,
        }
    }

    fn fail(&mut self, reason: String) {
        if self.logged < LOGGED_FAILURES {
            self.logged += 1;
            eprintln!("vanbench: viewer failed: {reason}");
        }
        *self.failures.entry(reason).or_insert(0) += 1;
    }
}

/// What a shard hands back.
struct ShardResult {
    stats: CheckStats,
    frames: FrameStats,
    latency: Histogram<u64>,
    connect: Histogram<u64>,
    window_bytes: u64,
    last_connected_us: u64,
    failures: BTreeMap<String, u64>,
}

/// A viewer's own checking state: all it keeps between reads.
struct ViewerCheck {
    records: RecordChecker,
    frames: Option<FrameChecker>,
}

enum Outcome {
    /// Keep reading.
    More,
    /// The stream ended (close, end or redirect frame).
    Ended,
    /// Bytes that are not VAN frames.
    Broken(String),
}

/// Checks `n` bytes at the start of the shard buffer (or `bytes` when given).
fn consume(
    st: &mut ShardState,
    check: &mut ViewerCheck,
    bytes: Option<&[u8]>,
    n: usize,
    measuring: bool,
) -> Outcome {
    let ShardState {
        buf,
        stats,
        frames,
        latency,
        interval,
        window_bytes,
        ..
    } = st;
    let data = bytes.unwrap_or(&buf[..n]);
    let now = sys::now_us();
    let mut on_record = |_seq: u64, sent_us: u64| {
        let l = now.saturating_sub(sent_us).max(1);
        latency.saturating_record(l);
        if let Some(h) = interval.as_mut() {
            h.saturating_record(l);
        }
    };
    match check.frames.as_mut() {
        None => {
            if measuring {
                *window_bytes += data.len() as u64;
            }
            check.records.push(data, stats, &mut on_record);
            Outcome::More
        }
        Some(reader) => {
            let mut payload = 0u64;
            let r = reader.push(data, frames, &mut |p| {
                payload += p.len() as u64;
                check.records.push(p, stats, &mut on_record);
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
    }
}

fn request_head(cfg: &ViewersConfig) -> String {
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

/// Connects and reads the response head; returns the stream and any body bytes after the head.
async fn open(
    addr: SocketAddr,
    head: &str,
    st: &RefCell<ShardState>,
) -> Result<(tokio::net::TcpStream, Vec<u8>), String> {
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
    let mut got = Vec::new();
    loop {
        stream.readable().await.map_err(|e| format!("read: {e}"))?;
        let n = {
            let mut s = st.borrow_mut();
            match stream.try_read(&mut s.buf) {
                Ok(0) => return Err("closed before a response".into()),
                Ok(n) => {
                    got.extend_from_slice(&s.buf[..n]);
                    n
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(format!("read: {e}")),
            }
        };
        debug_assert!(n > 0);
        match parse_response_head(&got) {
            Ok(None) => {}
            Ok(Some(h)) if h.status == 200 && h.is_chunked() => {
                return Err("chunked response bodies are not supported".into());
            }
            Ok(Some(h)) if h.status == 200 => {
                got.drain(..h.len);
                return Ok((stream, got));
            }
            Ok(Some(h)) => return Err(format!("HTTP {} {}", h.status, h.reason)),
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// What every viewer of a shard shares.
struct ShardContext {
    addr: SocketAddr,
    head: String,
    van: bool,
    connect_timeout: Duration,
    /// The run's start, for `all_connected_ms`.
    t0: Instant,
    st: RefCell<ShardState>,
    shared: Arc<Shared>,
}

async fn viewer(ctx: Rc<ShardContext>, stalled: bool) {
    let ShardContext {
        addr,
        ref head,
        van,
        connect_timeout,
        t0,
        ref st,
        ref shared,
    } = *ctx;
    let began = Instant::now();
    let opened = tokio::time::timeout(connect_timeout, open(addr, head, st)).await;
    let (stream, rest) = match opened {
        Ok(Ok(x)) => x,
        Ok(Err(reason)) => {
            st.borrow_mut().fail(reason);
            shared.failed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        Err(_) => {
            st.borrow_mut()
                .fail("no 200 within the connect timeout".into());
            shared.failed.fetch_add(1, Ordering::Relaxed);
            return;
        }
    };
    {
        let mut s = st.borrow_mut();
        s.connect
            .saturating_record((began.elapsed().as_micros() as u64).max(1));
        s.last_connected_us = s.last_connected_us.max(t0.elapsed().as_micros() as u64);
    }
    shared.connected.fetch_add(1, Ordering::Relaxed);
    if stalled {
        shared.stalled.fetch_add(1, Ordering::Relaxed);
        // Hold the connection open and never read: the relay must cope.
        std::future::pending::<()>().await;
        drop(stream);
        return;
    }
    let mut check = ViewerCheck {
        records: RecordChecker::new(),
        frames: van.then(FrameChecker::new),
    };
    let mut outcome = Outcome::More;
    if !rest.is_empty() {
        let m = shared.measuring.load(Ordering::Relaxed);
        outcome = consume(&mut st.borrow_mut(), &mut check, Some(&rest), 0, m);
    }
    drop(rest);
    'read: while matches!(outcome, Outcome::More) {
        if let Err(e) = stream.readable().await {
            outcome = Outcome::Broken(format!("read: {e}"));
            break;
        }
        for _ in 0..READS_PER_TURN {
            let mut got = None;
            let r = stream.try_io(Interest::READABLE, || {
                let mut s = st.borrow_mut();
                let n = (&*socket2::SockRef::from(&stream)).read(&mut s.buf)?;
                got = Some(n);
                if n == 0 {
                    return Ok(());
                }
                let m = shared.measuring.load(Ordering::Relaxed);
                outcome = consume(&mut s, &mut check, None, n, m);
                if n < s.buf.len() {
                    // A short read emptied the socket: report WouldBlock so tokio clears the
                    // readiness now, instead of after one more recv that would only say
                    // EAGAIN (half of all recv calls otherwise). Data arriving meanwhile is a
                    // new epoll event, so nothing is missed.
                    return Err(std::io::ErrorKind::WouldBlock.into());
                }
                Ok(())
            });
            match (got, r) {
                (Some(0), _) => {
                    outcome = Outcome::Ended;
                    break 'read;
                }
                (Some(_), r) => {
                    if !matches!(outcome, Outcome::More) {
                        break 'read;
                    }
                    if r.is_err() {
                        break; // drained
                    }
                }
                (None, Err(e)) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                (None, Err(e)) if e.kind() == std::io::ErrorKind::Interrupted => {}
                (None, Err(e)) => {
                    outcome = Outcome::Broken(format!("read: {e}"));
                    break 'read;
                }
                (None, Ok(())) => break,
            }
        }
    }
    if let Outcome::Broken(reason) = outcome
        && !shared.stop.load(Ordering::Relaxed)
    {
        st.borrow_mut().fail(reason);
    }
    shared.ended.fetch_add(1, Ordering::Relaxed);
}

fn run_shard(
    shard: usize,
    cfg: Arc<ViewersConfig>,
    addr: SocketAddr,
    shared: Arc<Shared>,
    t0: Instant,
) -> anyhow::Result<ShardResult> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting a viewer runtime")?;
    let local = tokio::task::LocalSet::new();
    let ctx = Rc::new(ShardContext {
        addr,
        head: request_head(&cfg),
        van: matches!(cfg.mode, ViewerMode::Van { .. }),
        connect_timeout: cfg.connect_timeout,
        t0,
        st: RefCell::new(ShardState::new(cfg.progress.is_some())),
        shared: shared.clone(),
    });
    local.block_on(&rt, async {
        let spawner = {
            let (cfg, ctx, shared) = (cfg.clone(), ctx.clone(), shared.clone());
            tokio::task::spawn_local(async move {
                let mut g = shard;
                while g < cfg.n && !shared.stop.load(Ordering::Relaxed) {
                    if let Some(rate) = cfg.connect_rate {
                        let at = t0 + Duration::from_secs_f64(g as f64 / rate);
                        tokio::time::sleep_until(at.into()).await;
                    }
                    tokio::task::spawn_local(viewer(ctx.clone(), g < cfg.stall));
                    g += cfg.threads;
                }
            })
        };
        let live = &shared.live[shard];
        let mut last_interval = Instant::now();
        while !shared.stop.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(10)).await;
            let mut s = ctx.st.borrow_mut();
            live.bytes.store(s.stats.bytes, Ordering::Relaxed);
            live.records.store(s.stats.records, Ordering::Relaxed);
            live.lost.store(s.stats.lost, Ordering::Relaxed);
            live.corrupt.store(s.stats.corrupt, Ordering::Relaxed);
            live.seq_gaps.store(s.frames.seq_gaps, Ordering::Relaxed);
            if cfg
                .progress
                .is_some_and(|p| last_interval.elapsed() >= p / 2)
                && let Some(h) = s.interval.as_mut()
            {
                live.interval_p99_us
                    .store(h.value_at_quantile(0.99), Ordering::Relaxed);
                h.reset();
                last_interval = Instant::now();
            }
        }
        spawner.abort();
    });
    let mut s = ctx.st.borrow_mut();
    let result = ShardResult {
        stats: s.stats,
        frames: s.frames,
        latency: std::mem::replace(&mut s.latency, histogram()),
        connect: std::mem::replace(&mut s.connect, histogram()),
        window_bytes: s.window_bytes,
        last_connected_us: s.last_connected_us,
        failures: std::mem::take(&mut s.failures),
    };
    drop(s);
    // Dropping the runtime drops every viewer task and so closes its socket.
    drop(local);
    drop(rt);
    Ok(result)
}

/// Viewers connected, not stalled and not ended. The counters are read one after the other
/// while viewers change state, hence the saturation.
fn reading(shared: &Shared) -> usize {
    let ended = shared.ended.load(Ordering::Relaxed) + shared.stalled.load(Ordering::Relaxed);
    shared
        .connected
        .load(Ordering::Relaxed)
        .saturating_sub(ended)
}

/// Samples taken at the edges of the measured window.
struct Edge {
    at: Instant,
    self_cpu: f64,
    relay_cpu: Option<f64>,
    source_bytes: Option<u64>,
}

fn edge(cfg: &ViewersConfig, source: Option<&SourceProgress>) -> Edge {
    Edge {
        at: Instant::now(),
        self_cpu: sys::self_cpu_s(),
        relay_cpu: cfg.relay_pid.and_then(|p| sys::process_cpu_s(p).ok()),
        source_bytes: source.map(|s| s.bytes.load(Ordering::Relaxed)),
    }
}

/// Runs the viewers and returns the summary. `stop` (or SIGINT/SIGTERM) ends the run early.
/// Errors only for failing to set up (bad address, no threads).
pub fn run_viewers(
    cfg: ViewersConfig,
    source: Option<&SourceProgress>,
    stop: &AtomicBool,
) -> anyhow::Result<Summary> {
    let limit = sys::raise_nofile_limit().unwrap_or(0);
    if limit > 0 && (cfg.n as u64) + 64 > limit {
        eprintln!(
            "vanbench: the open-files limit is {limit}, too low for {} viewers; raise it with \
             `ulimit -n` (hard limit) or prlimit",
            cfg.n
        );
    }
    let addr = cfg.url.socket_addr()?;
    let threads = cfg.threads.clamp(1, cfg.n.max(1));
    let cfg = Arc::new(ViewersConfig { threads, ..cfg });
    let shared = Arc::new(Shared {
        live: (0..threads).map(|_| LiveFigures::default()).collect(),
        ..Shared::default()
    });
    let rss_before = cfg.relay_pid.and_then(|p| sys::process_rss_kib(p).ok());
    let t0 = Instant::now();
    let mut handles = Vec::new();
    for shard in 0..threads {
        let (cfg, shared) = (cfg.clone(), shared.clone());
        handles.push(
            std::thread::Builder::new()
                .name(format!("viewers-{shard}"))
                .spawn(move || run_shard(shard, cfg, addr, shared, t0))
                .context("starting a viewer thread")?,
        );
    }
    let stopped = || stop.load(Ordering::Relaxed) || sys::stop_requested();
    let mut progress = Progress::new(&cfg, t0);
    // Connect phase: until every viewer has its answer, bounded by the schedule and timeout.
    let connect_deadline = t0
        + cfg
            .connect_rate
            .map(|r| Duration::from_secs_f64(cfg.n as f64 / r))
            .unwrap_or_default()
        + cfg.connect_timeout
        + Duration::from_secs(1);
    while !stopped() && Instant::now() < connect_deadline {
        let answered =
            shared.connected.load(Ordering::Relaxed) + shared.failed.load(Ordering::Relaxed);
        if answered >= cfg.n {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
        progress.tick(&shared, None);
    }
    // Memory per viewer: the relay's growth while the viewers connected (the window after it
    // would add the pool pages the stream touches, which no viewer causes).
    let rss_connected = cfg.relay_pid.and_then(|p| sys::process_rss_kib(p).ok());
    let start = edge(&cfg, source);
    shared.measuring.store(true, Ordering::Relaxed);
    let reading_at_start = reading(&shared);
    while !stopped() {
        if cfg.duration.is_some_and(|d| start.at.elapsed() >= d) {
            break;
        }
        let pending = cfg.n.saturating_sub(
            shared.connected.load(Ordering::Relaxed) + shared.failed.load(Ordering::Relaxed),
        );
        if reading(&shared) == 0 && pending == 0 {
            break; // every stream ended: nothing left to measure
        }
        std::thread::sleep(Duration::from_millis(10));
        progress.tick(&shared, cfg.relay_pid);
    }
    shared.measuring.store(false, Ordering::Relaxed);
    let end = edge(&cfg, source);
    let rss_after = cfg.relay_pid.and_then(|p| sys::process_rss_kib(p).ok());
    shared.stop.store(true, Ordering::Relaxed);
    let mut stats = CheckStats::default();
    let mut frames = FrameStats::default();
    let mut latency = histogram();
    let mut connect = histogram();
    let mut window_bytes = 0;
    let mut last_connected_us = 0;
    let mut failures: BTreeMap<String, u64> = BTreeMap::new();
    for h in handles {
        let r = h
            .join()
            .map_err(|_| anyhow::anyhow!("a viewer thread panicked"))??;
        stats.merge(&r.stats);
        frames.merge(&r.frames);
        latency.add(&r.latency).expect("same bounds");
        connect.add(&r.connect).expect("same bounds");
        window_bytes += r.window_bytes;
        last_connected_us = last_connected_us.max(r.last_connected_us);
        for (k, v) in r.failures {
            *failures.entry(k).or_insert(0) += v;
        }
    }
    let window_s = (end.at - start.at).as_secs_f64().max(1e-9);
    let connected = shared.connected.load(Ordering::Relaxed);
    let stalled = shared.stalled.load(Ordering::Relaxed);
    let delivered_bps = window_bytes as f64 * 8.0 / window_s;
    let per_viewer_bps = cfg.bitrate.map(|b| b as f64).or_else(|| {
        let (a, b) = (start.source_bytes?, end.source_bytes?);
        Some(b.saturating_sub(a) as f64 * 8.0 / window_s)
    });
    let expected_bps = per_viewer_bps.map(|r| r * reading_at_start as f64);
    let relay_cpu_s = match (start.relay_cpu, end.relay_cpu) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    let gb = window_bytes as f64 / 1e9;
    let q = |h: &Histogram<u64>, x: f64| {
        if h.is_empty() {
            0
        } else {
            h.value_at_quantile(x)
        }
    };
    let ms = |us: u64| us as f64 / 1000.0;
    Ok(Summary {
        viewers: cfg.n,
        connected,
        connect_ms: ConnectMs {
            p50: ms(q(&connect, 0.5)),
            p99: ms(q(&connect, 0.99)),
            max: ms(connect.max()),
        },
        all_connected_ms: ms(last_connected_us),
        bytes: stats.bytes,
        delivered_bps,
        expected_bps,
        delivered_ratio: expected_bps.filter(|&e| e > 0.0).map(|e| delivered_bps / e),
        records: stats.records,
        lost: stats.lost,
        duplicated: stats.duplicated,
        out_of_order: stats.out_of_order,
        corrupt: stats.corrupt,
        frames: frames.frames,
        seq_gaps: frames.seq_gaps,
        latency_us: LatencyUs {
            p50: q(&latency, 0.5),
            p99: q(&latency, 0.99),
            p999: q(&latency, 0.999),
            max: latency.max(),
        },
        self_cpu_s: end.self_cpu - start.self_cpu,
        relay_cpu_s,
        relay_cpu_s_per_gb: relay_cpu_s.filter(|_| gb > 0.0).map(|c| c / gb),
        relay_rss_kib: rss_after,
        stalled,
        failed: shared.failed.load(Ordering::Relaxed),
        ended: shared.ended.load(Ordering::Relaxed),
        window_s,
        window_bytes,
        relay_rss_before_kib: rss_before,
        relay_kib_per_viewer: match (rss_before, rss_connected) {
            (Some(b), Some(a)) if connected > 0 => Some((a as f64 - b as f64) / connected as f64),
            _ => None,
        },
        self_cpu_s_per_gb: (gb > 0.0).then(|| (end.self_cpu - start.self_cpu) / gb),
        threads: cfg.threads,
        failures,
        source: None,
    })
}

/// Live progress lines on stderr.
struct Progress {
    every: Option<Duration>,
    n: usize,
    t0: Instant,
    last: Instant,
    last_bytes: u64,
    last_relay_cpu: Option<f64>,
}

impl Progress {
    fn new(cfg: &ViewersConfig, t0: Instant) -> Self {
        Self {
            every: cfg.progress,
            n: cfg.n,
            t0,
            last: t0,
            last_bytes: 0,
            last_relay_cpu: cfg.relay_pid.and_then(|p| sys::process_cpu_s(p).ok()),
        }
    }

    fn tick(&mut self, shared: &Shared, relay_pid: Option<u32>) {
        let Some(every) = self.every else { return };
        let dt = self.last.elapsed();
        if dt < every {
            return;
        }
        let sum = |f: fn(&LiveFigures) -> &AtomicU64| {
            shared
                .live
                .iter()
                .map(|l| f(l).load(Ordering::Relaxed))
                .sum::<u64>()
        };
        let bytes = sum(|l| &l.bytes);
        let p99 = shared
            .live
            .iter()
            .map(|l| l.interval_p99_us.load(Ordering::Relaxed))
            .max()
            .unwrap_or(0);
        let rate = (bytes - self.last_bytes) as f64 * 8.0 / dt.as_secs_f64();
        let mut line = format!(
            "t={:6.1}s viewers {}/{} (failed {}, ended {}) {:8.1} Mbit/s records {} lost {} \
             corrupt {} gaps {} p99 {:.2} ms",
            self.t0.elapsed().as_secs_f64(),
            shared.connected.load(Ordering::Relaxed),
            self.n,
            shared.failed.load(Ordering::Relaxed),
            shared.ended.load(Ordering::Relaxed),
            rate / 1e6,
            sum(|l| &l.records),
            sum(|l| &l.lost),
            sum(|l| &l.corrupt),
            sum(|l| &l.seq_gaps),
            p99 as f64 / 1000.0,
        );
        if let Some(pid) = relay_pid {
            let cpu = sys::process_cpu_s(pid).ok();
            if let (Some(now), Some(before)) = (cpu, self.last_relay_cpu) {
                line += &format!(
                    " | relay CPU {:.0}%",
                    (now - before) / dt.as_secs_f64() * 100.0
                );
            }
            if let Ok(rss) = sys::process_rss_kib(pid) {
                line += &format!(" RSS {:.1} MiB", rss as f64 / 1024.0);
            }
            self.last_relay_cpu = cpu;
        }
        eprintln!("{line}");
        self.last = Instant::now();
        self.last_bytes = bytes;
    }
}
