//! Command line and TOML configuration of the `dataplane` binary: one loader, the same keys in
//! both places (a flag `--pool-blocks` is the key `pool-blocks` in the file); flags override
//! the file, the file overrides the defaults.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use serde::Deserialize;

/// When to use `send_zc` for plain viewers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ZeroCopy {
    /// Large sends use send_zc with copy reporting; a socket whose notification says the kernel
    /// copied anyway (loopback, veth) goes back to plain send for good, and a viewer on this
    /// host (loopback, or our own address) uses plain send from the start.
    #[default]
    Auto,
    /// Always plain send from the registered pool.
    Off,
    /// Always send_zc for large sends, even where the kernel copies.
    On,
}

/// Which core serves a new viewer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Placement {
    /// The core that accepted it hands it to the core serving the fewest viewers, if that is
    /// another core (DESIGN.md, "Placing connections").
    #[default]
    LeastLoaded,
    /// The core whose SO_REUSEPORT listener the kernel chose (a hash of the addresses) keeps it.
    Reuseport,
}

/// Where sources and parent feeds are read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum IngestThread {
    /// On the fan-out core that parsed the source's request while it serves few viewers; on
    /// the ingest thread while that core is busy (`--ingest-busy-viewers`), and back on the
    /// least loaded fan-out core when the load falls again. A few viewers pay no wake-up of a
    /// third thread per publish; a crowd cannot delay a read by more than a short turn.
    #[default]
    Auto,
    /// On a reactor thread of their own, which serves no viewer: a source's bytes are read
    /// and published as they arrive, however long the fan-out cores' turns grow with viewers.
    Own,
    /// On the fan-out cores, between their sends (a source waits up to one loop turn, which
    /// grows with the viewers on the core); one thread fewer.
    Shared,
}

/// VAN relay: ingest live streams over HTTP PUT / Icecast SOURCE and fan them out to plain HTTP
/// viewers (GET /live/{stream}) and VAN-aware children (GET /van/{stream}?from=N).
///
/// When ready it prints exactly one line to stdout: `listening data=IP:PORT admin=IP:PORT`.
/// Logs go to stderr (RUST_LOG, e.g. RUST_LOG=dataplane=debug).
#[derive(Parser, Debug, Default)]
#[command(name = "dataplane", version)]
pub struct Args {
    /// TOML file with the same keys as these flags (e.g. `listen = "0.0.0.0:8080"`,
    /// `pool-blocks = 2048`); flags given on the command line win.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Data port: sources, viewers and child proxies [default: 0.0.0.0:8080]. Port 0 picks a free
    /// port, printed on the `listening` line.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Admin port: GET /metrics (Prometheus) and GET /status (JSON) [default: 127.0.0.1:8081].
    #[arg(long, value_name = "ADDR")]
    pub admin_listen: Option<SocketAddr>,
    /// Fan-out reactor threads, one pinned per CPU (the ingest thread, `--ingest-thread own`, is
    /// one more) [default: all CPUs this process may use].
    #[arg(long, value_name = "N")]
    pub cores: Option<usize>,
    /// Bytes per pool block, a multiple of 4096 [default: 65536].
    #[arg(long, value_name = "BYTES")]
    pub block_size: Option<usize>,
    /// Blocks in the shared pool, allocated and registered once, at most 16384 [default: 1024].
    #[arg(long, value_name = "N")]
    pub pool_blocks: Option<usize>,
    /// At most this many blocks held per stream [default: 64].
    #[arg(long, value_name = "N")]
    pub window_blocks: Option<usize>,
    /// Blocks whose newest bytes are older than this leave a stream's window [default: 10].
    #[arg(long, value_name = "SECONDS")]
    pub window_seconds: Option<f64>,
    /// Frames a stream's side index may hold (rounded up to a power of two); it starts at 16
    /// and doubles as the stream's window needs [default: 16384].
    #[arg(long, value_name = "N")]
    pub window_frames: Option<usize>,
    /// File of `user:password` or `user:password:stream-prefix` lines allowed to publish. Without
    /// it, publishing is allowed from loopback clients only.
    #[arg(long, value_name = "FILE")]
    pub source_credentials: Option<PathBuf>,
    /// File of bearer tokens (one per line) accepted on GET /van/... Without it, /van/ answers
    /// 401 to everyone.
    #[arg(long, value_name = "FILE")]
    pub van_token_file: Option<PathBuf>,
    /// A source that disconnects may come back within this time and continue the same stream
    /// (viewers stay, sequence numbers continue) [default: 5].
    #[arg(long, value_name = "SECONDS")]
    pub grace: Option<f64>,
    /// A source that sends nothing for this long is closed and its stream goes into grace, as
    /// Icecast's `source-timeout` [default: 10].
    #[arg(long, value_name = "SECONDS")]
    pub source_timeout: Option<f64>,
    /// Streams at once, live or in grace; a new source beyond it gets 503 with the reason
    /// [default: 1000].
    #[arg(long, value_name = "N")]
    pub max_streams: Option<usize>,
    /// Streams one source account (or loopback, without credentials) holds at once; a new
    /// source beyond it gets 429 with the reason [default: 8].
    #[arg(long, value_name = "N")]
    pub max_streams_per_source: Option<usize>,
    /// The largest share of the pool one stream's window may hold (0 to 1): its window is at
    /// most this many of --pool-blocks, and at most --window-blocks [default: 0.0625].
    #[arg(long, value_name = "FRACTION")]
    pub stream_pool_share: Option<f64>,
    /// A connection that has not sent a whole request head by then is closed [default: 10].
    #[arg(long, value_name = "SECONDS")]
    pub header_timeout: Option<f64>,
    /// A viewer whose send has been pending longer than this is skipped to the live edge (plain)
    /// or disconnected (VAN), trading its completeness for its latency [default: none: a viewer
    /// is skipped only when the data it needs next has left the stream's window].
    #[arg(long, value_name = "SECONDS")]
    pub send_timeout: Option<f64>,
    /// Connections beyond this get 503 [default: the open-files limit minus 64].
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,
    /// Admin-port connections open at once; more get 503 and are closed. Idle ones are closed
    /// after --header-timeout, any after 60 s [default: 32, within the data port's reserve of
    /// 64 descriptors].
    #[arg(long, value_name = "N")]
    pub admin_max_connections: Option<usize>,
    /// A new plain (non-MPEG-TS) viewer starts this many bytes before the live edge [default: 0].
    #[arg(long, value_name = "BYTES")]
    pub burst_bytes: Option<u64>,
    /// Bytes a viewer's socket may hold not yet sent (TCP_NOTSENT_LOWAT): the rest waits in
    /// the pool, one copy for all viewers, instead of one copy per socket in kernel memory; what
    /// is in flight on the network is not limited. 0: the kernel's default (unlimited)
    /// [default: 16384].
    #[arg(long, value_name = "BYTES")]
    pub viewer_unsent_max: Option<u32>,
    /// send_zc for plain viewers: auto, off or on [default: auto].
    #[arg(long, value_enum)]
    pub zerocopy: Option<ZeroCopy>,
    /// Sends at least this large use send_zc (when --zerocopy allows) [default: 16384].
    #[arg(long, value_name = "BYTES")]
    pub zerocopy_min: Option<u32>,
    /// Which core serves a new viewer: least-loaded or reuseport [default: least-loaded].
    #[arg(long, value_enum)]
    pub placement: Option<Placement>,
    /// Where sources and parent feeds are read: own (a thread of their own, never behind
    /// fan-out), shared (on the fan-out cores) or auto (a source on a fan-out core while it
    /// serves few viewers, on the ingest thread while it is busy; parent feeds on the ingest
    /// thread) [default: auto].
    #[arg(long, value_enum)]
    pub ingest_thread: Option<IngestThread>,
    /// With --ingest-thread auto: a fan-out core serving more viewers than this hands the
    /// sources it reads to the ingest thread, which hands them back once a fan-out core serves
    /// at most a quarter of it. About 1.3 ms of sends at ~5 µs each [default: 256].
    #[arg(long, value_name = "VIEWERS")]
    pub ingest_busy_viewers: Option<usize>,
    /// Longest a small send to a viewer may wait for more data (see --send-budget); 0 sends on
    /// every publish [default: 200].
    #[arg(long, value_name = "MS")]
    pub coalesce_ms: Option<f64>,
    /// Sends per second a core aims at: a send smaller than --coalesce-bytes waits until
    /// (viewers on the core / this) seconds after the viewer's previous send, at most
    /// --coalesce-ms, if two of the stream's publishes fit in that wait. Few viewers: no wait;
    /// many: fewer, larger sends, which cost less CPU per byte in the relay and in every viewer
    /// [default: 25000].
    #[arg(long, value_name = "N")]
    pub send_budget: Option<u32>,
    /// Sends at least this large do not wait (a fast stream; a viewer catching up never
    /// waits), except while a core is in a flash crowd on a busy host: 256 or more joins in the
    /// last second, a quarter or more of its viewers, see --crowd-host-busy [default: 16384].
    #[arg(long, value_name = "BYTES")]
    pub coalesce_bytes: Option<u32>,
    /// A core in a flash crowd holds small sends only while the host's CPUs were at least
    /// this busy over the last 100 ms: with CPU to spare, fewer sends gain the joins nothing
    /// (0: whatever the host) [default: 90].
    #[arg(long, value_name = "PERCENT")]
    pub crowd_host_busy: Option<f64>,
    /// Pull STREAM from parent relays at start-up and serve it here, e.g.
    /// `--pull demo=origin:8080,backup:8080` (repeatable; several parents: redundant, no frame
    /// lost when one dies). Needs --van-token-file: the first token is sent to the parents.
    #[arg(long, value_name = "STREAM=HOST:PORT[,HOST:PORT...]")]
    pub pull: Vec<String>,
    /// The PNC's control socket (HOST:PORT): register there and carry out its orders. Without
    /// it the relay runs alone (origin and edge in one).
    #[arg(long, value_name = "HOST:PORT")]
    pub pnc: Option<String>,
    /// File holding the PNC's shared control token (needed with --pnc).
    #[arg(long, value_name = "FILE")]
    pub pnc_token_file: Option<PathBuf>,
    /// This proxy's id in the VAN, unique and stable across restarts (needed with --pnc; sent
    /// as `X-Van-Proxy` when pulling from a parent) [default: 0, none].
    #[arg(long, value_name = "N")]
    pub proxy_id: Option<u32>,
    /// This proxy's name at the PNC [default: proxy-{id}].
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// This proxy's region at the PNC (its config may override it).
    #[arg(long, value_name = "REGION")]
    pub region: Option<String>,
    /// Downstream connections this machine takes, all streams together ([0047])
    /// [default: --max-connections].
    #[arg(long, value_name = "N")]
    pub capacity_connections: Option<u32>,
    /// Sinks (viewers and child proxies) one stream may hold here, its logical capacity
    /// ([0047]): the PNC's `logical_connections` of this proxy. DISTRIBUTE and CONSOLIDATE are
    /// decided here from it [default: --capacity-connections].
    #[arg(long, value_name = "N")]
    pub stream_capacity_connections: Option<u32>,
    /// Outgoing bits per second this machine sends, all streams together ([0047])
    /// [default: 10000000000].
    #[arg(long, value_name = "BITS")]
    pub capacity_bps: Option<u64>,
    /// The data address told to the PNC, where other proxies and viewers reach this one
    /// [default: the bound data address].
    #[arg(long, value_name = "HOST:PORT")]
    pub advertise: Option<String>,
    /// Name of the media source announced for streams published here; streams of one source
    /// share a tiering ([0047]) [default: the stream's name].
    #[arg(long, value_name = "NAME")]
    pub source_name: Option<String>,
    /// ΔT of the proxy's DISTRIBUTE look-ahead ([0054]); use the PNC's `delta_t_ms`
    /// [default: 10000].
    #[arg(long, value_name = "MS")]
    pub delta_t_ms: Option<u64>,
    /// How often each proxy of the tier above (the PNC's MonitorList) is probed; three failed
    /// probes in a row make a link lost ([0053], [0066]) [default: 1000].
    #[arg(long, value_name = "MS")]
    pub probe_interval_ms: Option<u64>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct FileConfig {
    listen: Option<SocketAddr>,
    admin_listen: Option<SocketAddr>,
    cores: Option<usize>,
    block_size: Option<usize>,
    pool_blocks: Option<usize>,
    window_blocks: Option<usize>,
    window_seconds: Option<f64>,
    window_frames: Option<usize>,
    source_credentials: Option<PathBuf>,
    van_token_file: Option<PathBuf>,
    grace: Option<f64>,
    source_timeout: Option<f64>,
    max_streams: Option<usize>,
    max_streams_per_source: Option<usize>,
    stream_pool_share: Option<f64>,
    header_timeout: Option<f64>,
    send_timeout: Option<f64>,
    max_connections: Option<usize>,
    admin_max_connections: Option<usize>,
    burst_bytes: Option<u64>,
    viewer_unsent_max: Option<u32>,
    zerocopy: Option<ZeroCopy>,
    zerocopy_min: Option<u32>,
    placement: Option<Placement>,
    ingest_thread: Option<IngestThread>,
    ingest_busy_viewers: Option<usize>,
    coalesce_ms: Option<f64>,
    send_budget: Option<u32>,
    coalesce_bytes: Option<u32>,
    crowd_host_busy: Option<f64>,
    pull: Option<Vec<String>>,
    pnc: Option<String>,
    pnc_token_file: Option<PathBuf>,
    proxy_id: Option<u32>,
    name: Option<String>,
    region: Option<String>,
    capacity_connections: Option<u32>,
    stream_capacity_connections: Option<u32>,
    capacity_bps: Option<u64>,
    advertise: Option<String>,
    source_name: Option<String>,
    delta_t_ms: Option<u64>,
    probe_interval_ms: Option<u64>,
}

/// The effective configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub cores: usize,
    pub block_size: usize,
    pub pool_blocks: usize,
    pub window_blocks: usize,
    pub window_us: u64,
    pub window_frames: usize,
    pub source_credentials: Option<PathBuf>,
    pub van_token_file: Option<PathBuf>,
    pub grace_us: u64,
    pub source_timeout_us: u64,
    pub max_streams: usize,
    pub max_streams_per_source: usize,
    pub stream_pool_share: f64,
    pub header_timeout_us: u64,
    /// `u64::MAX`: no limit (only the window skips a viewer).
    pub send_timeout_us: u64,
    /// `None`: derived from the open-files limit at start-up.
    pub max_connections: Option<usize>,
    pub admin_max_connections: usize,
    pub burst_bytes: u64,
    /// TCP_NOTSENT_LOWAT of viewer sockets; 0: not set.
    pub viewer_unsent_max: u32,
    pub zerocopy: ZeroCopy,
    pub zerocopy_min: u32,
    pub placement: Placement,
    pub ingest_thread: IngestThread,
    /// `--ingest-busy-viewers`: see [`crate::frontdoor::source_reader`].
    pub ingest_busy_viewers: usize,
    /// Longest hold of a small send; 0: no coalescing.
    pub coalesce_us: u64,
    pub send_budget: u32,
    pub coalesce_bytes: u32,
    /// `--crowd-host-busy` as a fraction: see [`crate::join_rate::holds_sends`].
    pub crowd_busy_min: f64,
    /// This proxy's id in the VAN (0: none, a relay alone).
    pub proxy_id: u32,
    /// Set with `--pnc`: the relay registers with a PNC.
    pub pnc: Option<PncConfig>,
    /// Streams pulled from parents at start-up (`--pull`), their parents in the order given.
    pub pulls: Vec<PullSpec>,
}

/// One `--pull STREAM=HOST:PORT[,HOST:PORT...]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PullSpec {
    pub stream: String,
    pub parents: Vec<SocketAddr>,
}

impl PullSpec {
    /// Parses `STREAM=HOST:PORT[,HOST:PORT...]`, resolving host names once, now.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let Some((stream, parents)) = text.split_once('=') else {
            bail!("--pull {text:?}: expected STREAM=HOST:PORT[,HOST:PORT...]");
        };
        let stream = stream.trim();
        if !crate::http::is_stream_name(stream) {
            bail!("--pull {text:?}: a stream name is 1 to 128 of A-Z a-z 0-9 . _ ~ -");
        }
        let mut addrs = Vec::new();
        for p in parents.split(',').map(str::trim) {
            let addr = std::net::ToSocketAddrs::to_socket_addrs(p)
                .with_context(|| format!("--pull {text:?}: cannot resolve parent {p:?}"))?
                .next()
                .with_context(|| format!("--pull {text:?}: parent {p:?} has no address"))?;
            addrs.push(addr);
        }
        Ok(Self {
            stream: stream.to_owned(),
            parents: addrs,
        })
    }
}

/// How the relay registers with a PNC (`--pnc` and the keys around it).
#[derive(Clone, Debug, PartialEq)]
pub struct PncConfig {
    /// The control socket, `HOST:PORT`, resolved at each connection attempt.
    pub addr: String,
    pub token_file: PathBuf,
    pub name: String,
    pub region: Option<String>,
    /// `None`: the relay's connection limit.
    pub capacity_connections: Option<u32>,
    /// One stream's logical capacity in sinks; `None`: the machine's.
    pub stream_capacity_connections: Option<u32>,
    pub capacity_bps: u64,
    /// `None`: the bound data address.
    pub advertise: Option<String>,
    /// `None`: each stream is its own source.
    pub source_name: Option<String>,
    pub delta_t_ms: u64,
    pub probe_interval_ms: u64,
}

fn secs(name: &str, v: f64) -> anyhow::Result<u64> {
    if !(v.is_finite() && v > 0.0 && v < 1e6) {
        bail!("--{name} must be a positive number of seconds, got {v}");
    }
    Ok((v * 1e6) as u64)
}

impl Config {
    /// Merges flags over the file (if `--config`) over defaults.
    pub fn load(args: Args, default_cores: usize) -> anyhow::Result<Self> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let cfg = Config {
            listen: args
                .listen
                .or(file.listen)
                .unwrap_or_else(|| "0.0.0.0:8080".parse().expect("valid")),
            admin_listen: args
                .admin_listen
                .or(file.admin_listen)
                .unwrap_or_else(|| "127.0.0.1:8081".parse().expect("valid")),
            cores: args.cores.or(file.cores).unwrap_or(default_cores),
            block_size: args.block_size.or(file.block_size).unwrap_or(64 * 1024),
            pool_blocks: args.pool_blocks.or(file.pool_blocks).unwrap_or(1024),
            window_blocks: args.window_blocks.or(file.window_blocks).unwrap_or(64),
            window_us: secs(
                "window-seconds",
                args.window_seconds.or(file.window_seconds).unwrap_or(10.0),
            )?,
            window_frames: args.window_frames.or(file.window_frames).unwrap_or(16384),
            source_credentials: args.source_credentials.or(file.source_credentials),
            van_token_file: args.van_token_file.or(file.van_token_file),
            grace_us: secs("grace", args.grace.or(file.grace).unwrap_or(5.0))?,
            source_timeout_us: secs(
                "source-timeout",
                args.source_timeout.or(file.source_timeout).unwrap_or(10.0),
            )?,
            max_streams: args.max_streams.or(file.max_streams).unwrap_or(1000),
            max_streams_per_source: args
                .max_streams_per_source
                .or(file.max_streams_per_source)
                .unwrap_or(8),
            stream_pool_share: args
                .stream_pool_share
                .or(file.stream_pool_share)
                .unwrap_or(0.0625),
            header_timeout_us: secs(
                "header-timeout",
                args.header_timeout.or(file.header_timeout).unwrap_or(10.0),
            )?,
            send_timeout_us: match args.send_timeout.or(file.send_timeout) {
                Some(t) => secs("send-timeout", t)?,
                None => u64::MAX,
            },
            max_connections: args.max_connections.or(file.max_connections),
            admin_max_connections: args
                .admin_max_connections
                .or(file.admin_max_connections)
                .unwrap_or(32),
            burst_bytes: args.burst_bytes.or(file.burst_bytes).unwrap_or(0),
            viewer_unsent_max: args
                .viewer_unsent_max
                .or(file.viewer_unsent_max)
                .unwrap_or(16384),
            zerocopy: args.zerocopy.or(file.zerocopy).unwrap_or_default(),
            zerocopy_min: args.zerocopy_min.or(file.zerocopy_min).unwrap_or(16384),
            placement: args.placement.or(file.placement).unwrap_or_default(),
            ingest_thread: args
                .ingest_thread
                .or(file.ingest_thread)
                .unwrap_or_default(),
            ingest_busy_viewers: args
                .ingest_busy_viewers
                .or(file.ingest_busy_viewers)
                .unwrap_or(256),
            coalesce_us: match args.coalesce_ms.or(file.coalesce_ms).unwrap_or(200.0) {
                0.0 => 0,
                ms => secs("coalesce-ms", ms / 1e3)?,
            },
            send_budget: args.send_budget.or(file.send_budget).unwrap_or(25_000),
            coalesce_bytes: args.coalesce_bytes.or(file.coalesce_bytes).unwrap_or(16384),
            crowd_busy_min: match args
                .crowd_host_busy
                .or(file.crowd_host_busy)
                .unwrap_or(90.0)
            {
                p if (0.0..=100.0).contains(&p) => p / 100.0,
                p => bail!("--crowd-host-busy must be a percentage from 0 to 100, got {p}"),
            },
            proxy_id: args.proxy_id.or(file.proxy_id).unwrap_or(0),
            pulls: {
                let texts = if args.pull.is_empty() {
                    file.pull.unwrap_or_default()
                } else {
                    args.pull
                };
                texts
                    .iter()
                    .map(|t| PullSpec::parse(t))
                    .collect::<anyhow::Result<_>>()?
            },
            pnc: None,
        };
        for (i, p) in cfg.pulls.iter().enumerate() {
            if cfg.pulls[..i].iter().any(|q| q.stream == p.stream) {
                bail!(
                    "--pull names stream {:?} twice: list all its parents in one --pull",
                    p.stream
                );
            }
        }
        let pnc = match args.pnc.or(file.pnc) {
            None => None,
            Some(addr) => Some(PncConfig {
                addr,
                token_file: args
                    .pnc_token_file
                    .or(file.pnc_token_file)
                    .ok_or_else(|| anyhow::anyhow!("--pnc needs --pnc-token-file"))?,
                name: args
                    .name
                    .or(file.name)
                    .unwrap_or_else(|| format!("proxy-{}", cfg.proxy_id)),
                region: args.region.or(file.region),
                capacity_connections: args.capacity_connections.or(file.capacity_connections),
                stream_capacity_connections: args
                    .stream_capacity_connections
                    .or(file.stream_capacity_connections),
                capacity_bps: args
                    .capacity_bps
                    .or(file.capacity_bps)
                    .unwrap_or(10_000_000_000),
                advertise: args.advertise.or(file.advertise),
                source_name: args.source_name.or(file.source_name),
                delta_t_ms: args.delta_t_ms.or(file.delta_t_ms).unwrap_or(10_000),
                probe_interval_ms: args
                    .probe_interval_ms
                    .or(file.probe_interval_ms)
                    .unwrap_or(1_000),
            }),
        };
        if pnc.is_some() && cfg.proxy_id == 0 {
            bail!("--pnc needs --proxy-id (a number from 1, unique in the VAN)");
        }
        if let Some(p) = &pnc {
            if p.capacity_connections == Some(0)
                || p.stream_capacity_connections == Some(0)
                || p.capacity_bps == 0
            {
                bail!(
                    "--capacity-connections, --stream-capacity-connections and --capacity-bps \
                     must be at least 1"
                );
            }
            if p.delta_t_ms == 0 {
                bail!("--delta-t-ms must be at least 1");
            }
            if !(10..=60_000).contains(&p.probe_interval_ms) {
                bail!(
                    "--probe-interval-ms must be between 10 and 60000, got {}",
                    p.probe_interval_ms
                );
            }
        }
        let cfg = Config { pnc, ..cfg };
        if cfg.coalesce_us > 1_000_000 {
            bail!("--coalesce-ms must be at most 1000");
        }
        if cfg.send_budget == 0 {
            bail!("--send-budget must be at least 1");
        }
        if !(1..=64).contains(&cfg.admin_max_connections) {
            bail!(
                "--admin-max-connections must be between 1 and 64 (the descriptors the data port \
                 leaves free), got {}",
                cfg.admin_max_connections
            );
        }
        if cfg.max_streams == 0 || cfg.max_streams_per_source == 0 {
            bail!("--max-streams and --max-streams-per-source must be at least 1");
        }
        if !(cfg.stream_pool_share > 0.0 && cfg.stream_pool_share <= 1.0) {
            bail!(
                "--stream-pool-share must be above 0 and at most 1, got {}",
                cfg.stream_pool_share
            );
        }
        // A stream's subscribed cores are bits of a u64; the ingest thread may take the 64th.
        if cfg.cores == 0 || cfg.reactors() > 64 {
            bail!(
                "--cores must be between 1 and {}, got {}",
                64 - (cfg.reactors() - cfg.cores),
                cfg.cores
            );
        }
        if !(2..=4096).contains(&cfg.window_blocks) {
            bail!(
                "--window-blocks must be between 2 and 4096, got {}",
                cfg.window_blocks
            );
        }
        if !(64..=1 << 22).contains(&cfg.window_frames) {
            bail!(
                "--window-frames must be between 64 and 4194304, got {}",
                cfg.window_frames
            );
        }
        Ok(cfg)
    }
}

impl Config {
    /// Reactor threads: the fan-out cores (ids `0..cores`), and the ingest thread if it has
    /// its own.
    pub fn reactors(&self) -> usize {
        self.cores + usize::from(self.ingest_core().is_some())
    }

    /// The reactor that reads parent feeds and sources (all of them with `--ingest-thread
    /// own`, those of busy cores with `auto`) and serves no viewer: the one after the fan-out
    /// cores. `None` (`shared`): the fan-out cores read them.
    pub fn ingest_core(&self) -> Option<usize> {
        (self.ingest_thread != IngestThread::Shared).then_some(self.cores)
    }

    /// Blocks one stream's window holds at most: `--window-blocks`, within the stream's share
    /// of the pool (`--stream-pool-share`), never fewer than 2 (issue 8, defect 1: one account
    /// with many streams cannot take the whole pool).
    pub fn stream_window_blocks(&self) -> usize {
        let share = (self.pool_blocks as f64 * self.stream_pool_share) as usize;
        self.window_blocks.min(share).max(2)
    }
}

fn read_file(path: &Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("bad config file {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_file_override_defaults() {
        let dir = std::env::temp_dir().join(format!("van-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("d.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:9000\"\npool-blocks = 32\ngrace = 1.5\nzerocopy = \"off\"\n\
             placement = \"reuseport\"\nsource-timeout = 3\ningest-thread = \"shared\"\n\
             ingest-busy-viewers = 64\ncrowd-host-busy = 50\n",
        )
        .unwrap();
        let args = Args::parse_from([
            "dataplane",
            "--config",
            path.to_str().unwrap(),
            "--pool-blocks",
            "64",
        ]);
        let cfg = Config::load(args, 2).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(cfg.listen, "127.0.0.1:9000".parse().unwrap());
        assert_eq!(cfg.pool_blocks, 64);
        assert_eq!(cfg.grace_us, 1_500_000);
        assert_eq!(cfg.zerocopy, ZeroCopy::Off);
        assert_eq!(cfg.placement, Placement::Reuseport);
        assert_eq!(cfg.ingest_thread, IngestThread::Shared);
        assert_eq!(cfg.ingest_busy_viewers, 64);
        assert_eq!(cfg.crowd_busy_min, 0.5);
        assert_eq!(cfg.reactors(), 2);
        assert_eq!(cfg.block_size, 65536);
        assert_eq!(cfg.cores, 2);
        assert_eq!(cfg.source_timeout_us, 3_000_000);
    }

    #[test]
    fn unknown_file_keys_and_bad_values_are_refused() {
        assert!(toml::from_str::<FileConfig>("no-such-key = 1").is_err());
        let args = Args::parse_from(["dataplane", "--grace=0"]);
        assert!(Config::load(args, 1).is_err());
        for n in ["0", "65"] {
            let args = Args::parse_from(["dataplane", "--admin-max-connections", n]);
            assert!(Config::load(args, 1).is_err(), "{n}");
        }
        for p in ["-1", "101", "NaN"] {
            let args = Args::parse_from(["dataplane", &format!("--crowd-host-busy={p}")]);
            assert!(Config::load(args, 1).is_err(), "{p}");
        }
        let cfg = Config::load(Args::parse_from(["dataplane"]), 1).unwrap();
        assert_eq!(cfg.admin_max_connections, 32);
        assert_eq!(cfg.source_timeout_us, 10_000_000);
        assert_eq!(cfg.crowd_busy_min, 0.9);
        assert_eq!((cfg.max_streams, cfg.max_streams_per_source), (1000, 8));
        assert_eq!(cfg.stream_pool_share, 0.0625);
        for share in ["0", "1.5", "nan"] {
            let args = Args::parse_from(["dataplane", "--stream-pool-share", share]);
            assert!(Config::load(args, 1).is_err(), "{share}");
        }
    }

    #[test]
    fn pulls_come_from_flags_or_the_file() {
        let args = Args::parse_from([
            "dataplane",
            "--pull",
            "a=127.0.0.1:1,127.0.0.1:2",
            "--pull",
            "b=localhost:3",
            "--proxy-id",
            "7",
        ]);
        let cfg = Config::load(args, 1).unwrap();
        assert_eq!(cfg.proxy_id, 7);
        assert_eq!(cfg.pulls.len(), 2);
        assert_eq!(cfg.pulls[0].stream, "a");
        assert_eq!(
            cfg.pulls[0].parents,
            vec![
                "127.0.0.1:1".parse().unwrap(),
                "127.0.0.1:2".parse().unwrap()
            ]
        );
        assert_eq!(cfg.pulls[1].parents[0].port(), 3);
        let file: FileConfig = toml::from_str("pull = [\"c=127.0.0.1:4\"]").unwrap();
        assert_eq!(
            file.pull.as_deref(),
            Some(&["c=127.0.0.1:4".to_string()][..])
        );
        let twice = Args::parse_from([
            "dataplane",
            "--pull",
            "a=127.0.0.1:1",
            "--pull",
            "a=127.0.0.1:2",
        ]);
        assert!(Config::load(twice, 1).is_err());
        for bad in ["a", "=127.0.0.1:1", "a/b=127.0.0.1:1", "a=nowhere"] {
            assert!(PullSpec::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_pnc_keys_come_from_flags_or_file_and_need_a_token_and_an_id() {
        let cfg = Config::load(Args::parse_from(["dataplane"]), 1).unwrap();
        assert_eq!((cfg.pnc, cfg.proxy_id), (None, 0));
        let no_token = Args::parse_from(["dataplane", "--pnc", "pnc:7700", "--proxy-id", "3"]);
        assert!(Config::load(no_token, 1).is_err());
        let no_id = Args::parse_from(["dataplane", "--pnc", "pnc:7700", "--pnc-token-file", "t"]);
        assert!(Config::load(no_id, 1).is_err());
        let dir = std::env::temp_dir().join(format!("van-cfg-pnc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("d.toml");
        std::fs::write(
            &path,
            "pnc = \"10.0.0.1:7700\"\npnc-token-file = \"/etc/van/token\"\nproxy-id = 21\n\
             region = \"eu\"\ncapacity-connections = 3\nadvertise = \"10.0.0.21:8080\"\n",
        )
        .unwrap();
        let args = Args::parse_from([
            "dataplane",
            "--config",
            path.to_str().unwrap(),
            "--capacity-bps",
            "1000000",
            "--source-name",
            "www.ccrl.com",
        ]);
        let cfg = Config::load(args, 1).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(cfg.proxy_id, 21);
        assert_eq!(
            cfg.pnc,
            Some(PncConfig {
                addr: "10.0.0.1:7700".into(),
                token_file: "/etc/van/token".into(),
                name: "proxy-21".into(),
                region: Some("eu".into()),
                capacity_connections: Some(3),
                stream_capacity_connections: None,
                capacity_bps: 1_000_000,
                advertise: Some("10.0.0.21:8080".into()),
                source_name: Some("www.ccrl.com".into()),
                delta_t_ms: 10_000,
                probe_interval_ms: 1_000,
            })
        );
    }

    #[test]
    fn a_stream_window_is_at_most_its_pool_share() {
        let args = Args::parse_from(["dataplane", "--pool-blocks", "64"]);
        let cfg = Config::load(args, 1).unwrap();
        assert_eq!(cfg.stream_window_blocks(), 4);
        let cfg = Config::load(Args::parse_from(["dataplane"]), 1).unwrap();
        assert_eq!(cfg.stream_window_blocks(), 64);
        let args = Args::parse_from([
            "dataplane",
            "--pool-blocks",
            "8",
            "--stream-pool-share",
            "0.01",
        ]);
        assert_eq!(Config::load(args, 1).unwrap().stream_window_blocks(), 2);
    }

    #[test]
    fn the_ingest_thread_takes_one_of_the_64_reactors() {
        let cfg = Config::load(Args::parse_from(["dataplane", "--cores", "63"]), 1).unwrap();
        assert_eq!(
            (cfg.ingest_thread, cfg.reactors()),
            (IngestThread::Auto, 64)
        );
        let err = Config::load(Args::parse_from(["dataplane", "--cores", "64"]), 1).unwrap_err();
        assert!(err.to_string().contains("between 1 and 63"), "{err}");
        let args = Args::parse_from(["dataplane", "--cores", "64", "--ingest-thread", "shared"]);
        assert_eq!(Config::load(args, 1).unwrap().reactors(), 64);
    }
}
