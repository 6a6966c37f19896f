//! The crowd client: viewers that behave like an outside load generator, the harshest kind a
//! relay meets in a flash crowd.
//!
//! One multi-threaded tokio runtime (work-stealing, one worker per CPU unless told otherwise);
//! every viewer is a task of its own with its own 64 KiB buffer; all of them are spawned at once
//! (no pacing unless `connect_rate` is given) and each reads as fast as its socket fills,
//! checking every record. Unlike the shard client, nothing here takes turns or shares a buffer,
//! and the client's threads compete with the relay's for the CPUs as a real client's would.
//!
//! Its memory is an outside client's too: vanbench's allocator (mimalloc) asks the kernel for
//! transparent huge pages, which a client on the system allocator does not get where THP is
//! `madvise` (this VM's setting). With them, 10,000 read buffers are 2 MiB page faults that
//! stall the client's workers for seconds while the crowd connects, and the relay is then
//! measured against a client that stops reading (BENCHMARKS.md, "The crowd client's own page
//! faults"). So the crowd turns huge pages off for the process unless `--client-huge-pages`.
//!
//! Sums are kept per worker thread (a [`Tally`] each, found through a thread-local index), so a
//! viewer's lock is never contended but by the progress reader every 10 ms.

use crate::viewing::{
    ClientKind, Outcome, Shared, Tally, ViewerCheck, ViewerMode, ViewersConfig, consume,
    open_within, request_head,
};
use anyhow::Context;
use std::cell::Cell;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;

/// Each viewer's read buffer, as the outside client has it.
const READ_BUF: usize = 64 * 1024;

thread_local! {
    /// The index of this worker thread's tally.
    static WORKER: Cell<usize> = const { Cell::new(0) };
}

/// What every viewer task shares.
struct CrowdContext {
    addr: SocketAddr,
    head: String,
    van: bool,
    connect_timeout: Duration,
    t0: Instant,
    shared: Arc<Shared>,
    tallies: Arc<[Mutex<Tally>]>,
}

impl CrowdContext {
    /// The running worker thread's tally.
    fn tally(&self) -> MutexGuard<'_, Tally> {
        let i = WORKER.with(Cell::get) % self.tallies.len();
        // A poisoned tally only means a viewer panicked mid-update: the sums are still sums.
        self.tallies[i].lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running crowd.
pub(crate) struct Crowd {
    runtime: tokio::runtime::Runtime,
    tallies: Arc<[Mutex<Tally>]>,
}

impl Crowd {
    /// Starts the runtime and spawns every viewer at once (or on `connect_rate`'s schedule).
    pub(crate) fn start(
        cfg: Arc<ViewersConfig>,
        addr: SocketAddr,
        shared: Arc<Shared>,
        t0: Instant,
    ) -> anyhow::Result<Self> {
        debug_assert_eq!(cfg.client, ClientKind::Crowd);
        if !cfg.huge_pages {
            crate::sys::disable_huge_pages().context("turning transparent huge pages off")?;
        }
        let workers = cfg.threads.max(1);
        let next = Arc::new(AtomicUsize::new(0));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .thread_name("crowd")
            .on_thread_start(move || {
                WORKER.with(|w| w.set(next.fetch_add(1, Ordering::Relaxed)));
            })
            .enable_all()
            .build()
            .context("starting the crowd's runtime")?;
        let tallies: Arc<[Mutex<Tally>]> = (0..workers)
            .map(|_| Mutex::new(Tally::new(cfg.progress.is_some())))
            .collect();
        let ctx = Arc::new(CrowdContext {
            addr,
            head: request_head(&cfg),
            van: matches!(cfg.mode, ViewerMode::Van { .. }),
            connect_timeout: cfg.connect_timeout,
            t0,
            shared,
            tallies: tallies.clone(),
        });
        match cfg.connect_rate {
            None => {
                for g in 0..cfg.n {
                    runtime.spawn(viewer(ctx.clone(), g < cfg.stall));
                }
            }
            Some(rate) => {
                runtime.spawn(async move {
                    for g in 0..cfg.n {
                        if ctx.shared.stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let at = t0 + Duration::from_secs_f64(g as f64 / rate);
                        tokio::time::sleep_until(at.into()).await;
                        tokio::spawn(viewer(ctx.clone(), g < cfg.stall));
                    }
                });
            }
        }
        Ok(Self { runtime, tallies })
    }

    /// Copies each worker's sums to the progress figures.
    pub(crate) fn publish_live(&self, shared: &Shared, interval: bool) {
        for (t, live) in self.tallies.iter().zip(shared.live.iter()) {
            t.lock()
                .unwrap_or_else(|e| e.into_inner())
                .publish(live, interval);
        }
    }

    /// Drops every viewer (closing its socket) and returns the workers' sums.
    pub(crate) fn finish(self) -> Vec<Tally> {
        // Tasks are dropped, not run to completion: a viewer's sums are updated as it reads,
        // so nothing is lost by not letting it finish.
        self.runtime.shutdown_timeout(Duration::from_secs(5));
        self.tallies
            .iter()
            .map(|t| {
                std::mem::replace(
                    &mut *t.lock().unwrap_or_else(|e| e.into_inner()),
                    Tally::new(false),
                )
            })
            .collect()
    }
}

async fn viewer(ctx: Arc<CrowdContext>, stalled: bool) {
    let shared = &ctx.shared;
    let began = Instant::now();
    let (mut stream, rest) = match open_within(ctx.addr, &ctx.head, ctx.connect_timeout).await {
        Ok(x) => x,
        Err(reason) => {
            ctx.tally().fail(reason);
            shared.failed.fetch_add(1, Ordering::Relaxed);
            return;
        }
    };
    ctx.tally().connected(began.elapsed(), ctx.t0.elapsed());
    shared.connected.fetch_add(1, Ordering::Relaxed);
    if stalled {
        shared.stalled.fetch_add(1, Ordering::Relaxed);
        // Hold the connection open and never read: the relay must cope.
        std::future::pending::<()>().await;
        return;
    }
    let mut check = ViewerCheck::new(ctx.van, shared.gap_watch());
    let mut outcome = Outcome::More;
    if !rest.is_empty() {
        let m = shared.measuring.load(Ordering::Relaxed);
        outcome = consume(&mut ctx.tally(), &mut check, &rest, m);
    }
    drop(rest);
    let mut buf = vec![0u8; READ_BUF];
    while matches!(outcome, Outcome::More) {
        outcome = match stream.read(&mut buf).await {
            Ok(0) => Outcome::Ended,
            Ok(n) => {
                let m = shared.measuring.load(Ordering::Relaxed);
                consume(&mut ctx.tally(), &mut check, &buf[..n], m)
            }
            Err(e) => Outcome::Broken(format!("read: {e}")),
        };
    }
    if let Outcome::Broken(reason) = outcome
        && !shared.stop.load(Ordering::Relaxed)
    {
        ctx.tally().fail(reason);
    }
    shared.ended.fetch_add(1, Ordering::Relaxed);
}
