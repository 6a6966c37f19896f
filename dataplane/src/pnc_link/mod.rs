//! The relay's link to the PNC (`--pnc`): a tokio task on the control thread that drives the
//! proxy agent ([`control::agent::Agent`], a pure state machine) and carries out what it says.
//!
//! - In: the PNC's messages ([`conn`]), what happens on the data port ([`LocalEvent`]s from
//!   the reactors, [`events`]), the load sampled at each heartbeat interval ([`load`]), probe
//!   results ([`monitor`]), and the agent's own timers (`poll_timeout`), on a monotonic clock
//!   in microseconds from the link's start.
//! - Out: the agent's [`Action`]s: messages to the PNC, orders to the reactors through an
//!   [`OrderSink`], who takes new viewers ([`Admission`], read by the front door), peers to
//!   probe, log lines ([`carry`]).
//!
//! The data plane never waits on the PNC (DESIGN.md): the socket lives in its own task, every
//! channel is unbounded and drained whether or not the PNC is reachable, and while it is away
//! the agent backs off and retries; nothing already ordered is undone by a disconnect.

pub mod carry;
pub mod conn;
pub mod events;
pub mod load;
pub mod monitor;
#[cfg(test)]
mod tests;

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use control::agent::{Agent, AgentConfig, Input};
use control::core::Time;
use control::protocol::{Capacity, PncMsg, ProxyId};
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};
use tracing::{info, warn};

use crate::config::PncConfig;
use crate::orders::{Admission, LocalEvent};
use carry::{Carrier, Duty};
use conn::{ConnEvent, Connection};
use load::{Counters, LoadMeter};
use monitor::{Judge, Monitor};

pub use crate::orders::OrderSink;

/// Who this proxy is to the PNC, from the configuration.
#[derive(Clone, Debug)]
pub struct LinkSettings {
    /// The PNC's control socket, `HOST:PORT`.
    pub pnc: String,
    pub agent: AgentConfig,
    /// The source name announced for streams published here (`None`: the stream's name).
    pub source_name: Option<String>,
    /// How often the watched peers are probed (`--probe-interval-ms`).
    pub probe_every: Duration,
}

impl LinkSettings {
    /// Settings for proxy `proxy_id` whose data port is bound at `bound`; `max_connections` is
    /// the default capacity in connections. Fails with the reason (start-up error).
    pub fn new(
        cfg: &PncConfig,
        proxy_id: u32,
        bound: SocketAddr,
        max_connections: usize,
    ) -> anyhow::Result<Self> {
        let token = read_token(&cfg.token_file)?;
        let data_addr = match &cfg.advertise {
            Some(a) => a
                .to_socket_addrs()
                .with_context(|| format!("--advertise {a}: not an address"))?
                .next()
                .with_context(|| format!("--advertise {a}: no address"))?,
            None if bound.ip().is_unspecified() => bail!(
                "--pnc with the data port on {bound} needs --advertise HOST:PORT: other proxies \
                 and viewers cannot reach {bound}"
            ),
            None => bound,
        };
        let capacity = Capacity {
            connections: cfg
                .capacity_connections
                .unwrap_or_else(|| u32::try_from(max_connections).unwrap_or(u32::MAX)),
            bits_per_sec: cfg.capacity_bps,
        };
        let mut agent = AgentConfig::new(
            ProxyId(proxy_id),
            cfg.name.clone(),
            token,
            data_addr,
            capacity,
        );
        // [0047] The PNC's logical capacity of a stream here, for the agent's decisions.
        agent.stream_capacity = cfg.stream_capacity_connections.map(|connections| Capacity {
            connections,
            bits_per_sec: cfg.capacity_bps,
        });
        agent.region = cfg.region.clone();
        agent.delta_t_ms = cfg.delta_t_ms;
        // Proxies restarted together do not retry in step.
        agent.seed = u64::from(proxy_id) ^ u64::from(std::process::id()).rotate_left(32);
        Ok(LinkSettings {
            pnc: cfg.addr.clone(),
            agent,
            source_name: cfg.source_name.clone(),
            probe_every: Duration::from_millis(cfg.probe_interval_ms),
        })
    }
}

fn read_token(path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read --pnc-token-file {}", path.display()))?;
    let token = text.trim();
    if token.is_empty() {
        bail!("--pnc-token-file {} is empty", path.display());
    }
    Ok(token.to_owned())
}

/// What the link acts on and reads at this relay.
pub struct Relay {
    pub orders: &'static dyn OrderSink,
    pub admission: &'static Admission,
    /// The relay's counters now ([`load::counters`]).
    pub counters: Box<dyn Fn() -> Counters + Send>,
}

/// Load is sampled at this interval until the PNC's `Welcome` names its heartbeat interval.
const DEFAULT_SAMPLE: Duration = Duration::from_secs(1);

/// Runs the link until the event channel closes (the relay is going away).
pub async fn run(settings: LinkSettings, relay: Relay, mut events: UnboundedReceiver<LocalEvent>) {
    let start = Instant::now();
    let now = || Time(u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX));
    info!(pnc = %settings.pnc, proxy = settings.agent.proxy.0, data = %settings.agent.data_addr, "PNC link starting");
    let pnc = settings.pnc.clone();
    let source_name = settings.source_name.clone();
    let mut agent = Agent::new(settings.agent);
    let carrier = Carrier {
        orders: relay.orders,
        admission: relay.admission,
    };
    let (conn_tx, mut conn_rx) = unbounded_channel();
    let mut conn: Option<Connection> = None;
    let mut attempts = 0u64;
    let (probe_tx, mut probe_rx) = unbounded_channel();
    let mut monitor = Monitor::new(Judge::default(), probe_tx);
    let mut meter = LoadMeter::default();
    let mut sample_every = DEFAULT_SAMPLE;
    let mut next_sample = tokio::time::Instant::now() + sample_every;
    let mut probes = tokio::time::interval(settings.probe_every);
    probes.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let wake = agent.poll_timeout().map_or_else(
            || tokio::time::Instant::now() + Duration::from_secs(3600),
            |t| tokio::time::Instant::from_std(start + Duration::from_micros(t.micros())),
        );
        let inputs: Vec<Input> = tokio::select! {
            _ = tokio::time::sleep_until(wake) => vec![Input::Timeout],
            event = events.recv() => match event {
                Some(e) => vec![events::input_of(e, source_name.as_deref())],
                None => return,
            },
            Some((id, event)) = conn_rx.recv() => {
                if conn.as_ref().is_none_or(|c| c.id != id) {
                    // From a connection already dropped.
                    continue;
                }
                match event {
                    ConnEvent::Connected => {
                        info!(pnc = %pnc, "control connection open");
                        vec![Input::Connected]
                    }
                    ConnEvent::Received(msg) => {
                        if let PncMsg::Welcome { heartbeat_ms, .. } = &msg {
                            // Load is sampled once per heartbeat.
                            sample_every = Duration::from_millis(u64::from(*heartbeat_ms).max(100));
                            info!(heartbeat_ms, "registered with the PNC");
                        }
                        vec![Input::Received(msg)]
                    }
                    ConnEvent::Closed(why) => {
                        warn!(pnc = %pnc, "control connection lost: {why}; relaying on, retrying with back-off");
                        conn = None;
                        vec![Input::Disconnected]
                    }
                }
            }
            _ = tokio::time::sleep_until(next_sample) => {
                next_sample = tokio::time::Instant::now() + sample_every;
                meter.sample((relay.counters)())
            }
            Some(report) = probe_rx.recv() => monitor.report(report),
            _ = probes.tick() => {
                monitor.probe_all();
                continue;
            }
        };
        for input in inputs {
            for action in agent.handle(input, now()) {
                for duty in carrier.carry(action) {
                    match duty {
                        Duty::Connect => {
                            attempts += 1;
                            conn = Some(Connection::open(pnc.clone(), attempts, conn_tx.clone()));
                        }
                        Duty::Close => conn = None,
                        Duty::Send(msg) => match &conn {
                            Some(c) => {
                                if let Err(e) = c.send(&msg) {
                                    warn!("cannot send to the PNC: {e}");
                                }
                            }
                            // Not logged whole: a Hello carries the token.
                            None => warn!("no control connection: a message to the PNC dropped"),
                        },
                        Duty::Watch { stream, peers } => monitor.watch(stream, peers),
                        Duty::Log(line) => info!(target: "dataplane::pnc", "{line}"),
                    }
                }
            }
        }
    }
}

/// What the link needs from the relay's start-up: its settings and the channel the reactors
/// report on. `None` without `--pnc`.
pub fn settings_for(
    cfg: &crate::config::Config,
    bound: SocketAddr,
    max_connections: usize,
) -> anyhow::Result<Option<LinkSettings>> {
    cfg.pnc
        .as_ref()
        .map(|p| LinkSettings::new(p, cfg.proxy_id, bound, max_connections))
        .transpose()
}
