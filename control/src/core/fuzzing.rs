//! Arbitrary event sequences for the core, from bytes: what the fuzz target `core_events`
//! (`fuzz/fuzz_targets/core_events.rs`) and a property test drive into a [`Coordinator`], as
//! a hostile or broken set of proxies with a valid token could (issue 7: the PNC must survive
//! every sequence and stay bounded).
//!
//! [`steps_from_bytes`] decodes bytes into at most [`MAX_STEPS`] steps: registrations (with
//! streams as after a PNC restart, naming arbitrary parents and children), every proxy message
//! with ids drawn from a small set (1 to 10, of which the configuration lists 1 to 8), heartbeat
//! counts up to `u32::MAX` and rates NaN or infinite, resolves, viewers, disconnections,
//! removals and time advancing. [`run`] drives them and checks after every step that the core
//! did not panic and that [`Coordinator::audit`] holds: the tree consistent and one tier per
//! link (so acyclic), the accounting exact, the state bounded by the input.

use super::*;

/// Steps decoded from one input at most.
pub const MAX_STEPS: usize = 512;

/// Proxy ids the steps use: 1 to `IDS`; the configuration lists 1 to `LISTED`.
const IDS: u32 = 10;
const LISTED: u32 = 8;
const STREAMS: [&str; 3] = ["s0", "s1", "s2"];
const SOURCES: [&str; 2] = ["A", "B"];
const REGIONS: [Option<&str>; 3] = [None, Some("r1"), Some("r2")];

/// One step of a fuzzed sequence.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// An event as the service would feed it.
    Event(Event),
    /// A viewer resolves `stream` and logs in where it is sent.
    ViewerJoins { stream: String },
    /// A viewer of `stream` leaves the `k`-th proxy (modulo) that has one.
    ViewerLeaves { stream: String, k: u8 },
    /// Time passes by this many milliseconds, then a tick.
    Advance { ms: u64 },
}

/// Reads bytes; 0 once they are exhausted.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }
    fn id(&mut self) -> ProxyId {
        ProxyId(1 + u32::from(self.byte()) % IDS)
    }
    fn stream(&mut self) -> String {
        STREAMS[usize::from(self.byte()) % STREAMS.len()].to_string()
    }
    fn count(&mut self) -> u32 {
        match self.byte() {
            255 => u32::MAX,
            254 => u32::MAX / 2,
            b => u32::from(b % 8),
        }
    }
    fn rate(&mut self) -> f32 {
        match self.byte() {
            255 => f32::NAN,
            254 => f32::INFINITY,
            253 => -1.0,
            252 => f32::MAX,
            b => f32::from(b) / 10.0,
        }
    }
    fn child(&mut self) -> Child {
        match self.byte() {
            b if b < 128 => Child::Viewer,
            b => Child::Proxy(ProxyId(1 + u32::from(b) % IDS)),
        }
    }
    fn rtts(&mut self) -> Vec<crate::protocol::Rtt> {
        (0..self.byte() % 3)
            .map(|_| crate::protocol::Rtt {
                peer: self.id(),
                micros: u32::from(self.byte()) * 1000,
            })
            .collect()
    }
}

/// The configuration a fuzzed sequence runs on: small and fast (ΔT 1 s, a 4 s heartbeat
/// timeout), ids 1 to 8 listed, the rest open to registration or not as `flags` says.
pub fn config_from(flags: u8) -> Config {
    let listed = (1..=LISTED)
        .map(|id| ProxySettings {
            id: ProxyId(id),
            region: None,
            coordinates: Some([f64::from(id % 3) * 20.0, 0.0]),
            tier: None,
            source_tiers: BTreeMap::new(),
            logical_connections: None,
            connections: None,
            bits_per_sec: None,
        })
        .collect();
    Config {
        delta_t_ms: 1_000,
        sp_ms: 5_000,
        heartbeat_timeout_ms: 4_000,
        heartbeat_interval_ms: 1_000,
        redundant_parents: 1 + u32::from(flags >> 1 & 1),
        placement: if flags & 4 == 0 {
            Placement::MostFree
        } else {
            Placement::LowestId
        },
        open_registration: flags & 1 == 1,
        proxies: listed,
        ..Config::default()
    }
}

/// Decode `data`: its first byte chooses the configuration ([`config_from`]), the rest are
/// steps, each a tag byte and its arguments (missing bytes read as 0).
pub fn steps_from_bytes(data: &[u8]) -> (Config, Vec<Step>) {
    let mut b = Bytes(data);
    let config = config_from(b.byte());
    let mut steps = Vec::new();
    while !b.0.is_empty() && steps.len() < MAX_STEPS {
        let tag = b.byte() % 17;
        let step = match tag {
            0 => {
                let proxy = b.id();
                let region = REGIONS[usize::from(b.byte()) % REGIONS.len()].map(str::to_string);
                let connections = 1 + u32::from(b.byte() % 6);
                let streams = (0..b.byte() % 3)
                    .map(|_| {
                        let stream = b.stream();
                        let flags = b.byte();
                        StreamState {
                            stream,
                            source: (flags & 1 == 1).then(|| SourceInfo {
                                source: SOURCES[usize::from(flags >> 1 & 1)].to_string(),
                                content_type: "video/mp2t".into(),
                                bitrate_bps: 0,
                            }),
                            tier: u32::from(flags >> 2 & 3),
                            parents: vec![b.id()],
                            children: (0..flags >> 4 & 1).map(|_| b.id()).collect(),
                            viewers: b.count(),
                            accepting: flags & 0x80 != 0,
                        }
                    })
                    .collect();
                Step::Event(Event::Register(Registration {
                    proxy,
                    name: format!("p{}", proxy.0),
                    data_addr: SocketAddr::from(([127, 0, 0, proxy.0 as u8], 8000)),
                    region,
                    capacity: Capacity {
                        connections,
                        bits_per_sec: 1_000_000_000,
                    },
                    streams,
                    rtts: b.rtts(),
                    // Agents and LOGIN-per-viewer proxies side by side (DECIDERS.md).
                    decides: b.byte() & 1 == 1,
                }))
            }
            1..=8 | 14 => {
                let from = b.id();
                let msg = match tag {
                    1 => ProxyMsg::Heartbeat {
                        streams: (0..b.byte() % 3)
                            .map(|_| StreamLoad {
                                stream: b.stream(),
                                viewers: b.count(),
                                child_proxies: b.count(),
                                bits_per_sec: 0,
                                login_rate: b.rate(),
                                logoff_rate: b.rate(),
                            })
                            .collect(),
                        connections: b.count(),
                        bits_per_sec: 0,
                        rtts: b.rtts(),
                    },
                    2 => ProxyMsg::StreamAnnounce {
                        stream: b.stream(),
                        source: SourceInfo {
                            source: SOURCES[usize::from(b.byte()) % SOURCES.len()].to_string(),
                            content_type: "video/mp2t".into(),
                            bitrate_bps: 0,
                        },
                    },
                    3 => ProxyMsg::StreamEnd { stream: b.stream() },
                    4 => ProxyMsg::Login {
                        stream: b.stream(),
                        child: b.child(),
                    },
                    5 => ProxyMsg::Logoff {
                        stream: b.stream(),
                        child: b.child(),
                    },
                    6 => ProxyMsg::Distribute { stream: b.stream() },
                    7 => ProxyMsg::Consolidate { stream: b.stream() },
                    8 => ProxyMsg::LinkDowngrade {
                        stream: b.stream(),
                        parent: b.id(),
                    },
                    _ => ProxyMsg::Hello(crate::protocol::Hello {
                        version: PROTOCOL_VERSION,
                        token: String::new(),
                        proxy: from,
                        name: String::new(),
                        data_addr: SocketAddr::from(([127, 0, 0, 1], 8000)),
                        region: None,
                        decides: false,
                        capacity: Capacity {
                            connections: 1,
                            bits_per_sec: 1,
                        },
                        streams: vec![],
                        rtts: vec![],
                    }),
                };
                Step::Event(Event::Message { from, msg })
            }
            9 => Step::Event(Event::Resolve {
                request: u64::from(b.byte()),
                stream: b.stream(),
                region: REGIONS[usize::from(b.byte()) % REGIONS.len()].map(str::to_string),
                client: None,
            }),
            10 => Step::ViewerJoins { stream: b.stream() },
            11 => Step::Advance {
                ms: u64::from(b.byte()) * 50,
            },
            12 => Step::Event(Event::Disconnected { proxy: b.id() }),
            13 => Step::Event(Event::Remove { proxy: b.id() }),
            15 => Step::Event(Event::Anticipate {
                stream: b.stream(),
                region: REGIONS[usize::from(b.byte()) % REGIONS.len()].map(str::to_string),
                viewers: u64::from(b.byte()) * 7,
                ramp_secs: f64::from(b.byte()) / 4.0,
            }),
            _ => Step::ViewerLeaves {
                stream: b.stream(),
                k: b.byte(),
            },
        };
        steps.push(step);
    }
    (config, steps)
}

/// Drive the steps of `data` into a new coordinator; panics (with the step) when an invariant
/// breaks. The entry point of the fuzz target and of the property test over bytes.
pub fn run(data: &[u8]) {
    let (config, steps) = steps_from_bytes(data);
    let mut core = Coordinator::new(config);
    let mut now = Time::from_secs(1);
    for (i, step) in steps.iter().enumerate() {
        now = now.plus_micros(1_000);
        let out = match step {
            Step::Event(e) => core.handle(e.clone(), now),
            Step::Advance { ms } => {
                now = now.plus_micros(ms * 1000);
                core.handle(Event::Tick, now)
            }
            Step::ViewerJoins { stream } => {
                let mut out = core.handle(
                    Event::Resolve {
                        request: 0,
                        stream: stream.clone(),
                        region: None,
                        client: None,
                    },
                    now,
                );
                let target = out.iter().find_map(|c| match c {
                    Command::Resolved(r) => r.target,
                    _ => None,
                });
                if let Some(t) = target {
                    out.extend(core.handle(
                        Event::Message {
                            from: t.id,
                            msg: ProxyMsg::Login {
                                stream: stream.clone(),
                                child: Child::Viewer,
                            },
                        },
                        now,
                    ));
                }
                out
            }
            Step::ViewerLeaves { stream, k } => {
                let with: Vec<ProxyId> = core
                    .stream_ids
                    .get(stream)
                    .and_then(|sx| core.streams.get(sx))
                    .map(|s| {
                        s.pairs
                            .iter()
                            .filter(|(_, p)| p.viewers > 0)
                            .map(|(&px, _)| core.pid(px))
                            .collect()
                    })
                    .unwrap_or_default();
                match with.get(usize::from(*k) % with.len().max(1)) {
                    Some(&from) => core.handle(
                        Event::Message {
                            from,
                            msg: ProxyMsg::Logoff {
                                stream: stream.clone(),
                                child: Child::Viewer,
                            },
                        },
                        now,
                    ),
                    None => Vec::new(),
                }
            }
        };
        if let Err(e) = core.audit().and_then(|()| core.bounded(i + 1, out.len())) {
            panic!("after step {i} ({step:?}): {e}");
        }
    }
}

impl Coordinator {
    /// The core's own invariants, after any event: every link between two active pairs one
    /// tier down and known at both ends (so the tree has no cycle), every pair in its tier's
    /// active set, each machine's connections the sum of its pairs' loads, nothing active on a
    /// crashed proxy, no more links awaiting a parent than pairs can have, each tier's sums for
    /// DISTRIBUTE those of a walk of its members.
    pub fn audit(&self) -> Result<(), String> {
        self.proxies.check_rooms()?;
        let mut conns: BTreeMap<Px, u64> = BTreeMap::new();
        // Placement reads a machine's streams for whether it is active for one.
        for (px, rec) in self.proxies.iter() {
            for sx in &rec.streams {
                if self.pair(*sx, px).is_none() {
                    return Err(format!("{} lists a stream it is not active for", rec.id));
                }
            }
        }
        for (&sx, s) in &self.streams {
            let name = &s.name;
            for (&px, p) in &s.pairs {
                let id = self.pid(px);
                *conns.entry(px).or_default() += u64::from(p.load());
                if !self.proxies[px].streams.contains(&sx) {
                    return Err(format!("{id} active for {name} but not on its machine"));
                }
                if !self.proxies[px].alive {
                    return Err(format!("{id} active for {name} but crashed"));
                }
                if p.tier == 0 {
                    if px != s.origin {
                        return Err(format!("{id} in tier 0 of {name} but not its origin"));
                    }
                    continue;
                }
                let in_tier = s
                    .tiers
                    .get(&(p.region, p.tier))
                    .is_some_and(|t| t.active.iter().any(|q| q == px));
                if !in_tier {
                    return Err(format!("{id} of {name} missing from its tier's active set"));
                }
                for &q in &p.parents {
                    let Some(qp) = s.pairs.get(&q) else {
                        return Err(format!("{id} of {name}: parent {} inactive", self.pid(q)));
                    };
                    if qp.tier + 1 != p.tier {
                        return Err(format!(
                            "{id} of {name} in tier {} under {} in tier {}",
                            p.tier,
                            self.pid(q),
                            qp.tier
                        ));
                    }
                    if !qp.children.contains(&px) && !qp.pending.contains(&px) {
                        return Err(format!("{id} of {name}: {} does not know it", self.pid(q)));
                    }
                }
                for &c in p.children.iter().chain(p.pending.iter()) {
                    if !s.pairs.get(&c).is_some_and(|cp| cp.parents.contains(&px)) {
                        return Err(format!("{id} of {name}: child {} not linked", self.pid(c)));
                    }
                }
            }
            for t in s.tiers.values() {
                if t.active.iter().any(|q| !s.pairs.contains_key(&q)) {
                    return Err(format!("an inactive proxy in a tier of {name}"));
                }
            }
            let awaiting: usize = s.awaiting_parent.values().map(Vec::len).sum();
            if awaiting > s.pairs.len() * self.config.redundant_parents.max(1) as usize {
                return Err(format!("{awaiting} links of {name} await a parent"));
            }
        }
        for (px, rec) in self.proxies.iter() {
            let held = conns.get(&px).copied().unwrap_or(0);
            if rec.alive && u64::from(rec.connections) != held {
                return Err(format!(
                    "{} holds {} connections, its pairs {held}",
                    rec.id, rec.connections
                ));
            }
        }
        self.check_tier_sums()
    }

    /// The state is bounded by the number of events `steps` (the last returned `commands`
    /// commands): streams, pairs, queued deadlines, re-registrations awaiting an origin, and the
    /// commands of one event.
    pub fn bounded(&self, steps: usize, commands: usize) -> Result<(), String> {
        let pairs: usize = self.streams.values().map(|s| s.pairs.len()).sum();
        let proxies = self.by_id.len();
        let bound = |what: &str, n: usize, max: usize| {
            if n > max {
                Err(format!("{what}: {n} > {max} after {steps} events"))
            } else {
                Ok(())
            }
        };
        bound("streams", self.streams.len(), 3 * steps)?;
        bound("pairs", pairs, proxies * self.streams.len())?;
        bound("queued deadlines", self.deadlines.len(), 8 * proxies + 8)?;
        let rebuilding: usize = self.pending_rebuild.values().map(Vec::len).sum();
        bound(
            "re-registrations awaiting an origin",
            rebuilding,
            3 * proxies,
        )?;
        bound(
            "commands of one event",
            commands,
            64 * (pairs + proxies + 4),
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_decode_into_bounded_steps() {
        let (config, steps) = steps_from_bytes(&[]);
        assert!(steps.is_empty() && !config.open_registration);
        // Flags 1: open registration. Then a Register of id 1 + 3 % 10 = 4, region r1,
        // capacity 3, no stream, no RTT, a LOGIN-per-viewer proxy; a viewer of s1; 100 ms; a
        // LOGIN naming proxy 10.
        let (config, steps) =
            steps_from_bytes(&[1, 0, 3, 1, 2, 0, 0, 0, 10, 1, 11, 2, 4, 0, 1, 0x89]);
        assert!(config.open_registration);
        assert!(matches!(
            &steps[0],
            Step::Event(Event::Register(r))
                if r.proxy == ProxyId(4) && r.region.as_deref() == Some("r1")
                    && r.capacity.connections == 3 && r.streams.is_empty() && !r.decides
        ));
        assert_eq!(
            steps[1],
            Step::ViewerJoins {
                stream: "s1".into()
            }
        );
        assert_eq!(steps[2], Step::Advance { ms: 100 });
        assert_eq!(
            steps[3],
            Step::Event(Event::Message {
                from: ProxyId(1),
                msg: ProxyMsg::Login {
                    stream: "s1".into(),
                    child: Child::Proxy(ProxyId(8)),
                },
            })
        );
        assert_eq!(steps.len(), 4);
        let long = vec![10u8; 4 * MAX_STEPS];
        assert_eq!(steps_from_bytes(&long).1.len(), MAX_STEPS);
    }

    /// The committed seeds of the fuzz target are [`seeds`]; `VAN_WRITE_FUZZ_SEEDS=1` rewrites
    /// them.
    #[test]
    fn the_committed_seeds_are_these() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/core_events");
        let write = std::env::var_os("VAN_WRITE_FUZZ_SEEDS").is_some();
        if write {
            std::fs::create_dir_all(&dir).unwrap();
        }
        for (name, data) in seeds() {
            let path = dir.join(name);
            if write {
                std::fs::write(&path, &data).unwrap();
            }
            let committed = std::fs::read(&path)
                .unwrap_or_else(|e| panic!("{}: {e} (VAN_WRITE_FUZZ_SEEDS=1)", path.display()));
            assert_eq!(committed, data, "{name}");
            run(&data);
        }
    }

    /// Seeds for the fuzzer: a figure-2-like network that grows and shrinks, and a hostile one.
    fn seeds() -> Vec<(&'static str, Vec<u8>)> {
        let register = |id: u8, cap: u8, rtt_ms: u8| vec![0, id - 1, 0, cap - 1, 0, 1, 0, rtt_ms];
        let mut grow = vec![0u8];
        grow.extend(register(1, 6, 0));
        for (id, ms) in [
            (2, 10),
            (3, 10),
            (4, 30),
            (5, 30),
            (6, 50),
            (7, 50),
            (8, 50),
        ] {
            grow.extend(register(id, 3, ms));
        }
        grow.extend([2, 0, 0, 0]); // P1 announces s0 of source A
        for _ in 0..9 {
            grow.extend([10, 0, 11, 2]); // a viewer of s0, 100 ms
        }
        for k in 0..6 {
            grow.extend([15, 0, k, 11, 40]); // a viewer leaves, 2 s
        }
        grow.extend([6, 5, 0, 7, 3, 0, 8, 6, 0, 3, 11, 100]);
        let mut hostile = grow.clone();
        hostile[0] = 1; // open registration
        hostile.extend([4, 6, 0, 0x80 + 3]); // P7 logs in P2, far above it
        hostile.extend([1, 6, 1, 0, 255, 0, 254, 255, 255, 0]); // P7: u32::MAX viewers, NaN
        hostile.extend([0, 9, 0, 2, 1, 0, 0x18, 4, 5, 1, 0]); // P10: s0 in tier 2 under P5
        hostile.extend([13, 1, 11, 200, 1, 1, 0, 0, 0]); // P2 removed; 10 s; P2 speaks
        hostile.extend([8, 7, 0, 1, 5, 5, 0, 0x80 + 6, 14, 4, 3, 0]);
        vec![("grow_and_shrink", grow), ("hostile", hostile)]
    }
}
