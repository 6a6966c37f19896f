//! `dataplane`: a complete single VAN relay. See `dataplane --help`.
//!
//! Start-up order: configuration, open-files limit, credentials, block pool, one SO_REUSEPORT
//! listener per core (the first resolves the port, the others share it), one pinned reactor
//! thread per core (core 0 registers the pool, the others clone its table), the admin server on
//! a control thread, then the single `listening data=IP:PORT admin=IP:PORT` line on stdout.
//! Any failure before that line exits 2 with one line on stderr naming the cause and the fix.

use std::io::Write as _;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::mpsc;

use std::thread;
use tokio::sync::mpsc::UnboundedReceiver;

use anyhow::Context;
use clap::Parser;
use dataplane::auth::{SourceCredentials, VanTokens};
use dataplane::config::{Args, Config};
use dataplane::metrics;
use dataplane::orders::LocalEvent;
use dataplane::orders::{Order, ParentAddr};
use dataplane::pnc_link::{self, LinkSettings};
use dataplane::pool::BlockPool;
use dataplane::reactor::{self, Core, SetupError, Shared};
use dataplane::stream::{Registry, StreamLimits};
use dataplane::window::WindowConfig;
use mimalloc::MiMalloc;
use socket2::{Domain, Protocol, Socket, Type};
use tracing::{info, warn};

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

/// A start-up failure: one line on stderr, exit status 2.
struct Fatal(String);

impl<E: std::fmt::Display> From<E> for Fatal {
    fn from(e: E) -> Self {
        Fatal(format!("{e:#}"))
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Fatal(line)) => {
            eprintln!("dataplane: {line}");
            ExitCode::from(2)
        }
    }
}

/// CPUs this process may run on, in order.
fn allowed_cpus() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity fills it for this thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return (0..thread::available_parallelism().map_or(1, |n| n.get())).collect();
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &set))
            .collect()
    }
}

/// How much the ingest thread is favoured over the fan-out cores (nice -10: about ten times
/// their weight). With fan-out submitted in slices (`reactor::SUBMIT_SLICE`) the scheduler
/// gets a chance to switch every millisecond or two, and this makes it switch to ingest: on
/// 2 CPUs under 10,000 viewers, the longest wait of a source's bytes fell from 10–36 ms to
/// 4–5 ms (BENCHMARKS.md, "Ingest on a thread of its own").
const INGEST_NICE: i32 = -10;

/// Raises the calling (ingest) thread's priority. Lowering a nice value needs CAP_SYS_NICE or
/// RLIMIT_NICE (systemd: `LimitNICE=-10`); without either the thread keeps the default priority
/// and still never waits behind a whole fan-out turn.
fn favour_ingest() {
    // SAFETY: a plain syscall on this thread's own id.
    let r = unsafe {
        libc::setpriority(
            libc::PRIO_PROCESS,
            libc::gettid() as libc::id_t,
            INGEST_NICE,
        )
    };
    if r != 0 {
        info!(
            "ingest thread at the default priority: nice {INGEST_NICE} refused ({}); grant CAP_SYS_NICE or LimitNICE={INGEST_NICE}",
            std::io::Error::last_os_error()
        );
    }
}

fn pin_to_cpu(cpu: usize) {
    // SAFETY: building a cpu set with one CPU and applying it to the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            warn!(
                cpu,
                "cannot pin reactor thread: {}",
                std::io::Error::last_os_error()
            );
        }
    }
}

/// Raises the soft open-files limit to the hard one; returns the new soft limit.
fn raise_nofile() -> u64 {
    // SAFETY: plain getrlimit/setrlimit on this process with a local struct.
    unsafe {
        let mut r = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) != 0 {
            return 1024;
        }
        if r.rlim_cur < r.rlim_max {
            let want = libc::rlimit {
                rlim_cur: r.rlim_max,
                rlim_max: r.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                r.rlim_cur = r.rlim_max;
            }
        }
        r.rlim_cur
    }
}

fn memlock_limit() -> String {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit into a local struct.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut r) } != 0 {
        return "unknown".into();
    }
    if r.rlim_cur == libc::RLIM_INFINITY {
        "unlimited".into()
    } else if r.rlim_cur >= 1 << 20 {
        format!("{} MiB", r.rlim_cur >> 20)
    } else {
        format!("{} KiB", r.rlim_cur >> 10)
    }
}

fn setup_error_line(e: &SetupError, pool_mib: usize) -> String {
    match e {
        SetupError::Ring(err) => {
            let disabled = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
                .ok()
                .map(|s| s.trim().to_owned());
            match err.raw_os_error() {
                Some(libc::EPERM) | Some(libc::ENOSYS) | Some(libc::EACCES) => format!(
                    "io_uring is disabled ({err}; kernel.io_uring_disabled={}, or a seccomp filter blocks io_uring_setup). \
                     Fix: sysctl kernel.io_uring_disabled=0, or run outside the seccomp profile / with one that allows io_uring",
                    disabled.as_deref().unwrap_or("?")
                ),
                Some(libc::ENOMEM) => format!(
                    "cannot set up io_uring: out of locked memory (RLIMIT_MEMLOCK is {}, ENOMEM). \
                     Fix: raise it (systemd LimitMEMLOCK=infinity, ulimit -l unlimited)",
                    memlock_limit()
                ),
                _ => format!(
                    "cannot set up io_uring: {err}. Fix: a Linux kernel 6.1 or newer with io_uring enabled"
                ),
            }
        }
        SetupError::Register(err) => match err.raw_os_error() {
            Some(libc::ENOMEM) => format!(
                "cannot register the {pool_mib} MiB block pool: RLIMIT_MEMLOCK is {} (ENOMEM). \
                 Fix: raise it (systemd LimitMEMLOCK=infinity, ulimit -l unlimited) or lower --pool-blocks",
                memlock_limit()
            ),
            _ => format!(
                "cannot register the {pool_mib} MiB block pool as io_uring fixed buffers: {err}. \
                 Fix: lower --pool-blocks or --block-size"
            ),
        },
    }
}

fn bind_listener(addr: SocketAddr) -> anyhow::Result<Socket> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    // Accepted sockets inherit it: small live writes leave at once (latency first).
    s.set_tcp_nodelay(true)?;
    s.bind(&addr.into())
        .with_context(|| format!("cannot listen on {addr}"))?;
    // The kernel caps this at net.core.somaxconn; a host tuned for flash crowds gets its full value.
    s.listen(65535)?;
    Ok(s)
}

fn run(args: Args) -> Result<(), Fatal> {
    // No write of ours may kill the process when a peer resets (sends use MSG_NOSIGNAL too).
    // SAFETY: setting a signal disposition to SIG_IGN.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    let cpus = allowed_cpus();
    let cfg = Config::load(args, cpus.len().max(1))?;
    let nofile = raise_nofile();
    let max_connections = cfg
        .max_connections
        .unwrap_or_else(|| (nofile as usize).saturating_sub(64).max(16));
    // Notes are logged once the relay is up, so that a start-up failure prints one line only.
    let creds = match &cfg.source_credentials {
        Some(p) => Some(SourceCredentials::load(p)?),
        None => None,
    };
    let tokens = match &cfg.van_token_file {
        Some(p) => Some(VanTokens::load(p)?),
        None => None,
    };
    let pool = BlockPool::new(cfg.block_size, cfg.pool_blocks)?;
    let pool_mib = pool.len() >> 20;
    let window = WindowConfig {
        max_blocks: cfg.stream_window_blocks(),
        frame_capacity: cfg.window_frames,
        max_age_us: cfg.window_us,
        min_read: (cfg.block_size / 16).max(4096).min(cfg.block_size),
    };
    let limits = StreamLimits {
        max_streams: cfg.max_streams,
        max_per_publisher: cfg.max_streams_per_source,
    };
    let cores = cfg.cores;
    // Listeners in core order; the first resolves port 0 and the others share its address.
    let first = bind_listener(cfg.listen)?;
    let data_addr = first
        .local_addr()?
        .as_socket()
        .ok_or_else(|| Fatal("listener has no IP address".into()))?;
    let mut listeners = vec![first];
    for _ in 1..cores {
        listeners.push(bind_listener(data_addr)?);
    }
    let admin = std::net::TcpListener::bind(cfg.admin_listen)
        .with_context(|| format!("cannot listen on admin address {}", cfg.admin_listen))?;
    let admin_addr = admin.local_addr()?;
    admin.set_nonblocking(true)?;
    let block_size = cfg.block_size;
    let link = pnc_link::settings_for(&cfg, data_addr, max_connections)?;
    let (events, link) = match link {
        Some(settings) => {
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            (Some(tx), Some((settings, rx)))
        }
        None => (None, None),
    };
    let reactors = cfg.reactors();
    let shared = Shared::new(
        cfg,
        pool,
        Registry::new(window, reactors, block_size).with_limits(limits),
        max_connections,
        creds,
        tokens,
    );
    let shared = match events {
        Some(tx) => shared.with_events(tx),
        None => shared,
    };
    // Lives as long as the process: the rings and the admin thread borrow it without counting.
    let shared: &'static Shared = Box::leak(Box::new(shared));
    let registration =
        reactor::register_pool(shared).map_err(|e| Fatal(setup_error_line(&e, pool_mib)))?;
    let mut threads = Vec::new();
    // The ingest thread first (if it has its own), so that it is there before any core accepts
    // a source to hand it; it accepts nothing and is left to the scheduler: it sleeps until a
    // source's bytes arrive, so the scheduler runs it on whichever CPU is free, at once. Then
    // the fan-out cores, each pinned and with its listener.
    let reactors = shared
        .cfg
        .ingest_core()
        .map(|id| (id, None::<Socket>))
        .into_iter()
        .chain(listeners.into_iter().map(Some).enumerate());
    for (id, listener) in reactors {
        let (tx, rx) = mpsc::channel::<Result<RawFd, SetupError>>();
        let shared2 = shared;
        let cpu = listener
            .as_ref()
            .and_then(|_| cpus.get(id % cpus.len().max(1)).copied());
        let clone_from = Some(registration.as_raw_fd());
        let name = if listener.is_some() {
            format!("van-core-{id}")
        } else {
            "van-ingest".to_string()
        };
        let t = thread::Builder::new().name(name).spawn(move || {
            match cpu {
                Some(cpu) => pin_to_cpu(cpu),
                None => favour_ingest(),
            }
            let fd = listener.as_ref().map_or(-1, |l| l.as_raw_fd());
            match Core::new(id, shared2, fd, clone_from) {
                Ok(core) => {
                    let _ = tx.send(Ok(core.ring_fd()));
                    core.run();
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                }
            }
            drop(listener);
        })?;
        match rx.recv() {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(Fatal(setup_error_line(&e, pool_mib))),
            Err(_) => return Err(Fatal("a reactor thread died during start-up".into())),
        }
        threads.push(t);
    }
    // Every core has its clone now.
    drop(registration);
    let shared_admin = shared;
    thread::Builder::new()
        .name("van-control".into())
        .spawn(move || control_thread(shared_admin, admin, link))?;
    info!(
        open_files = nofile,
        max_connections,
        "open-files limit raised to the hard limit: room for about {max_connections} viewers"
    );
    if shared.creds.is_none() {
        warn!("no --source-credentials: publishing is allowed only from loopback clients");
    }
    if shared.tokens.is_none() {
        info!("no --van-token-file: GET /van/... answers 401 to everyone");
    }
    info!(
        cores,
        pool_blocks = shared.pool.blocks(),
        block_size,
        "relay ready"
    );
    // `--pull`: the relay orders itself to pull, as the PNC would (parents numbered from 1 in
    // the order given).
    for spec in &shared.cfg.pulls {
        let parents = spec
            .parents
            .iter()
            .enumerate()
            .map(|(i, &addr)| ParentAddr {
                id: i as u32 + 1,
                addr,
            })
            .collect();
        shared.send_order(Order::Pull {
            stream: spec.stream.clone(),
            parents,
        });
    }
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening data={data_addr} admin={admin_addr}")?;
        out.flush()?;
    }
    for t in threads {
        let _ = t.join();
    }
    info!("all viewers ended, exiting");
    Ok(())
}

/// Control thread: ordinary tokio for the admin port, the signals and the PNC link.
fn control_thread(
    shared: &'static Shared,
    admin: std::net::TcpListener,
    link: Option<(LinkSettings, UnboundedReceiver<LocalEvent>)>,
) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            warn!("cannot start the control runtime: {e}");
            return;
        }
    };
    rt.block_on(async move {
        let sig = shared;
        tokio::spawn(async move {
            use tokio::signal::unix::{SignalKind, signal};
            let (Ok(mut int), Ok(mut term)) = (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
            ) else {
                warn!("cannot install signal handlers");
                return;
            };
            tokio::select! {
                _ = int.recv() => info!("SIGINT: stopping"),
                _ = term.recv() => info!("SIGTERM: stopping"),
            }
            sig.shutdown.store(true, Ordering::Release);
        });
        if let Some((settings, events)) = link {
            let relay = pnc_link::Relay {
                orders: shared,
                admission: &shared.admission,
                counters: Box::new(move || pnc_link::load::counters(shared)),
            };
            tokio::spawn(pnc_link::run(settings, relay, events));
        }
        let app = axum::Router::new()
            .route(
                "/metrics",
                axum::routing::get({
                    let s = shared;
                    move || async move {
                        let body = metrics::render_prometheus(
                            &s.metrics,
                            s.pool.in_use(),
                            s.pool.blocks(),
                            s.pool.block_size(),
                        );
                        (
                            [(
                                axum::http::header::CONTENT_TYPE,
                                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                            )],
                            body,
                        )
                    }
                }),
            )
            .route(
                "/status",
                axum::routing::get({
                    let s = shared;
                    move || async move {
                        let body = metrics::render_status(
                            &s.streams,
                            &s.metrics,
                            s.cfg.ingest_core(),
                            s.pool.in_use(),
                            s.pool.blocks(),
                            s.pool.block_size(),
                        );
                        (
                            [(axum::http::header::CONTENT_TYPE, "application/json")],
                            body,
                        )
                    }
                }),
            );
        let limits = dataplane::admin::AdminLimits {
            max_connections: shared.cfg.admin_max_connections,
            header_timeout: std::time::Duration::from_micros(shared.cfg.header_timeout_us),
            lifetime: std::time::Duration::from_secs(60),
        };
        let listener = match tokio::net::TcpListener::from_std(admin) {
            Ok(l) => l,
            Err(e) => {
                warn!("admin listener unusable: {e}");
                return;
            }
        };
        dataplane::admin::serve(listener, app, limits).await;
    });
}
