//! The network around the coordinator core: relay machines, viewers, the event queue.
//!
//! What a relay machine's data plane does is modelled here, the same for both [`ProxyModel`]s:
//! viewers connect, wait for an activation to finish, are turned away by a proxy that no longer
//! accepts, follow redirects and resolve again when their proxy dies or drops the stream. Its
//! control side is either the proxies' own code (`agents.rs`) or synthetic (`synthetic.rs`).

mod agents;
mod synthetic;
#[cfg(test)]
mod tests;

use super::inbox::Inbox;
use super::queue::Queue;
use super::report::{Report, Sample, WaitMs};
use super::rng::Rng;
use super::trace::{Audience, Kind, Trace};
use super::{ProxyModel, SimConfig};
use agents::Agents;
use control::agent::Input;
use control::core::{Command, Coordinator, Event, ProxySettings, Resolution, Time};
use control::protocol::{PncMsg, ProxyId, ProxyMsg, check_hello};
use hdrhistogram::Histogram;
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// Redirects a viewer follows from proxies that no longer accept before it asks the PNC again.
const MAX_BOUNCES: u8 = 4;

/// Something that happens at a point of simulated time.
#[derive(Debug)]
enum Ev {
    /// The trace's row at this index.
    Trace(usize),
    /// A control message reaches the PNC.
    ToPnc {
        from: u32,
        msg: ProxyMsg,
    },
    /// A proxy's control connection closed (its agent closed it).
    ControlClosed {
        from: u32,
    },
    /// A control message reaches a proxy.
    ToProxy {
        to: u32,
        msg: PncMsg,
    },
    /// A viewer's connection reaches a proxy; `moved`: the PNC moved it there
    /// (`RedirectChildren`, [0037]) and reserved its place, so it is taken even by a proxy that
    /// takes no new viewers.
    Arrive {
        viewer: u32,
        proxy: u32,
        moved: bool,
    },
    /// A proxy finished activating a stream (the activation with this epoch).
    Ready {
        proxy: u32,
        stream: u32,
        epoch: u32,
    },
    /// A viewer's patience ran out: if it has not received a byte yet, it gives up.
    GiveUp {
        viewer: u32,
    },
    /// A synthetic proxy's heartbeat.
    Heartbeat {
        proxy: u32,
    },
    /// An agent's `poll_timeout()` (armed as `generation`; a re-armed timer's old entry is
    /// skipped).
    AgentTimer {
        machine: usize,
        generation: u32,
    },
    /// Something machine `machine`'s data plane tells its agent.
    AgentInput {
        machine: usize,
        input: Input,
    },
    /// A child proxy's pull (or its end) reaches the parent.
    ChildConnects {
        parent: u32,
        child: u32,
        stream: u32,
    },
    ChildDisconnects {
        parent: u32,
        child: u32,
        stream: u32,
    },
    Tick,
    Crash {
        proxy: u32,
    },
    /// A viewer resolves again (its proxy died or dropped the stream).
    Reresolve {
        viewer: u32,
    },
    Sample,
    /// The operator's announcement of an audience reaches the PNC.
    Anticipate(Audience),
}

/// One stream on one machine.
struct Serving {
    ready_at: u64,
    epoch: u32,
    /// Connected viewers, receiving or (while the stream is activating) waiting.
    viewers: Vec<u32>,
    /// Takes new viewers ([0030]); if not, sends them to `redirect_to` (round-robin), or to
    /// the PNC again when that is empty.
    accepting: bool,
    /// When it was told to stop accepting: it still takes viewers for `STOP_ACCEPTING_GRACE_US`.
    stopped_at: u64,
    redirect_to: Vec<u32>,
    next_redirect: usize,
}

struct Machine {
    id: u32,
    origin: bool,
    capacity: u32,
    alive: bool,
    /// Viewers and child proxies connected, over all streams.
    connections: u32,
    /// Ordered: what is iterated here (a crash, a heartbeat) must not depend on hashing.
    streams: BTreeMap<u32, Serving>,
    /// Since when it carries at least one stream.
    on_since: Option<u64>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    /// Resolving, or redirected and on its way to a proxy.
    Connecting,
    /// Connected to `proxy` (and counted there), which is still activating the stream.
    Waiting,
    /// Connected and receiving.
    Attached,
    Gone,
}

struct Viewer {
    stream: u32,
    region: u32,
    state: State,
    proxy: u32,
    /// Index in its machine's `viewers` list while connected.
    pos: u32,
    /// Index in its (stream, region) audience.
    apos: u32,
    login_at: u64,
    /// Waited for an activation or bounced at least once before its first byte.
    delayed: bool,
    served: bool,
    /// Redirects followed since it last asked the PNC.
    bounces: u8,
}

struct World<'a> {
    cfg: &'a SimConfig,
    trace: &'a Trace,
    core: Coordinator,
    queue: Queue<Ev>,
    now: u64,
    rng: Rng,
    machines: Vec<Machine>,
    by_id: HashMap<u32, usize>,
    stream_ids: HashMap<String, u32>,
    viewers: Vec<Viewer>,
    /// Viewers present (not gone) per (stream, region), for the trace's logoffs.
    audience: HashMap<(u32, u32), Vec<u32>>,
    /// The agents of the agent model (empty for synthetic proxies).
    agents: Agents,
    /// Heartbeat interval of synthetic proxies, from the Welcome.
    heartbeat_us: u64,
    /// Simulated time of the trace's time 0 (see `Report::warmup_s`).
    trace_start_us: u64,
    end_us: u64,
    on_machines: u64,
    attached: u64,
    waiting: u64,
    wait: Histogram<u64>,
    core_time: Duration,
    /// When the queued tick is due (`u64::MAX`: none queued).
    tick_at: u64,
    inbox: Inbox,
    r: Report,
}

/// How long a proxy told to stop accepting still takes viewers, as the dataplane does.
const STOP_ACCEPTING_GRACE_US: u64 = control::agent::STOP_ACCEPTING_GRACE.as_micros() as u64;

fn addr(id: u32) -> SocketAddr {
    SocketAddr::new(IpAddr::from(id.to_be_bytes()), 8000)
}

/// Runs the trace through the coordinator and the simulated network; returns the figures.
pub fn simulate(cfg: &SimConfig, trace: &Trace) -> Report {
    let started = Instant::now();
    let mut w = World::new(cfg, trace);
    w.setup();
    let mut last_progress = Instant::now();
    while let Some((at, ev)) = w.queue.pop() {
        if at > w.end_us {
            break;
        }
        w.now = at;
        w.r.sim_events += 1;
        w.step(ev);
        if cfg.progress
            && w.r.sim_events.is_multiple_of(65_536)
            && last_progress.elapsed().as_secs() >= 1
        {
            last_progress = Instant::now();
            eprintln!(
                "simulate: t={:7.1}/{:.0} s  events {:>10}  viewers {:>8}  waiting {:>6}  \
                 rejected {:>7}  proxies on {:>6}  core {:.1} s agents {:.1} s of {:.1} s",
                w.now.saturating_sub(w.trace_start_us) as f64 / 1e6,
                w.end_us.saturating_sub(w.trace_start_us) as f64 / 1e6,
                w.r.sim_events,
                w.attached,
                w.waiting,
                w.r.rejected,
                w.on_machines,
                w.core_time.as_secs_f64(),
                w.agents.time.as_secs_f64(),
                started.elapsed().as_secs_f64()
            );
        }
    }
    w.finish(started)
}

impl<'a> World<'a> {
    fn new(cfg: &'a SimConfig, trace: &'a Trace) -> Self {
        let o = &cfg.overlay;
        let mut core_cfg = cfg.core.clone();
        let mut machines = Vec::new();
        let mut id = 0u32;
        for _ in 0..o.origins.max(1) {
            id += 1;
            // Listed like the relays: the PNC refuses ids its configuration does not list.
            core_cfg.proxies.push(ProxySettings {
                id: ProxyId(id),
                region: None,
                coordinates: None,
                tier: None,
                source_tiers: Default::default(),
                logical_connections: None,
                connections: None,
                bits_per_sec: None,
            });
            machines.push(Machine::new(id, true, u32::MAX / 2));
        }
        for region in 0..o.regions.max(1) {
            for (t, &n) in o.tier_sizes.iter().enumerate() {
                for _ in 0..n {
                    id += 1;
                    core_cfg.proxies.push(ProxySettings {
                        id: ProxyId(id),
                        region: Some(trace_region(trace, region)),
                        coordinates: None,
                        tier: Some(t as u32 + 1),
                        source_tiers: Default::default(),
                        logical_connections: None,
                        connections: None,
                        bits_per_sec: None,
                    });
                    machines.push(Machine::new(id, false, o.capacity));
                }
            }
        }
        let by_id = machines
            .iter()
            .enumerate()
            .map(|(i, m)| (m.id, i))
            .collect();
        let heartbeat_us = u64::from(cfg.core.heartbeat_interval_ms.max(1)) * 1000;
        let trace_start_us = match cfg.proxies {
            ProxyModel::Synthetic => 0,
            // Agents start within one heartbeat interval (machines do not beat in step), then
            // connect, register and announce; the PNC recomputes tiers once per Δt/10 window.
            ProxyModel::Agent => heartbeat_us + 4 * cfg.control_delay_us + cfg.core.tick_micros(),
        } + cfg.anticipate.map_or(0, |a| a.lead_us);
        // The run lasts until every logoff was carried out and the tree had time to unwind.
        let end_us = trace_start_us
            + trace.end_us()
            + 4 * cfg.activation_delay_us
            + 4 * cfg.control_delay_us
            + cfg.core.heartbeat_timeout_ms * 1000;
        World {
            cfg,
            trace,
            core: Coordinator::new(core_cfg),
            queue: Queue::default(),
            now: 0,
            rng: Rng::new(cfg.seed),
            machines,
            by_id,
            stream_ids: trace
                .streams
                .iter()
                .enumerate()
                .map(|(i, s)| (s.clone(), i as u32))
                .collect(),
            viewers: Vec::new(),
            audience: HashMap::new(),
            agents: Agents::default(),
            heartbeat_us,
            trace_start_us,
            end_us,
            on_machines: 0,
            attached: 0,
            waiting: 0,
            wait: Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds"),
            core_time: Duration::ZERO,
            tick_at: u64::MAX,
            inbox: Inbox::new(trace_start_us),
            r: Report {
                policy: "seed".into(),
                proxy_model: cfg.proxies.name().into(),
                seed: cfg.seed,
                proxies: o.relays(),
                warmup_s: trace_start_us as f64 / 1e6,
                ..Report::default()
            },
        }
    }

    fn at(&mut self, delay: u64, ev: Ev) {
        self.queue.push(self.now + delay, ev);
    }

    /// The proxies start, then at the trace's time 0 the trace, the time series and the
    /// crashes (on the trace's clock).
    fn setup(&mut self) {
        match self.cfg.proxies {
            ProxyModel::Synthetic => self.setup_synthetic(),
            ProxyModel::Agent => self.setup_agents(),
        }
        let start = self.trace_start_us;
        if let Some(first) = self.trace.rows.first() {
            self.at(start + first.at_us, Ev::Trace(0));
        }
        // Ticks come when the core asks for one (`poll_timeout`: its next heartbeat deadline),
        // never blindly: an idle overlay of 10,000 machines costs no ticks.
        self.arm_tick();
        self.at(start, Ev::Sample);
        if let Some(a) = self.cfg.anticipate {
            for aud in self.trace.audiences() {
                let at = (start + aud.first_us).saturating_sub(a.lead_us);
                self.at(at, Ev::Anticipate(aud));
            }
        }
        for &(t, relay) in &self.cfg.crashes {
            let id = self.cfg.overlay.origins.max(1) + 1 + relay;
            self.at(start + t, Ev::Crash { proxy: id });
        }
    }

    /// One event into the core; its commands are carried out; a resolution is returned.
    fn core(&mut self, ev: Event) -> Option<Resolution> {
        let t = Instant::now();
        let out = self.core.handle(ev, Time(self.now));
        self.core_time += t.elapsed();
        self.r.core_events += 1;
        self.arm_tick();
        let mut resolved = None;
        for c in out {
            match c {
                Command::Send { to, msg } => {
                    self.at(self.cfg.control_delay_us, Ev::ToProxy { to: to.0, msg })
                }
                Command::Resolved(r) => resolved = Some(r),
                Command::Log(d) if self.cfg.log_decisions => eprintln!(
                    "{:10.3} {:?} {} {}: {}",
                    self.trace_secs(),
                    d.rule,
                    d.stream.as_deref().unwrap_or("-"),
                    d.proxy.map_or("-".to_string(), |p| p.to_string()),
                    d.reason
                ),
                Command::Log(_) => {}
            }
        }
        resolved
    }

    /// Queues a tick at the core's `poll_timeout()` if that is earlier than the one queued.
    fn arm_tick(&mut self) {
        if let Some(t) = self.core.poll_timeout() {
            let t = t.micros().max(self.now);
            if t < self.tick_at {
                self.tick_at = t;
                self.at(t - self.now, Ev::Tick);
            }
        }
    }

    fn step(&mut self, ev: Ev) {
        match ev {
            Ev::Trace(i) => {
                let row = self.trace.rows[i];
                if let Some(next) = self.trace.rows.get(i + 1) {
                    self.at(next.at_us - row.at_us, Ev::Trace(i + 1));
                }
                match row.kind {
                    Kind::Login => self.login(row.stream, row.region),
                    Kind::Logoff => self.logoff(row.stream, row.region),
                }
            }
            Ev::ToPnc { from, msg } => self.pnc_receives(from, msg),
            Ev::ControlClosed { from } => {
                if self.machine(from).is_some_and(|m| m.alive) {
                    self.core(Event::Disconnected {
                        proxy: ProxyId(from),
                    });
                }
            }
            Ev::ToProxy { to, msg } => self.proxy_receives(to, msg),
            Ev::Arrive {
                viewer,
                proxy,
                moved,
            } => self.arrive(viewer, proxy, moved),
            Ev::Ready {
                proxy,
                stream,
                epoch,
            } => self.ready(proxy, stream, epoch),
            Ev::Heartbeat { proxy } => self.heartbeat(proxy),
            Ev::GiveUp { viewer } => self.give_up(viewer),
            Ev::AgentTimer {
                machine,
                generation,
            } => self.agent_timer(machine, generation),
            Ev::AgentInput { machine, input } => self.drive(machine, input),
            Ev::ChildConnects {
                parent,
                child,
                stream,
            } => self.child_connects(parent, child, stream),
            Ev::ChildDisconnects {
                parent,
                child,
                stream,
            } => self.child_disconnects(parent, child, stream),
            // A tick armed for a deadline that an earlier tick already passed is stale.
            Ev::Anticipate(aud) => self.announce(aud),
            Ev::Tick if self.now < self.tick_at => {}
            Ev::Tick => {
                self.tick_at = u64::MAX;
                self.core(Event::Tick);
            }
            Ev::Crash { proxy } => self.crash(proxy),
            Ev::Reresolve { viewer } => {
                if self.viewers[viewer as usize].state != State::Gone {
                    self.resolve(viewer);
                }
            }
            Ev::Sample => {
                let period = self.cfg.sample_us.max(1);
                self.r.series.push(Sample {
                    t_s: self.now.saturating_sub(self.trace_start_us) as f64 / 1e6,
                    viewers: self.attached,
                    waiting: self.waiting,
                    active_proxies: self.on_machines,
                    rejected: self.r.rejected,
                    pnc_per_s: self.inbox.take_since_sample() as f64 * 1e6 / period as f64,
                });
                self.at(period, Ev::Sample);
            }
        }
    }

    /// A proxy's message reaches the PNC (unless its machine died meanwhile). A Hello goes
    /// through the service's check first, as on the wire.
    fn pnc_receives(&mut self, from: u32, msg: ProxyMsg) {
        if !self.machine(from).is_some_and(|m| m.alive) {
            return;
        }
        self.inbox.received(self.now, &msg);
        match msg {
            ProxyMsg::Hello(hello) => match check_hello(&hello, agents::TOKEN) {
                Ok(()) => {
                    self.core(Event::Register(hello.into()));
                }
                Err(reason) => self.at(
                    self.cfg.control_delay_us,
                    Ev::ToProxy {
                        to: from,
                        msg: PncMsg::Refused(reason),
                    },
                ),
            },
            msg => {
                self.core(Event::Message {
                    from: ProxyId(from),
                    msg,
                });
            }
        }
    }

    /// A PNC message reaches a proxy (a dead one hears nothing).
    fn proxy_receives(&mut self, to: u32, msg: PncMsg) {
        let Some(mi) = self.machine_ix(to) else {
            return;
        };
        if !self.machines[mi].alive {
            return;
        }
        match &msg {
            PncMsg::SwitchToParent { .. } => self.r.parent_switches += 1,
            PncMsg::StopAccepting { .. } | PncMsg::StartAccepting { .. } => {
                self.r.phase_orders += 1
            }
            _ => {}
        }
        match self.cfg.proxies {
            ProxyModel::Synthetic => self.synthetic_order(mi, msg),
            ProxyModel::Agent => self.drive(mi, Input::Received(msg)),
        }
    }

    /// Now on the trace's clock, in seconds (negative during the warm-up).
    fn trace_secs(&self) -> f64 {
        (self.now as f64 - self.trace_start_us as f64) / 1e6
    }

    fn machine(&self, id: u32) -> Option<&Machine> {
        self.by_id.get(&id).map(|&i| &self.machines[i])
    }

    fn machine_ix(&self, id: u32) -> Option<usize> {
        self.by_id.get(&id).copied()
    }

    fn stream_ix(&self, name: &str) -> Option<u32> {
        self.stream_ids.get(name).copied()
    }

    /// The operator tells the PNC what audience to expect ([0033]).
    fn announce(&mut self, aud: Audience) {
        let Some(a) = self.cfg.anticipate else { return };
        self.core(Event::Anticipate {
            stream: self.trace.streams[aud.stream as usize].clone(),
            region: Some(trace_region(self.trace, aud.region)),
            viewers: (aud.logins as f64 * a.estimate).round() as u64,
            ramp_secs: (aud.last_us - aud.first_us) as f64 / 1e6,
        });
    }

    fn login(&mut self, stream: u32, region: u32) {
        self.r.logins += 1;
        let v = self.viewers.len() as u32;
        let list = self.audience.entry((stream, region)).or_default();
        list.push(v);
        let apos = (list.len() - 1) as u32;
        self.viewers.push(Viewer {
            stream,
            region,
            state: State::Connecting,
            proxy: 0,
            pos: 0,
            apos,
            login_at: self.now,
            delayed: false,
            served: false,
            bounces: 0,
        });
        if self.cfg.patience_us > 0 {
            self.at(self.cfg.patience_us, Ev::GiveUp { viewer: v });
        }
        self.resolve(v);
    }

    /// A viewer still without its first byte when its patience runs out leaves: a player
    /// showing a spinner, or the relay's `503` to a viewer parked at a standby too long.
    fn give_up(&mut self, v: u32) {
        let x = &self.viewers[v as usize];
        if x.served || x.state == State::Gone {
            return;
        }
        self.r.gave_up += 1;
        if self.cfg.log_decisions {
            eprintln!("{:10.3} viewer {v} gave up waiting", self.trace_secs());
        }
        self.leave(v);
    }

    /// `GET /resolve/{stream}` ([0033]): the core names a proxy or refuses.
    fn resolve(&mut self, v: u32) {
        let (stream, region) = {
            let x = &mut self.viewers[v as usize];
            x.bounces = 0;
            (x.stream, x.region)
        };
        let answer = self.core(Event::Resolve {
            request: u64::from(v),
            stream: self.trace.streams[stream as usize].clone(),
            region: Some(self.trace.regions[region as usize].clone()),
            client: None,
        });
        match answer.and_then(|a| a.target) {
            Some(peer) => {
                self.viewers[v as usize].state = State::Connecting;
                self.at(
                    self.cfg.control_delay_us,
                    Ev::Arrive {
                        viewer: v,
                        proxy: peer.id.0,
                        moved: false,
                    },
                );
            }
            None => {
                self.r.rejected += 1;
                if self.cfg.log_decisions {
                    eprintln!("{:10.3} rejected viewer {v}", self.trace_secs());
                }
                self.leave(v);
            }
        }
    }

    /// The viewer is no longer part of the audience.
    fn leave(&mut self, v: u32) {
        let x = &self.viewers[v as usize];
        if x.state == State::Gone {
            return;
        }
        let key = (x.stream, x.region);
        let apos = x.apos as usize;
        if matches!(x.state, State::Attached | State::Waiting) {
            self.detach(v, true);
        }
        if let Some(list) = self.audience.get_mut(&key) {
            list.swap_remove(apos);
            if let Some(&moved) = list.get(apos) {
                self.viewers[moved as usize].apos = apos as u32;
            }
        }
        self.viewers[v as usize].state = State::Gone;
    }

    fn logoff(&mut self, stream: u32, region: u32) {
        let n = self.audience.get(&(stream, region)).map_or(0, Vec::len);
        if n == 0 {
            self.r.unmatched_logoffs += 1;
            return;
        }
        let i = self.rng.below(n);
        let v = self.audience[&(stream, region)][i];
        self.leave(v);
    }

    fn arrive(&mut self, v: u32, proxy: u32, moved: bool) {
        if self.viewers[v as usize].state != State::Connecting {
            return; // left meanwhile
        }
        let stream = self.viewers[v as usize].stream;
        let Some(mi) = self.machine_ix(proxy) else {
            return;
        };
        let now = self.now;
        let m = &mut self.machines[mi];
        let serving = if m.alive {
            m.streams.get_mut(&stream)
        } else {
            None
        };
        match serving {
            None => {
                // Sent to a proxy that no longer serves the stream: the viewer asks again.
                self.viewers[v as usize].delayed = true;
                self.resolve(v);
            }
            Some(s) if !s.accepting && !moved && now >= s.stopped_at + STOP_ACCEPTING_GRACE_US => {
                // [0030] [0035] a proxy in its contraction phase answers `307` to one that
                // accepts, or `503` when it knows none: the viewer asks the PNC again.
                let to = (!s.redirect_to.is_empty()).then(|| {
                    let to = s.redirect_to[s.next_redirect % s.redirect_to.len()];
                    s.next_redirect = s.next_redirect.wrapping_add(1);
                    to
                });
                self.r.bounced += 1;
                let x = &mut self.viewers[v as usize];
                x.delayed = true;
                x.bounces = x.bounces.saturating_add(1);
                match to {
                    Some(to) if x.bounces <= MAX_BOUNCES => self.at(
                        self.cfg.control_delay_us,
                        Ev::Arrive {
                            viewer: v,
                            proxy: to,
                            moved: false,
                        },
                    ),
                    _ => self.resolve(v),
                }
            }
            Some(s) => {
                let ready = now >= s.ready_at;
                self.attach(v, mi, ready);
            }
        }
    }

    /// The viewer is connected to machine `mi` and its proxy hears of it; it receives at once
    /// if the stream is `ready` there, else it waits for the activation to finish.
    fn attach(&mut self, v: u32, mi: usize, ready: bool) {
        let stream = self.viewers[v as usize].stream;
        let m = &mut self.machines[mi];
        let Some(s) = m.streams.get_mut(&stream) else {
            return;
        };
        s.viewers.push(v);
        let pos = (s.viewers.len() - 1) as u32;
        self.r.peak_viewers_per_proxy = self.r.peak_viewers_per_proxy.max(s.viewers.len() as u64);
        m.connections += 1;
        let (id, connections, capacity) = (m.id, m.connections, m.capacity);
        if connections > capacity {
            self.r.overloaded_logins += 1;
            self.r.peak_overload = self.r.peak_overload.max(u64::from(connections - capacity));
            if self.cfg.log_decisions {
                eprintln!(
                    "{:10.3} viewer {v} over capacity at P{id}: {connections} connections of {capacity}",
                    self.trace_secs()
                );
            }
        }
        let x = &mut self.viewers[v as usize];
        x.proxy = id;
        x.pos = pos;
        if ready {
            self.receive(v);
        } else {
            x.state = State::Waiting;
            x.delayed = true;
            self.waiting += 1;
        }
        match self.cfg.proxies {
            ProxyModel::Synthetic => self.synthetic_viewer_login(id, stream),
            ProxyModel::Agent => self.agent_hears(
                mi,
                Input::ViewerJoined {
                    stream: self.trace.streams[stream as usize].clone(),
                },
            ),
        }
    }

    /// A connected viewer gets its first bytes.
    fn receive(&mut self, v: u32) {
        let x = &mut self.viewers[v as usize];
        x.state = State::Attached;
        if !x.served {
            x.served = true;
            let waited = self.now - x.login_at;
            self.wait.saturating_record(waited.max(1));
            if x.delayed {
                self.r.delayed += 1;
            }
        }
        self.attached += 1;
        self.r.peak_viewers = self.r.peak_viewers.max(self.attached);
    }

    /// Takes a connected viewer off its machine; `tell`: the proxy's control side hears of it
    /// (not when the machine crashed, nor when a synthetic proxy's PNC already wrote it off).
    fn detach(&mut self, v: u32, tell: bool) {
        let (stream, proxy, pos) = {
            let x = &self.viewers[v as usize];
            (x.stream, x.proxy, x.pos as usize)
        };
        let Some(mi) = self.machine_ix(proxy) else {
            return;
        };
        let m = &mut self.machines[mi];
        if let Some(s) = m.streams.get_mut(&stream) {
            s.viewers.swap_remove(pos);
            if let Some(&moved) = s.viewers.get(pos) {
                self.viewers[moved as usize].pos = pos as u32;
            }
        }
        m.connections -= 1;
        match self.viewers[v as usize].state {
            State::Attached => self.attached -= 1,
            State::Waiting => self.waiting -= 1,
            _ => {}
        }
        self.viewers[v as usize].state = State::Connecting;
        if tell {
            match self.cfg.proxies {
                ProxyModel::Synthetic => self.synthetic_viewer_logoff(proxy, stream),
                ProxyModel::Agent => self.agent_hears(
                    mi,
                    Input::ViewerLeft {
                        stream: self.trace.streams[stream as usize].clone(),
                    },
                ),
            }
        }
    }

    fn ready(&mut self, proxy: u32, stream: u32, epoch: u32) {
        let Some(mi) = self.machine_ix(proxy) else {
            return;
        };
        let connected = match self.machines[mi].streams.get(&stream) {
            Some(s) if s.epoch == epoch => s.viewers.clone(),
            _ => return,
        };
        for v in connected {
            if self.viewers[v as usize].state == State::Waiting {
                self.waiting -= 1;
                self.receive(v);
            }
        }
    }

    /// Machine `mi` starts serving stream `s` in `tier`: it is ready after the activation
    /// delay (ΔT of [0009], [0058]).
    fn start_serving(&mut self, mi: usize, s: u32, tier: u32, accepting: bool) {
        self.r.max_tier = self.r.max_tier.max(tier);
        let ready_at = self.now + self.cfg.activation_delay_us;
        let m = &mut self.machines[mi];
        if m.streams.contains_key(&s) {
            return;
        }
        self.r.activations += 1;
        let epoch = self.r.activations as u32;
        m.streams.insert(
            s,
            Serving {
                ready_at,
                epoch,
                viewers: Vec::new(),
                accepting,
                stopped_at: 0,
                redirect_to: Vec::new(),
                next_redirect: 0,
            },
        );
        if m.on_since.is_none() && !m.origin {
            m.on_since = Some(self.now);
            self.on_machines += 1;
            self.r.peak_active_proxies = self.r.peak_active_proxies.max(self.on_machines);
        }
        let id = m.id;
        self.at(
            self.cfg.activation_delay_us,
            Ev::Ready {
                proxy: id,
                stream: s,
                epoch,
            },
        );
    }

    /// Every viewer of stream `s` connected to machine `mi`, taken off it (in state
    /// `Connecting`); `tell` as in [`World::detach`].
    fn take_viewers(&mut self, mi: usize, s: u32, tell: bool) -> Vec<u32> {
        let connected = match self.machines[mi].streams.get(&s) {
            Some(sv) => sv.viewers.clone(),
            None => return Vec::new(),
        };
        for &v in &connected {
            self.detach(v, tell);
        }
        connected
    }

    /// Viewers whose proxy dropped them resolve again after the reconnect delay.
    fn orphan(&mut self, viewers: Vec<u32>) {
        for v in viewers {
            self.r.viewer_migrations += 1;
            self.at(self.cfg.reconnect_delay_us, Ev::Reresolve { viewer: v });
        }
    }

    fn drop_stream(&mut self, mi: usize, s: u32) {
        let m = &mut self.machines[mi];
        m.streams.remove(&s);
        if m.streams.is_empty()
            && let Some(since) = m.on_since.take()
        {
            self.r.proxy_seconds += (self.now - since) as f64 / 1e6;
            self.on_machines -= 1;
        }
    }

    fn crash(&mut self, proxy: u32) {
        let Some(mi) = self.machine_ix(proxy) else {
            return;
        };
        if !self.machines[mi].alive {
            return;
        }
        let streams: Vec<u32> = self.machines[mi].streams.keys().copied().collect();
        for s in streams {
            let lost = self.take_viewers(mi, s, false);
            self.drop_stream(mi, s);
            self.r.crashed_viewers += lost.len() as u64;
            self.orphan(lost);
        }
        self.machines[mi].alive = false;
        if self.cfg.proxies == ProxyModel::Agent {
            self.crash_agent(mi);
        }
        // The control connection closes with the process; the PNC declares the crash only
        // when the heartbeats stop ([0066]).
        self.core(Event::Disconnected {
            proxy: ProxyId(proxy),
        });
    }

    fn finish(mut self, started: Instant) -> Report {
        for m in &mut self.machines {
            if let Some(since) = m.on_since.take() {
                self.r.proxy_seconds += (self.now - since) as f64 / 1e6;
            }
        }
        let q = |h: &Histogram<u64>, x: f64| {
            if h.is_empty() {
                0.0
            } else {
                h.value_at_quantile(x) as f64 / 1000.0
            }
        };
        self.r.login_wait_ms = WaitMs {
            p50: q(&self.wait, 0.5),
            p99: q(&self.wait, 0.99),
            max: self.wait.max() as f64 / 1000.0,
        };
        self.r.rejected_pct = if self.r.logins > 0 {
            self.r.rejected as f64 * 100.0 / self.r.logins as f64
        } else {
            0.0
        };
        self.r.gave_up_pct = if self.r.logins > 0 {
            self.r.gave_up as f64 * 100.0 / self.r.logins as f64
        } else {
            0.0
        };
        let admitted = self.r.logins - self.r.rejected - self.r.gave_up;
        self.r.migrations_per_viewer = if admitted > 0 {
            self.r.viewer_migrations as f64 / admitted as f64
        } else {
            0.0
        };
        self.r.simulated_s = self.now.saturating_sub(self.trace_start_us) as f64 / 1e6;
        self.r.pnc = self.inbox.load(self.now, self.r.proxies);
        self.r.protocol_errors = self.core.counters().protocol_errors;
        self.r.core_s = self.core_time.as_secs_f64();
        self.r.agent_s = self.agents.time.as_secs_f64();
        self.r.agent_events = self.agents.handled;
        self.r.wall_s = started.elapsed().as_secs_f64();
        self.r.core_us_per_event = if self.r.core_events > 0 {
            self.r.core_s * 1e6 / self.r.core_events as f64
        } else {
            0.0
        };
        self.r
    }
}

impl Machine {
    fn new(id: u32, origin: bool, capacity: u32) -> Self {
        Machine {
            id,
            origin,
            capacity,
            alive: true,
            connections: 0,
            streams: BTreeMap::new(),
            on_since: None,
        }
    }
}

/// The name of simulated region `r`: the trace's own names first, then `r{index}`.
fn trace_region(trace: &Trace, r: u32) -> String {
    trace
        .regions
        .get(r as usize)
        .cloned()
        .unwrap_or_else(|| format!("r{r}"))
}
