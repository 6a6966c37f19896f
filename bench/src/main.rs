//! `vanbench`: sources, viewers and fan-out runs against a relay. The command line is a contract
//! (/work/briefs/vanbench-cli.md): the end-to-end tests and BENCHMARKS.md call it as it is.

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use mimalloc::MiMalloc;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::time::Duration;
use vanbench::fanout::{FanoutConfig, run_fanout};
use vanbench::http::HttpUrl;
use vanbench::record::{MAX_RECORD_LEN, MIN_RECORD_LEN};
use vanbench::sim::{Overlay, ProxyModel, Shape, SimConfig, Trace};
use vanbench::source::{Framing, Method, RawInput, SourceConfig, SourceProgress, run_source};
use vanbench::summary::Summary;
use vanbench::units::{parse_bitrate, parse_duration, parse_rate};
use vanbench::viewers::{ClientKind, ViewerMode, ViewersConfig, run_viewers};

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

#[derive(Parser)]
#[command(
    name = "vanbench",
    version,
    about = "Load generator and fan-out benchmark for VAN relays"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Publish a stream: generated records (seq + send time + checkable filler) or raw bytes.
    Source(SourceArgs),
    /// N concurrent viewers that check every byte and measure latency.
    Viewers(ViewersArgs),
    /// A source and N viewers against a relay for a set time; prints the JSON summary and a table.
    Fanout(FanoutArgs),
    /// Discrete-event simulation of a whole VAN (the coordinator's own core, the proxies' own
    /// agents or synthetic proxies, viewers) on a generated or recorded login/logoff trace.
    Simulate(SimulateArgs),
    /// The PNC's topology (`GET /api/topology` on its admin port) as a text tree, printed again
    /// whenever it changes.
    Tree(TreeArgs),
    /// The latency-to-CPU trade of `fanout` runs as an SVG chart: CPU-s/GB against p99, one
    /// panel per scenario, one line per target (files named SCENARIO__TARGET__SETTING.json).
    Curve(CurveArgs),
}

#[derive(Args)]
struct CurveArgs {
    /// Write the chart here.
    #[arg(long)]
    svg: PathBuf,
    #[arg(long, default_value = "latency against CPU")]
    title: String,
    /// `vanbench fanout` JSON summaries, named SCENARIO__TARGET__SETTING.json.
    #[arg(required = true)]
    runs: Vec<PathBuf>,
}

#[derive(Args)]
struct TreeArgs {
    /// The PNC's admin address (its `listening … admin=IP:PORT` line).
    #[arg(long, value_name = "IP:PORT")]
    admin: std::net::SocketAddr,
    /// Poll this often and print the tree when it changed; without it, print once.
    #[arg(long, value_parser = parse_duration)]
    every: Option<Duration>,
    /// Stop after this long (with --every).
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum ShapeArg {
    /// A live event: --viewers log in within --ramp, stay until --end, leave within --leave.
    Flash,
    /// Poisson arrivals at --rate/s for --duration, exponential watch times of mean --watch.
    Steady,
    /// Arrivals at --rate/s × (1 + 0.8 sin(2πt/--period)), exponential watch times.
    Diurnal,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum ProxiesArg {
    /// Each relay machine runs `control::agent`, the proxies' own side of the protocol.
    Agent,
    /// Synthetic proxies: one LOGIN/LOGOFF per viewer, heartbeats, no decisions of their own.
    Synthetic,
}

#[derive(Args)]
struct SimulateArgs {
    /// Whose code runs the relay machines' control side.
    #[arg(long, value_enum, default_value = "agent")]
    proxies: ProxiesArg,
    /// Replay this CSV trace (t_ms,event,stream,region) instead of generating one.
    #[arg(long)]
    trace: Option<PathBuf>,
    /// Write the trace that was run to this CSV file.
    #[arg(long)]
    trace_out: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "flash")]
    shape: ShapeArg,
    /// Flash: viewers per event.
    #[arg(long, default_value_t = 1_000_000)]
    viewers: u64,
    /// Flash: seconds over which the viewers arrive.
    #[arg(long, default_value_t = 60.0)]
    ramp: f64,
    /// Flash: second at which the event ends and viewers start leaving.
    #[arg(long, default_value_t = 120.0)]
    end: f64,
    /// Flash: seconds over which the viewers leave.
    #[arg(long, default_value_t = 30.0)]
    leave: f64,
    /// Steady/diurnal: mean arrivals per second per event.
    #[arg(long, default_value_t = 1000.0)]
    rate: f64,
    /// Steady/diurnal: mean watch time in seconds.
    #[arg(long, default_value_t = 300.0)]
    watch: f64,
    /// Steady/diurnal: seconds of trace.
    #[arg(long, default_value_t = 600.0)]
    duration: f64,
    /// Diurnal: period in seconds.
    #[arg(long, default_value_t = 600.0)]
    period: f64,
    /// Concurrent events (streams), each following the shape.
    #[arg(long, default_value_t = 1)]
    events: u32,
    /// Seconds between the starts of consecutive events.
    #[arg(long, default_value_t = 0.0)]
    stagger: f64,
    /// Viewer and proxy regions.
    #[arg(long, default_value_t = 10)]
    regions: u32,
    /// Relay machines per region in tiers 1, 2, … (comma-separated).
    #[arg(long, default_value = "10,90,900", value_delimiter = ',')]
    tiers: Vec<u32>,
    /// Connections each relay machine takes, over all its streams.
    #[arg(long, default_value_t = 150)]
    capacity: u32,
    /// Outgoing capacity of each relay machine.
    #[arg(long, default_value = "10G", value_parser = parse_bitrate)]
    machine_bps: u64,
    /// Origin machines (streams are spread over them).
    #[arg(long, default_value_t = 1)]
    origins: u32,
    /// Bit rate of every stream.
    #[arg(long, default_value = "2M", value_parser = parse_bitrate)]
    bitrate: u64,
    /// From Activate to a proxy serving the stream (ms).
    #[arg(long, default_value_t = 5_000)]
    activation_ms: u64,
    /// One-way control-message delay, and a viewer's connect after a redirect (ms).
    #[arg(long, default_value_t = 20)]
    control_ms: u64,
    /// A viewer whose proxy went away resolves again after this long (ms).
    #[arg(long, default_value_t = 1_000)]
    reconnect_ms: u64,
    /// A viewer that has received nothing this long after its login gives up (ms; 0: never).
    /// Live viewers begin to abandon a stream after about 2 s of start-up delay (Krishnan and
    /// Sitaraman, IMC 2012); 10 s is patient.
    #[arg(long, default_value_t = 10_000)]
    patience_ms: u64,
    /// Announce each stream's audience per region to the PNC before its first login ([0033]):
    /// the trace's logins there × ESTIMATE (1: an exact estimate, 0.5: half the crowd
    /// expected), arriving over the trace's ramp. Off by default: the crowd is a surprise.
    #[arg(long, value_name = "ESTIMATE")]
    anticipate: Option<f64>,
    /// How long before the first login the announcement comes (ms; default: the activation
    /// delay plus 1 s, so that what it activates is ready; keep it under sp, or the standbys
    /// that took no viewer within sp are retired before the crowd comes, [0058]).
    #[arg(long)]
    anticipate_lead_ms: Option<u64>,
    /// The coordinator's ΔT ([0054], [0058]) in ms.
    #[arg(long, default_value_t = 10_000)]
    delta_t_ms: u64,
    /// The coordinator's stability period sp ([0058]) in ms.
    #[arg(long, default_value_t = 60_000)]
    sp_ms: u64,
    /// The heartbeat interval the coordinator gives the proxies, in ms.
    #[arg(long, default_value_t = 2_000)]
    heartbeat_ms: u32,
    /// Crash relay machine K (0-based among relays) at second S: `S:K`, repeatable.
    #[arg(long = "crash", value_parser = parse_crash)]
    crashes: Vec<(u64, u32)>,
    /// Period of the time series in the JSON, in seconds.
    #[arg(long, default_value_t = 1.0)]
    sample_s: f64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Write the JSON report here (`-` for stdout).
    #[arg(long, default_value = "-")]
    json: String,
    /// Draw viewers, active relay machines and rejections over time into this SVG file.
    #[arg(long)]
    svg: Option<PathBuf>,
    /// No progress lines.
    #[arg(long)]
    quiet: bool,
    /// Print every decision of the coordinator core and every rejected login on stderr.
    #[arg(long)]
    decisions: bool,
    /// Which policies run on the trace: `seed` (the coordinator core as configured by default:
    /// predictive farms, served proxies filling up, `growth = "predictive_fill"`; `seed-fill` is
    /// the same), `seed-0030` (the same, with [0030] as written: a served proxy stops taking
    /// viewers at once, `growth = "predictive"`), `one-at-a-time` (the same core and proxies,
    /// reacting only: one proxy when one is full), `static` (the peak's machines all along),
    /// `oracle` (knows the trace); repeatable or comma-separated. With several, the JSON is an
    /// array and the chart draws them together.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "seed")]
    policy: Vec<PolicyArg>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum PolicyArg {
    #[value(alias = "seed-fill")]
    Seed,
    #[value(name = "seed-0030")]
    Seed0030,
    OneAtATime,
    Static,
    Oracle,
}

fn parse_crash(s: &str) -> Result<(u64, u32), String> {
    let (t, k) = s.split_once(':').ok_or("want SECONDS:RELAY")?;
    let t: f64 = t.parse().map_err(|_| format!("bad time {t:?}"))?;
    let k: u32 = k.parse().map_err(|_| format!("bad relay index {k:?}"))?;
    Ok(((t * 1e6) as u64, k))
}

/// The simulation with the core's `growth` set to `growth`, reported as `policy`.
fn with_growth(
    cfg: &SimConfig,
    trace: &Trace,
    growth: control::core::Growth,
    policy: &str,
) -> vanbench::sim::Report {
    let cfg = SimConfig {
        core: control::core::Config {
            growth,
            ..cfg.core.clone()
        },
        ..cfg.clone()
    };
    let mut r = vanbench::sim::simulate(&cfg, trace);
    r.policy = policy.into();
    r
}

fn simulate(a: SimulateArgs) -> anyhow::Result<()> {
    let trace = match &a.trace {
        Some(p) => Trace::from_csv(
            &std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?,
        )
        .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?,
        None => {
            let shape = match a.shape {
                ShapeArg::Flash => Shape::Flash {
                    viewers: a.viewers,
                    ramp: a.ramp,
                    end: a.end,
                    leave: a.leave,
                },
                ShapeArg::Steady => Shape::Steady {
                    rate: a.rate,
                    watch: a.watch,
                    duration: a.duration,
                },
                ShapeArg::Diurnal => Shape::Diurnal {
                    mean_rate: a.rate,
                    amplitude: 0.8,
                    period: a.period,
                    watch: a.watch,
                    duration: a.duration,
                },
            };
            Trace::generate(&shape, a.events, a.stagger, a.regions, a.seed)
        }
    };
    if let Some(p) = &a.trace_out {
        std::fs::write(p, trace.to_csv()).with_context(|| format!("writing {}", p.display()))?;
    }
    let cfg = SimConfig {
        seed: a.seed,
        proxies: match a.proxies {
            ProxiesArg::Agent => ProxyModel::Agent,
            ProxiesArg::Synthetic => ProxyModel::Synthetic,
        },
        overlay: Overlay {
            regions: a.regions,
            tier_sizes: a.tiers.clone(),
            capacity: a.capacity,
            bits_per_sec: a.machine_bps,
            origins: a.origins,
        },
        core: control::core::Config {
            delta_t_ms: a.delta_t_ms,
            sp_ms: a.sp_ms,
            heartbeat_interval_ms: a.heartbeat_ms,
            ..control::core::Config::default()
        },
        bitrate_bps: a.bitrate,
        activation_delay_us: a.activation_ms * 1000,
        control_delay_us: a.control_ms * 1000,
        reconnect_delay_us: a.reconnect_ms * 1000,
        patience_us: a.patience_ms * 1000,
        anticipate: a.anticipate.map(|estimate| vanbench::sim::Anticipation {
            estimate,
            lead_us: a
                .anticipate_lead_ms
                .unwrap_or(a.activation_ms + 1_000)
                .saturating_mul(1000),
        }),
        crashes: a.crashes.clone(),
        sample_us: (a.sample_s * 1e6).max(1.0) as u64,
        progress: !a.quiet,
        log_decisions: a.decisions,
    };
    eprintln!(
        "simulate: {} trace rows ({} logins) over {} streams, {} relay machines in {} regions, {} proxies",
        trace.rows.len(),
        trace.logins(),
        trace.streams.len(),
        cfg.overlay.relays(),
        cfg.overlay.regions,
        cfg.proxies.name()
    );
    use vanbench::sim::baseline::{self, Baseline};
    let reports: Vec<vanbench::sim::Report> = a
        .policy
        .iter()
        .map(|p| match p {
            PolicyArg::Seed => vanbench::sim::simulate(&cfg, &trace),
            PolicyArg::Seed0030 => {
                with_growth(&cfg, &trace, control::core::Growth::Predictive, "seed-0030")
            }
            PolicyArg::OneAtATime => with_growth(
                &cfg,
                &trace,
                control::core::Growth::OneAtATime,
                "one-at-a-time",
            ),
            PolicyArg::Static => baseline::run(Baseline::Static, &cfg, &trace),
            PolicyArg::Oracle => baseline::run(Baseline::Oracle, &cfg, &trace),
        })
        .map(|mut r| {
            // The runs of the coordinator say that they were told what to expect.
            if a.anticipate.is_some() && !matches!(r.policy.as_str(), "static" | "oracle") {
                r.policy.push_str("+anticipated");
            }
            r
        })
        .collect();
    for report in &reports {
        eprint!("{}", report.table());
    }
    if let Some(p) = &a.svg {
        let title = match &a.trace {
            Some(t) => format!("trace {}", t.display()),
            None => format!(
                "{:?}: {} logins, {} relay machines",
                a.shape,
                trace.logins(),
                cfg.overlay.relays()
            ),
        };
        let runs: Vec<&vanbench::sim::Report> = reports.iter().collect();
        vanbench::sim::chart::write_svg(p, &title, &runs)?;
    }
    match reports.as_slice() {
        [one] => write_json(&a.json, one),
        all => write_json(&a.json, &all),
    }
}

#[derive(Args)]
struct Rate {
    /// Stream bit rate (SI: 4M = 4,000,000 bit/s).
    #[arg(long, value_parser = parse_bitrate, conflicts_with = "unlimited")]
    bitrate: Option<u64>,
    /// Send as fast as the connection takes.
    #[arg(long)]
    unlimited: bool,
}

#[derive(Args)]
struct Publish {
    /// Source user name (Basic auth).
    #[arg(long, default_value = "source")]
    user: String,
    /// Source password (Basic auth).
    #[arg(long, default_value = "", env = "VANBENCH_PASSWORD")]
    password: String,
    /// `put` (with Expect: 100-continue, like ffmpeg) or Icecast's `source`.
    #[arg(long, value_enum, default_value = "put")]
    method: Method,
    /// Body framing of a PUT: chunked (ffmpeg -method PUT) or close-delimited (ffmpeg icecast://).
    /// SOURCE is always close-delimited. Default: chunked for put.
    #[arg(long, value_enum)]
    framing: Option<Framing>,
    /// Size of each generated record in bytes (header included).
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(MIN_RECORD_LEN as i64..=MAX_RECORD_LEN as i64))]
    record_size: u32,
}

impl Publish {
    /// A generated-records source to `url` at `rate`, sending until stopped.
    fn source(&self, url: HttpUrl, rate: &Rate) -> SourceConfig {
        SourceConfig {
            url,
            user: self.user.clone(),
            password: self.password.clone(),
            method: self.method,
            framing: self.framing(),
            bitrate: rate.bitrate,
            record_size: self.record_size as usize,
            duration: None,
            start_seq: 0,
            raw: None,
            content_type: "application/octet-stream".into(),
            pace: Duration::from_millis(2),
        }
    }

    fn framing(&self) -> Framing {
        match (self.method, self.framing) {
            (Method::Source, _) => Framing::Close,
            (Method::Put, f) => f.unwrap_or(Framing::Chunked),
        }
    }
}

#[derive(Args)]
struct SourceArgs {
    /// Where to publish: http://HOST:PORT/live/STREAM.
    #[arg(long)]
    url: String,
    #[command(flatten)]
    publish: Publish,
    #[command(flatten)]
    rate: Rate,
    /// How long to send (e.g. 10s); until SIGINT/SIGTERM if not given.
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Sequence number of the first record (to continue a stream after a reconnect).
    #[arg(long, default_value_t = 0)]
    start_seq: u64,
    /// Send raw bytes from this file (`-` for stdin) instead of records.
    #[arg(long)]
    file: Option<String>,
    /// Content-Type of the stream.
    #[arg(long, default_value = "application/octet-stream")]
    content_type: String,
    /// Longest pause between paced writes, in milliseconds.
    #[arg(long, default_value_t = 2)]
    pace_ms: u64,
    /// Write the JSON summary here (`-` for stdout).
    #[arg(long)]
    json: Option<String>,
}

#[derive(Args)]
struct Crowd {
    /// Number of viewers.
    #[arg(short = 'n', long = "viewers", default_value_t = 1)]
    n: usize,
    /// Connections per second (e.g. 500/s); all at once if not given.
    #[arg(long, value_parser = parse_rate)]
    connect_rate: Option<f64>,
    /// How many viewers stop reading once connected.
    #[arg(long, default_value_t = 0)]
    stall: usize,
    /// How the viewers behave: `shards` (epoll loops whose viewers share a read buffer and take
    /// turns) or `crowd` (like an outside load generator: a multi-threaded tokio runtime, a task
    /// and a 64 KiB buffer per viewer, greedy reads).
    #[arg(long, value_enum, default_value = "shards")]
    client: ClientKind,
    /// Viewer threads (shards: epoll loops; crowd: runtime workers).
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Crowd client: let the allocator back the 64 KiB read buffers with transparent huge pages
    /// (vanbench's mimalloc asks for them; a client on the system allocator does not get them
    /// where THP is `madvise`). On this VM every 2 MiB page fault stalls the client's workers
    /// for seconds at 10,000 viewers (BENCHMARKS.md, "The crowd client's own page faults").
    #[arg(long)]
    client_huge_pages: bool,
    /// Longest wait for one viewer's 200.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    connect_timeout: Duration,
    /// PID of the relay, to report its CPU over the measured window and its memory.
    #[arg(long)]
    relay_pid: Option<u32>,
    /// Print a live line to stderr this often (e.g. 2s).
    #[arg(long, value_parser = parse_duration)]
    progress: Option<Duration>,
    /// Write the JSON summary here (`-` for stdout, the default).
    #[arg(long, default_value = "-")]
    json: String,
}

impl Crowd {
    fn config(&self, url: HttpUrl, duration: Option<Duration>) -> ViewersConfig {
        ViewersConfig {
            client: self.client,
            url,
            mode: ViewerMode::Plain,
            n: self.n,
            duration,
            connect_rate: self.connect_rate,
            stall: self.stall,
            threads: self.threads,
            huge_pages: self.client_huge_pages,
            connect_timeout: self.connect_timeout,
            bitrate: None,
            relay_pid: self.relay_pid,
            progress: self.progress,
        }
    }
}

#[derive(Args)]
struct ViewersArgs {
    /// Plain viewers: http://HOST:PORT/live/STREAM.
    #[arg(long, required_unless_present = "van_url", conflicts_with = "van_url")]
    url: Option<String>,
    /// VAN viewers: http://HOST:PORT/van/STREAM (needs --token).
    #[arg(long, requires = "token")]
    van_url: Option<String>,
    /// VAN bearer token.
    #[arg(long)]
    token: Option<String>,
    /// The measured window, after every viewer connected; until SIGINT/SIGTERM if not given.
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// The stream's bit rate, to compute expected_bps and delivered_ratio.
    #[arg(long, value_parser = parse_bitrate)]
    bitrate: Option<u64>,
    #[command(flatten)]
    crowd: Crowd,
}

#[derive(Args)]
struct FanoutArgs {
    /// The relay: http://HOST:PORT.
    #[arg(long)]
    relay: String,
    /// Stream name: published to /live/S, watched at /live/S (or /van/S).
    #[arg(long)]
    stream: String,
    #[command(flatten)]
    rate: Rate,
    /// The measured window, after every viewer connected.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// VAN viewers (GET /van/S with --token) instead of plain ones.
    #[arg(long, requires = "token")]
    van: bool,
    /// VAN bearer token.
    #[arg(long)]
    token: Option<String>,
    #[command(flatten)]
    publish: Publish,
    /// How long the stream runs before viewers join.
    #[arg(long, default_value = "300ms", value_parser = parse_duration)]
    warmup: Duration,
    #[command(flatten)]
    crowd: Crowd,
}

fn write_json(target: &str, value: &impl serde::Serialize) -> anyhow::Result<()> {
    // One line: callers take the last line that starts with `{` as the summary.
    let text = serde_json::to_string(value)?;
    if target == "-" {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{text}")?;
        out.flush()?;
    } else {
        std::fs::write(target, text + "\n").with_context(|| format!("writing {target}"))?;
    }
    Ok(())
}

fn report(summary: &Summary, json: &str) -> anyhow::Result<()> {
    eprint!("{}", summary.table());
    write_json(json, summary)
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let cli = Cli::parse();
    vanbench::sys::install_stop_handler();
    match cli.cmd {
        Cmd::Source(a) => {
            let raw = a.file.as_deref().map(|f| match f {
                "-" => RawInput::Stdin,
                p => RawInput::File(PathBuf::from(p)),
            });
            if a.rate.bitrate.is_none() && !a.rate.unlimited && raw.is_none() {
                bail!("give --bitrate RATE or --unlimited");
            }
            let cfg = SourceConfig {
                duration: a.duration,
                start_seq: a.start_seq,
                raw,
                content_type: a.content_type,
                pace: Duration::from_millis(a.pace_ms.max(1)),
                ..a.publish.source(HttpUrl::parse(&a.url)?, &a.rate)
            };
            let r = run_source(&cfg, &AtomicBool::new(false), &SourceProgress::default())?;
            eprintln!(
                "source: {} records, {} bytes in {:.1} s ({:.2} Mbit/s), CPU {:.2} s, ended by {}",
                r.records,
                r.bytes,
                r.seconds,
                r.rate_bps / 1e6,
                r.self_cpu_s,
                r.ended_by
            );
            if let Some(j) = &a.json {
                write_json(j, &r)?;
            }
        }
        Cmd::Viewers(a) => {
            let (url, mode) = match (&a.url, &a.van_url, &a.token) {
                (Some(u), None, _) => (u, ViewerMode::Plain),
                (None, Some(u), Some(t)) => (u, ViewerMode::Van { token: t.clone() }),
                _ => bail!("give --url, or --van-url with --token"),
            };
            let cfg = ViewersConfig {
                mode,
                bitrate: a.bitrate,
                ..a.crowd.config(HttpUrl::parse(url)?, a.duration)
            };
            let summary = run_viewers(cfg, None, &AtomicBool::new(false))?;
            report(&summary, &a.crowd.json)?;
        }
        Cmd::Simulate(a) => simulate(a)?,
        Cmd::Tree(a) => tree(a)?,
        Cmd::Curve(a) => {
            let points = a
                .runs
                .iter()
                .map(|p| vanbench::curve::Point::from_file(p))
                .collect::<anyhow::Result<Vec<_>>>()?;
            vanbench::curve::write_svg(&a.svg, &a.title, &points)?;
            for p in &points {
                println!(
                    "{}\t{}\t{}\tp99 {:.1} ms\tCPU-s/GB {:.3}",
                    p.scenario, p.target, p.setting, p.p99_ms, p.cpu_s_per_gb
                );
            }
        }
        Cmd::Fanout(a) => {
            if a.rate.bitrate.is_none() && !a.rate.unlimited {
                bail!("give --bitrate RATE or --unlimited");
            }
            let relay = HttpUrl::parse(&a.relay)?;
            let cfg = FanoutConfig {
                stream: a.stream.clone(),
                source: a.publish.source(relay.clone(), &a.rate),
                van_token: if a.van { a.token.clone() } else { None },
                viewers: a.crowd.config(relay, Some(a.duration)),
                warmup: a.warmup,
            };
            let summary = run_fanout(cfg)?;
            report(&summary, &a.crowd.json)?;
        }
    }
    Ok(())
}

fn tree(a: TreeArgs) -> anyhow::Result<()> {
    let timeout = Duration::from_secs(2);
    let Some(every) = a.every else {
        let t = vanbench::tree::fetch(a.admin, timeout).map_err(anyhow::Error::msg)?;
        print!("{}", vanbench::tree::render(&t));
        return Ok(());
    };
    vanbench::sys::install_stop_handler();
    let start = std::time::Instant::now();
    let mut last = String::new();
    while a.duration.is_none_or(|d| start.elapsed() < d) && !vanbench::sys::stop_requested() {
        // The PNC may be restarting: say so once and keep polling.
        let text = match vanbench::tree::fetch(a.admin, timeout) {
            Ok(t) => vanbench::tree::render(&t),
            Err(e) => format!("{e}\n"),
        };
        if text != last {
            println!("--- {:.1} s", start.elapsed().as_secs_f64());
            print!("{text}");
            std::io::stdout().flush().ok();
            last = text;
        }
        std::thread::sleep(every);
    }
    Ok(())
}
