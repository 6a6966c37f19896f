//! `pnc`: the VAN proxy network coordinator service, and `pnc script`, a scripted proxy client.
//!
//! `pnc [--config FILE] [--control ADDR] [--admin ADDR] [--public ADDR] [--dns ADDR]
//! [--token-file FILE]` binds every port, prints one line to stdout when ready —
//! `listening control=IP:PORT admin=IP:PORT public=IP:PORT dns=IP:PORT` — and logs to stderr
//! (`RUST_LOG` filters, default `info`; decisions under target `pnc::decision`).

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use control::proxy_client::script::{ScriptOptions, parse_script, run_script};
use control::service::config::{ServiceConfig, read_token};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// VAN proxy network coordinator.
///
/// Every setting has a default; the file (see control/pnc.example.toml) overlays them and the
/// flags below override the file. A token is required (token_file or --token-file).
#[derive(Debug, Parser)]
#[command(name = "pnc", version, about, long_about)]
struct Cli {
    /// TOML configuration file.
    #[arg(long, short = 'c', env = "PNC_CONFIG")]
    config: Option<PathBuf>,
    /// Control socket address (proxies connect here) [default: 0.0.0.0:7700].
    #[arg(long)]
    control: Option<SocketAddr>,
    /// Admin HTTP address: /api/topology, /metrics, /status, / [default: 127.0.0.1:7701].
    #[arg(long)]
    admin: Option<SocketAddr>,
    /// Public HTTP address: /resolve/{stream} [default: 0.0.0.0:8080].
    #[arg(long)]
    public: Option<SocketAddr>,
    /// DNS address, UDP and TCP [default: 0.0.0.0:5353].
    #[arg(long)]
    dns: Option<SocketAddr>,
    /// File holding the shared control-socket token (overrides token_file).
    #[arg(long, env = "PNC_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// Check the configuration, print it and exit.
    #[arg(long)]
    check: bool,
    /// Log as JSON lines (one object per event) instead of text; RUST_LOG filters either way.
    #[arg(long)]
    log_json: bool,
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Play proxy messages from a script against a running pnc, printing every message received.
    ///
    /// One step per line, `#` comments, proxies as P31 or 31, any step may end with sleep=MS:
    ///   hello P31 [name=N] [addr=IP:PORT] [region=R] [capacity=N] [bps=N] [rtt=P1:MS,..] [token=T] [version=N]
    ///             [stream=NAME[,tier=N][,parents=P21+P22][,children=P31+P32][,viewers=N][,accepting][,source=S]]...
    ///   P31 announce STREAM [source=S] [type=CT] [bitrate=N]     P31 end STREAM
    ///   P31 login|logoff STREAM [viewer | proxy=P21]              P31 distribute|consolidate STREAM
    ///   P31 link-down STREAM parent=P21    P31 heartbeat    P31 mute|unmute    P31 close
    ///   P31 expect KIND [MS]   (Welcome, Refused, Activate, SwitchToParent, StopAccepting, ...)
    ///   viewer STREAM [region=R]   (GET /resolve on --public, LOGIN at the proxy named; with
    ///                               --admin, wait until /api/topology shows it)
    ///   wait-stream STREAM [MS]   (with --admin: until /api/topology lists it)
    ///   sleep MS
    /// Output: `recv P31 {json}`, `sent P31 {json}`, `viewer S -> P31 302 URL`, `closed P31`.
    #[command(verbatim_doc_comment)]
    Script {
        /// The script ("-" for standard input).
        file: PathBuf,
        /// The pnc's control socket.
        #[arg(long)]
        connect: SocketAddr,
        /// The pnc's public HTTP address, for `viewer` steps.
        #[arg(long)]
        public: Option<SocketAddr>,
        /// The pnc's admin HTTP address: `viewer` steps then wait until the LOGIN shows in
        /// /api/topology, so that steps are seen by the pnc in script order.
        #[arg(long)]
        admin: Option<SocketAddr>,
        /// File holding the token the proxies present.
        #[arg(long, env = "PNC_TOKEN_FILE")]
        token_file: PathBuf,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    if cli.log_json {
        logs.json().init();
    } else {
        logs.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init();
    }
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")
        .and_then(|rt| rt.block_on(run(cli)));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pnc: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    if let Some(Cmd::Script {
        file,
        connect,
        public,
        admin,
        token_file,
    }) = cli.command
    {
        let text = if file.as_os_str() == "-" {
            std::io::read_to_string(std::io::stdin()).context("cannot read standard input")?
        } else {
            std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?
        };
        let steps = parse_script(&text).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
        let token = read_token(&token_file)?;
        return run_script(
            &steps,
            ScriptOptions {
                control: connect,
                public,
                admin,
                token,
            },
        )
        .await
        .with_context(|| format!("{}", file.display()));
    }
    let mut config = match &cli.config {
        Some(path) => ServiceConfig::load(path)?,
        None => ServiceConfig::default(),
    };
    let l = &mut config.listen;
    l.control = cli.control.unwrap_or(l.control);
    l.admin = cli.admin.unwrap_or(l.admin);
    l.public = cli.public.unwrap_or(l.public);
    l.dns = cli.dns.unwrap_or(l.dns);
    if cli.token_file.is_some() {
        config.token_file = cli.token_file.clone();
    }
    let token_path = config
        .token_file
        .clone()
        .context("no token: set token_file in the configuration or pass --token-file")?;
    let token = read_token(&token_path)?;
    if cli.check {
        println!("{config:#?}");
        return Ok(());
    }
    let (bound, _handle) = control::service::start(&config, token).await?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{bound}")?;
        out.flush()?;
    }
    tracing::info!("{bound}");
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot wait for SIGTERM")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("cannot wait for SIGINT")?,
        _ = term.recv() => {}
    }
    // Proxies keep relaying without the PNC and re-register with the next one.
    tracing::info!("signalled; exiting");
    Ok(())
}
