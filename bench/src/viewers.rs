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

use crate::crowd;
use crate::record::CheckStats;
use crate::source::SourceProgress;
use crate::summary::{ConnectMs, GapMs, LatencyUs, Summary};
use crate::sys;
use crate::van::FrameStats;
pub use crate::viewing::{ClientKind, ViewerMode, ViewersConfig};
use crate::viewing::{
    GapWatch, LiveFigures, Outcome, Shared, Tally, ViewerCheck, consume, histogram, open_within,
    request_head,
};
use anyhow::Context;
use hdrhistogram::Histogram;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::Read;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::Interest;

/// Size of a shard's read buffer, shared by all its viewers.
const READ_BUF: usize = 64 * 1024;
/// Reads one viewer may do in a row before others get a turn.
const READS_PER_TURN: usize = 8;

/// A shard's thread-local state: the read buffer all its viewers share, and their sums.
struct ShardState {
    buf: Box<[u8]>,
    tally: Tally,
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
    let (stream, rest) = match open_within(addr, head, connect_timeout).await {
        Ok(x) => x,
        Err(reason) => {
            st.borrow_mut().tally.fail(reason);
            shared.failed.fetch_add(1, Ordering::Relaxed);
            return;
        }
    };
    st.borrow_mut()
        .tally
        .connected(began.elapsed(), t0.elapsed());
    shared.connected.fetch_add(1, Ordering::Relaxed);
    if stalled {
        shared.stalled.fetch_add(1, Ordering::Relaxed);
        // Hold the connection open and never read: the relay must cope.
        std::future::pending::<()>().await;
        drop(stream);
        return;
    }
    let mut check = ViewerCheck::new(van, shared.gap_watch());
    let mut outcome = Outcome::More;
    if !rest.is_empty() {
        let m = shared.measuring.load(Ordering::Relaxed);
        outcome = consume(&mut st.borrow_mut().tally, &mut check, &rest, m);
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
                let s = &mut *st.borrow_mut();
                let n = (&*socket2::SockRef::from(&stream)).read(&mut s.buf)?;
                got = Some(n);
                if n == 0 {
                    return Ok(());
                }
                let m = shared.measuring.load(Ordering::Relaxed);
                outcome = consume(&mut s.tally, &mut check, &s.buf[..n], m);
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
        st.borrow_mut().tally.fail(reason);
    }
    shared.ended.fetch_add(1, Ordering::Relaxed);
}

fn run_shard(
    shard: usize,
    cfg: Arc<ViewersConfig>,
    addr: SocketAddr,
    shared: Arc<Shared>,
    t0: Instant,
) -> anyhow::Result<Tally> {
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
        st: RefCell::new(ShardState {
            buf: vec![0u8; READ_BUF].into_boxed_slice(),
            tally: Tally::new(cfg.progress.is_some()),
        }),
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
            let interval = cfg
                .progress
                .is_some_and(|p| last_interval.elapsed() >= p / 2);
            ctx.st.borrow_mut().tally.publish(live, interval);
            if interval {
                last_interval = Instant::now();
            }
        }
        spawner.abort();
    });
    let tally = std::mem::replace(&mut ctx.st.borrow_mut().tally, Tally::new(false));
    // Dropping the runtime drops every viewer task and so closes its socket.
    drop(local);
    drop(rt);
    Ok(tally)
}

/// The viewers of one run, driven by the client the configuration names.
enum Engine {
    /// One thread per shard, each running its own share of the viewers.
    Shards(Vec<std::thread::JoinHandle<anyhow::Result<Tally>>>),
    Crowd(crowd::Crowd),
}

impl Engine {
    fn start(
        cfg: &Arc<ViewersConfig>,
        addr: SocketAddr,
        shared: &Arc<Shared>,
        t0: Instant,
    ) -> anyhow::Result<Self> {
        match cfg.client {
            ClientKind::Shards => {
                let mut handles = Vec::new();
                for shard in 0..cfg.threads {
                    let (cfg, shared) = (cfg.clone(), shared.clone());
                    handles.push(
                        std::thread::Builder::new()
                            .name(format!("viewers-{shard}"))
                            .spawn(move || run_shard(shard, cfg, addr, shared, t0))
                            .context("starting a viewer thread")?,
                    );
                }
                Ok(Engine::Shards(handles))
            }
            ClientKind::Crowd => Ok(Engine::Crowd(crowd::Crowd::start(
                cfg.clone(),
                addr,
                shared.clone(),
                t0,
            )?)),
        }
    }

    /// Shards publish their own figures; the crowd's workers are read from here.
    fn publish_live(&self, shared: &Shared, interval: bool) {
        if let Engine::Crowd(c) = self {
            c.publish_live(shared, interval);
        }
    }

    /// Ends every viewer (the caller has set `shared.stop`) and returns the sums.
    fn finish(self) -> anyhow::Result<Vec<Tally>> {
        match self {
            Engine::Shards(handles) => handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .map_err(|_| anyhow::anyhow!("a viewer thread panicked"))?
                })
                .collect(),
            Engine::Crowd(c) => Ok(c.finish()),
        }
    }
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
    relay_cpu: Option<sys::CpuReading>,
    source_bytes: Option<u64>,
}

fn edge(cfg: &ViewersConfig, source: Option<&SourceProgress>) -> Edge {
    Edge {
        at: Instant::now(),
        self_cpu: sys::self_cpu_s(),
        relay_cpu: cfg.relay_pid.and_then(|p| sys::process_cpu(p).ok()),
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
        gaps: (0..cfg.n).map(|_| GapWatch::default()).collect(),
        ..Shared::default()
    });
    let rss_before = cfg.relay_pid.and_then(|p| sys::process_rss_kib(p).ok());
    let t0 = Instant::now();
    let engine = Engine::start(&cfg, addr, &shared, t0)?;
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
        progress.tick(&engine, &shared, None);
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
        progress.tick(&engine, &shared, cfg.relay_pid);
    }
    shared.measuring.store(false, Ordering::Relaxed);
    let end = edge(&cfg, source);
    let end_us = sys::now_us();
    let rss_after = cfg.relay_pid.and_then(|p| sys::process_rss_kib(p).ok());
    shared.stop.store(true, Ordering::Relaxed);
    let mut stats = CheckStats::default();
    let mut frames = FrameStats::default();
    let mut latency = histogram();
    let mut ingest = histogram();
    let mut connect = histogram();
    let mut window_bytes = 0;
    let mut last_connected_us = 0;
    let mut failures: BTreeMap<String, u64> = BTreeMap::new();
    for r in engine.finish()? {
        stats.merge(&r.stats);
        frames.merge(&r.frames);
        latency.add(&r.latency).expect("same bounds");
        ingest.add(&r.ingest).expect("same bounds");
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
        (Some(a), Some(b)) => Some(b.seconds_since(&a)),
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
    let mut gaps = histogram();
    for g in shared.gaps.iter().filter_map(|g| g.longest_us(end_us)) {
        gaps.saturating_record(g.max(1));
    }
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
        ingest_us: (!ingest.is_empty()).then(|| LatencyUs {
            p50: q(&ingest, 0.5),
            p99: q(&ingest, 0.99),
            p999: q(&ingest, 0.999),
            max: ingest.max(),
        }),
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
        client: cfg.client,
        client_huge_pages: cfg.client == ClientKind::Crowd && sys::huge_pages_allowed(),
        failures,
        source: None,
        max_gap_ms: (!gaps.is_empty()).then(|| GapMs {
            viewers: gaps.len(),
            p50: ms(gaps.value_at_quantile(0.5)),
            p99: ms(gaps.value_at_quantile(0.99)),
            max: ms(gaps.max()),
        }),
    })
}

/// Live progress lines on stderr.
struct Progress {
    every: Option<Duration>,
    n: usize,
    t0: Instant,
    last: Instant,
    last_bytes: u64,
    last_relay_cpu: Option<sys::CpuReading>,
}

impl Progress {
    fn new(cfg: &ViewersConfig, t0: Instant) -> Self {
        Self {
            every: cfg.progress,
            n: cfg.n,
            t0,
            last: t0,
            last_bytes: 0,
            last_relay_cpu: cfg.relay_pid.and_then(|p| sys::process_cpu(p).ok()),
        }
    }

    /// Publishes the engine's figures and prints a line when one is due. The crowd's interval
    /// p99 is taken (and its histogram reset) only then, so that a line's p99 covers the whole
    /// interval since the line before.
    fn tick(&mut self, engine: &Engine, shared: &Shared, relay_pid: Option<u32>) {
        let dt = self.last.elapsed();
        let due = self.every.is_some_and(|every| dt >= every);
        engine.publish_live(shared, due);
        if !due {
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
            let cpu = sys::process_cpu(pid).ok();
            if let (Some(now), Some(before)) = (cpu, self.last_relay_cpu) {
                line += &format!(
                    " | relay CPU {:.0}%",
                    now.seconds_since(&before) / dt.as_secs_f64() * 100.0
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
