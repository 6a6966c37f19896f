//! The synthetic network around the coordinator core: relay machines, viewers, the event queue.

use super::SimConfig;
use super::report::{Report, Sample, WaitMs};
use super::rng::Rng;
use super::trace::{Kind, Trace};
use control::core::{Command, Coordinator, Event, ProxySettings, Registration, Resolution, Time};
use control::protocol::{Capacity, Child, PncMsg, ProxyId, ProxyMsg, SourceInfo, StreamLoad};
use hdrhistogram::Histogram;
use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

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
    /// A control message reaches a proxy.
    ToProxy {
        to: u32,
        msg: PncMsg,
    },
    /// A viewer's connection reaches a proxy.
    Arrive {
        viewer: u32,
        proxy: u32,
    },
    /// A proxy finished activating a stream (the activation with this epoch).
    Ready {
        proxy: u32,
        stream: u32,
        epoch: u32,
    },
    Heartbeat {
        proxy: u32,
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
}

struct Queued {
    at: u64,
    seq: u64,
    ev: Ev,
}

impl PartialEq for Queued {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Queued {
    // Reversed: BinaryHeap is a max-heap and the earliest event must come out first.
    fn cmp(&self, o: &Self) -> Ordering {
        (o.at, o.seq).cmp(&(self.at, self.seq))
    }
}

/// One stream on one machine.
struct Serving {
    ready_at: u64,
    epoch: u32,
    /// Connected viewers, receiving or (while the stream is activating) waiting.
    viewers: Vec<u32>,
}

struct Machine {
    id: u32,
    origin: bool,
    capacity: u32,
    alive: bool,
    connections: u32,
    streams: HashMap<u32, Serving>,
    /// Since when it carries at least one stream.
    on_since: Option<u64>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    /// Resolving, or redirected and on its way to a proxy.
    Connecting,
    /// Connected to `proxy` (and counted there: the LOGIN went out on connect), which is still
    /// activating the stream.
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
}

struct World<'a> {
    cfg: &'a SimConfig,
    trace: &'a Trace,
    core: Coordinator,
    queue: BinaryHeap<Queued>,
    seq: u64,
    now: u64,
    rng: Rng,
    machines: Vec<Machine>,
    by_id: HashMap<u32, usize>,
    stream_ids: HashMap<String, u32>,
    viewers: Vec<Viewer>,
    /// Viewers present (not gone) per (stream, region), for the trace's logoffs.
    audience: HashMap<(u32, u32), Vec<u32>>,
    heartbeat_us: u64,
    end_us: u64,
    on_machines: u64,
    attached: u64,
    waiting: u64,
    wait: Histogram<u64>,
    core_time: Duration,
    r: Report,
}

fn addr(id: u32) -> SocketAddr {
    SocketAddr::new(IpAddr::from(id.to_be_bytes()), 8000)
}

/// Runs the trace through the coordinator and the synthetic network; returns the figures.
pub fn simulate(cfg: &SimConfig, trace: &Trace) -> Report {
    let started = Instant::now();
    let mut w = World::new(cfg, trace);
    w.setup();
    let mut last_progress = Instant::now();
    while let Some(q) = w.queue.pop() {
        if q.at > w.end_us {
            break;
        }
        w.now = q.at;
        w.r.sim_events += 1;
        w.step(q.ev);
        if cfg.progress
            && w.r.sim_events.is_multiple_of(65_536)
            && last_progress.elapsed().as_secs() >= 1
        {
            last_progress = Instant::now();
            eprintln!(
                "simulate: t={:7.1}/{:.0} s  events {:>10}  viewers {:>8}  waiting {:>6}  \
                 rejected {:>7}  proxies on {:>6}  core {:.1} s of {:.1} s",
                w.now as f64 / 1e6,
                w.end_us as f64 / 1e6,
                w.r.sim_events,
                w.attached,
                w.waiting,
                w.r.rejected,
                w.on_machines,
                w.core_time.as_secs_f64(),
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
        // The run lasts until every logoff was carried out and the tree had time to unwind.
        let end_us = trace.end_us()
            + 4 * cfg.activation_delay_us
            + 4 * cfg.control_delay_us
            + cfg.core.heartbeat_timeout_ms * 1000;
        World {
            cfg,
            trace,
            core: Coordinator::new(core_cfg),
            queue: BinaryHeap::new(),
            seq: 0,
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
            heartbeat_us: u64::from(cfg.core.heartbeat_interval_ms) * 1000,
            end_us,
            on_machines: 0,
            attached: 0,
            waiting: 0,
            wait: Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds"),
            core_time: Duration::ZERO,
            r: Report {
                policy: "seed".into(),
                seed: cfg.seed,
                proxies: o.relays(),
                ..Report::default()
            },
        }
    }

    fn at(&mut self, delay: u64, ev: Ev) {
        self.seq += 1;
        self.queue.push(Queued {
            at: self.now + delay,
            seq: self.seq,
            ev,
        });
    }

    /// Registers every machine and announces every stream at its origin, at time 0.
    fn setup(&mut self) {
        let o = &self.cfg.overlay;
        for i in 0..self.machines.len() {
            let m = &self.machines[i];
            let region = if m.origin {
                "origins".to_string()
            } else {
                String::new() // the operator's settings name it
            };
            let reg = Registration {
                proxy: ProxyId(m.id),
                name: format!("p{}", m.id),
                data_addr: addr(m.id),
                region: (!region.is_empty()).then_some(region),
                capacity: Capacity {
                    connections: m.capacity,
                    bits_per_sec: if m.origin {
                        u64::MAX / 4
                    } else {
                        o.bits_per_sec
                    },
                },
                streams: vec![],
                rtts: vec![],
            };
            self.core(Event::Register(reg));
        }
        for (s, name) in self.trace.streams.iter().enumerate() {
            let origin = 1 + s as u32 % o.origins.max(1);
            self.core(Event::Message {
                from: ProxyId(origin),
                msg: ProxyMsg::StreamAnnounce {
                    stream: name.clone(),
                    source: SourceInfo {
                        source: format!("origin{origin}"),
                        content_type: "video/mp2t".into(),
                        bitrate_bps: self.cfg.bitrate_bps,
                    },
                },
            });
        }
        if !self.trace.rows.is_empty() {
            let first = self.trace.rows[0].at_us;
            self.at(first, Ev::Trace(0));
        }
        self.at(self.cfg.core.tick_micros(), Ev::Tick);
        self.at(0, Ev::Sample);
        for &(t, relay) in &self.cfg.crashes {
            let id = o.origins.max(1) + 1 + relay;
            self.at(t, Ev::Crash { proxy: id });
        }
    }

    /// One event into the core; its commands are carried out; a resolution is returned.
    fn core(&mut self, ev: Event) -> Option<Resolution> {
        let t = Instant::now();
        let out = self.core.handle(ev, Time(self.now));
        self.core_time += t.elapsed();
        self.r.core_events += 1;
        let mut resolved = None;
        for c in out {
            match c {
                Command::Send { to, msg } => {
                    self.at(self.cfg.control_delay_us, Ev::ToProxy { to: to.0, msg })
                }
                Command::Resolved(r) => resolved = Some(r),
                Command::Log(_) => {}
            }
        }
        resolved
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
            Ev::ToPnc { from, msg } => {
                if self.machine(from).is_some_and(|m| m.alive) {
                    self.core(Event::Message {
                        from: ProxyId(from),
                        msg,
                    });
                }
            }
            Ev::ToProxy { to, msg } => self.deliver_to_proxy(to, msg),
            Ev::Arrive { viewer, proxy } => self.arrive(viewer, proxy),
            Ev::Ready {
                proxy,
                stream,
                epoch,
            } => self.ready(proxy, stream, epoch),
            Ev::Heartbeat { proxy } => self.heartbeat(proxy),
            Ev::Tick => {
                self.core(Event::Tick);
                self.at(self.cfg.core.tick_micros(), Ev::Tick);
            }
            Ev::Crash { proxy } => self.crash(proxy),
            Ev::Reresolve { viewer } => {
                if self.viewers[viewer as usize].state != State::Gone {
                    self.resolve(viewer);
                }
            }
            Ev::Sample => {
                self.r.series.push(Sample {
                    t_s: self.now as f64 / 1e6,
                    viewers: self.attached,
                    waiting: self.waiting,
                    active_proxies: self.on_machines,
                    rejected: self.r.rejected,
                });
                self.at(self.cfg.sample_us.max(1), Ev::Sample);
            }
        }
    }

    fn machine(&self, id: u32) -> Option<&Machine> {
        self.by_id.get(&id).map(|&i| &self.machines[i])
    }

    fn machine_ix(&self, id: u32) -> Option<usize> {
        self.by_id.get(&id).copied()
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
        });
        self.resolve(v);
    }

    /// `GET /resolve/{stream}` ([0033]): the core names a proxy or refuses.
    fn resolve(&mut self, v: u32) {
        let (stream, region) = {
            let x = &self.viewers[v as usize];
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
                    },
                );
            }
            None => {
                self.r.rejected += 1;
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

    fn arrive(&mut self, v: u32, proxy: u32) {
        if self.viewers[v as usize].state != State::Connecting {
            return; // left meanwhile
        }
        let stream = self.viewers[v as usize].stream;
        let Some(mi) = self.machine_ix(proxy) else {
            return;
        };
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
            Some(s) => {
                let ready = self.now >= s.ready_at;
                self.attach(v, mi, ready);
            }
        }
    }

    /// The viewer is connected to machine `mi` and its LOGIN goes out; it receives at once if
    /// the stream is `ready` there, else it waits for the activation to finish.
    fn attach(&mut self, v: u32, mi: usize, ready: bool) {
        let stream = self.viewers[v as usize].stream;
        let m = &mut self.machines[mi];
        let Some(s) = m.streams.get_mut(&stream) else {
            return;
        };
        s.viewers.push(v);
        let pos = (s.viewers.len() - 1) as u32;
        m.connections += 1;
        if m.connections > m.capacity {
            self.r.overloaded_logins += 1;
            self.r.peak_overload = self
                .r
                .peak_overload
                .max(u64::from(m.connections - m.capacity));
        }
        let id = m.id;
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
        let name = self.trace.streams[stream as usize].clone();
        self.at(
            self.cfg.control_delay_us,
            Ev::ToPnc {
                from: id,
                msg: ProxyMsg::Login {
                    stream: name,
                    child: Child::Viewer,
                },
            },
        );
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

    /// Takes a connected viewer off its machine; `tell` sends the LOGOFF (a crashed machine
    /// tells nothing).
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
            let name = self.trace.streams[stream as usize].clone();
            self.at(
                self.cfg.control_delay_us,
                Ev::ToPnc {
                    from: proxy,
                    msg: ProxyMsg::Logoff {
                        stream: name,
                        child: Child::Viewer,
                    },
                },
            );
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

    fn heartbeat(&mut self, proxy: u32) {
        let Some(mi) = self.machine_ix(proxy) else {
            return;
        };
        if !self.machines[mi].alive {
            return;
        }
        let m = &self.machines[mi];
        let streams: Vec<StreamLoad> = m
            .streams
            .iter()
            .map(|(&s, sv)| StreamLoad {
                stream: self.trace.streams[s as usize].clone(),
                viewers: sv.viewers.len() as u32,
                child_proxies: 0,
                bits_per_sec: sv.viewers.len() as u64 * self.cfg.bitrate_bps,
                login_rate: 0.0,
                logoff_rate: 0.0,
            })
            .collect();
        let msg = ProxyMsg::Heartbeat {
            streams,
            connections: m.connections,
            bits_per_sec: u64::from(m.connections) * self.cfg.bitrate_bps,
            rtts: vec![],
        };
        self.at(self.cfg.control_delay_us, Ev::ToPnc { from: proxy, msg });
        self.at(self.heartbeat_us, Ev::Heartbeat { proxy });
    }

    fn deliver_to_proxy(&mut self, to: u32, msg: PncMsg) {
        let Some(mi) = self.machine_ix(to) else {
            return;
        };
        if !self.machines[mi].alive {
            return;
        }
        match msg {
            PncMsg::Welcome { heartbeat_ms, .. } => {
                self.heartbeat_us = u64::from(heartbeat_ms.max(1)) * 1000;
                // Machines do not beat in step: spread the first beat over one interval.
                let first = self.rng.below(self.heartbeat_us as usize) as u64;
                self.at(first, Ev::Heartbeat { proxy: to });
            }
            PncMsg::Activate { stream, tier, .. } => {
                let Some(&s) = self.stream_ids.get(&stream) else {
                    return;
                };
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
                    },
                );
                if m.on_since.is_none() && !m.origin {
                    m.on_since = Some(self.now);
                    self.on_machines += 1;
                    self.r.peak_active_proxies = self.r.peak_active_proxies.max(self.on_machines);
                }
                self.at(
                    self.cfg.activation_delay_us,
                    Ev::Ready {
                        proxy: to,
                        stream: s,
                        epoch,
                    },
                );
            }
            PncMsg::SwitchToParent { .. } => self.r.parent_switches += 1,
            PncMsg::RedirectChildren { stream, to: target } => {
                let Some(&s) = self.stream_ids.get(&stream) else {
                    return;
                };
                let moving = self.take_viewers(mi, s, true);
                for v in moving {
                    self.r.viewer_migrations += 1;
                    self.at(
                        self.cfg.control_delay_us,
                        Ev::Arrive {
                            viewer: v,
                            proxy: target.id.0,
                        },
                    );
                }
            }
            PncMsg::Deactivate { stream } => {
                let Some(&s) = self.stream_ids.get(&stream) else {
                    return;
                };
                // The PNC has already written these viewers off: no LOGOFF for them.
                let orphans = self.take_viewers(mi, s, false);
                self.drop_stream(mi, s);
                self.r.deactivations += 1;
                for v in orphans {
                    self.r.viewer_migrations += 1;
                    self.at(self.cfg.reconnect_delay_us, Ev::Reresolve { viewer: v });
                }
            }
            PncMsg::StopAccepting { .. }
            | PncMsg::StartAccepting { .. }
            | PncMsg::MonitorList { .. }
            | PncMsg::Refused(_) => {}
        }
    }

    /// Every viewer of stream `s` connected to machine `mi`, taken off it (in state
    /// `Connecting`); `tell` sends their LOGOFFs.
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
            for v in lost {
                self.r.crashed_viewers += 1;
                self.r.viewer_migrations += 1;
                self.at(self.cfg.reconnect_delay_us, Ev::Reresolve { viewer: v });
            }
        }
        self.machines[mi].alive = false;
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
        let admitted = self.r.logins - self.r.rejected;
        self.r.migrations_per_viewer = if admitted > 0 {
            self.r.viewer_migrations as f64 / admitted as f64
        } else {
            0.0
        };
        self.r.simulated_s = self.now as f64 / 1e6;
        self.r.core_s = self.core_time.as_secs_f64();
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
            streams: HashMap::new(),
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

#[cfg(test)]
mod tests {
    use super::super::{Overlay, Shape};
    use super::*;

    fn config(seed: u64) -> SimConfig {
        SimConfig {
            seed,
            overlay: Overlay {
                regions: 2,
                tier_sizes: vec![2, 4, 20],
                capacity: 50,
                bits_per_sec: 10_000_000_000,
                origins: 1,
            },
            core: control::core::Config {
                delta_t_ms: 2_000,
                heartbeat_timeout_ms: 3_000,
                heartbeat_interval_ms: 500,
                ..control::core::Config::default()
            },
            bitrate_bps: 1_000_000,
            activation_delay_us: 500_000,
            control_delay_us: 10_000,
            reconnect_delay_us: 200_000,
            crashes: vec![],
            sample_us: 1_000_000,
            progress: false,
        }
    }

    fn flash(viewers: u64) -> Trace {
        Trace::generate(
            &Shape::Flash {
                viewers,
                ramp: 20.0,
                end: 40.0,
                leave: 5.0,
            },
            1,
            0.0,
            2,
            5,
        )
    }

    #[test]
    fn a_crowd_within_capacity_is_served_and_the_tree_unwinds() {
        let r = simulate(&config(1), &flash(1500));
        assert_eq!(r.logins, 1500);
        assert_eq!(r.rejected, 0, "{}", r.table());
        assert_eq!(r.peak_viewers, 1500);
        assert!(r.activations >= 1500 / 50, "{}", r.table());
        assert_eq!(
            r.activations, r.deactivations,
            "the tree unwinds when all left"
        );
        assert_eq!(r.series.last().map(|s| s.viewers), Some(0));
        assert!(r.proxy_seconds > 0.0 && r.core_events > 3000);
        assert_eq!(r.max_tier, 3);
    }

    #[test]
    fn the_same_seed_gives_the_same_run() {
        let a = simulate(&config(3), &flash(600));
        let b = simulate(&config(3), &flash(600));
        let figures = |r: &Report| {
            (
                r.rejected,
                r.delayed,
                r.activations,
                r.viewer_migrations,
                r.proxy_seconds.to_bits(),
                r.sim_events,
                r.core_events,
            )
        };
        assert_eq!(figures(&a), figures(&b));
    }

    #[test]
    fn more_viewers_than_the_overlay_holds_are_rejected_not_overloaded() {
        // 2 regions × 20 bottom machines × 50 connections = 2000 places.
        let r = simulate(&config(1), &flash(3000));
        assert!(r.rejected >= 1000, "{}", r.table());
        assert!(r.peak_viewers <= 2000, "{}", r.table());
    }

    #[test]
    fn viewers_of_a_crashed_machine_resolve_again() {
        let mut cfg = config(2);
        // Relays 6..26 are region 0's bottom tier (after 2 in tier 1 and 4 in tier 2); the
        // first six of them crash mid-event, some of them serving viewers.
        cfg.crashes = (6..12).map(|k| (25_000_000, k)).collect();
        let r = simulate(&cfg, &flash(1000));
        assert!(r.crashed_viewers > 0, "{}", r.table());
        assert!(r.viewer_migrations >= r.crashed_viewers);
        assert_eq!(r.rejected, 0, "{}", r.table());
    }
}
