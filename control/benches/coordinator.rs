//! Two cases, `cargo bench -p control --bench coordinator` runs both (`VAN_BENCH_CASE=figures`
//! or `VAN_BENCH_CASE=per_event` runs one):
//!
//! - `figures`, the coordinator targets of issue 3: one DISTRIBUTE decision with 10,000 proxies
//!   and 1,000 streams in < 1 ms; one heartbeat in < 2 µs; < 1 KiB per active (proxy, stream)
//!   pair. A program that prints figures, not a timed test. Memory is measured with a counting
//!   global allocator: the heap held by the coordinator after the trees are built, minus the
//!   heap held before any proxy was activated, divided by the number of active pairs.
//! - `per_event` (issue 6, criterion): 10,000 proxies, one stream whose bottom tier holds about
//!   1,000 active proxies at 10^5 viewers; the cost of one `resolve`, one LOGIN and one
//!   heartbeat at 10^3, 10^4 and 10^5 viewers resolved and logged in. The cost of one event must
//!   not grow with the viewers (acceptance: within 2x from 10^3 to 10^5).

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::VecDeque;
use std::hint::black_box;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion};

use control::core::*;
use control::protocol::*;

struct Counting;

static HELD: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to `System`, which upholds the GlobalAlloc
// contract; the counter only observes sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same layout, forwarded to the system allocator.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            HELD.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        HELD.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: `ptr` was allocated by `System` with this layout (through `alloc`).
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded unchanged; `ptr` came from `System` with `layout`.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            HELD.fetch_sub(layout.size(), Ordering::Relaxed);
            HELD.fetch_add(new_size, Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const SOURCES: u32 = 10;
const REGIONS: u32 = 10;
const VIEWERS_PER_STREAM: u32 = 40;

/// Sizes can be lowered for a quick run: `VAN_BENCH_PROXIES=1000 VAN_BENCH_STREAMS=100`.
fn param(name: &str, default: u32) -> u32 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn addr(id: u32) -> SocketAddr {
    SocketAddr::new(IpAddr::from(id.to_be_bytes()), 8000)
}

fn main() {
    let case = std::env::var("VAN_BENCH_CASE").unwrap_or_default();
    if case.is_empty() || case == "figures" {
        figures();
    }
    if case.is_empty() || case == "per_event" {
        let mut c = Criterion::default()
            .sample_size(10)
            .warm_up_time(Duration::from_millis(300))
            .measurement_time(Duration::from_secs(1))
            .configure_from_args();
        per_event(&mut c);
        c.final_summary();
    }
}

fn figures() {
    let proxies_n = param("VAN_BENCH_PROXIES", 10_000);
    let streams_n = param("VAN_BENCH_STREAMS", 1_000);
    let started = Instant::now();
    let phase = |what: &str| eprintln!("[{:>7.2} s] {what}", started.elapsed().as_secs_f64());
    // Proxies on a plane: the sources' origins (ids 1..=SOURCES) at the centre, relays around
    // them by region, at three distance bands (tiers).
    let mut config = Config {
        tier_spread_ms: 15.0,
        placement: std::env::var("VAN_BENCH_PLACEMENT")
            .map(|v| {
                if v == "lowest_id" {
                    Placement::LowestId
                } else {
                    Placement::MostFree
                }
            })
            .unwrap_or(Placement::MostFree),
        heartbeat_timeout_ms: u64::MAX / 4_000,
        ..Config::default()
    };
    for id in 1..=proxies_n {
        let (x, y) = if id <= SOURCES {
            (f64::from(id) * 0.1, 0.0)
        } else {
            let band = [10.0, 40.0, 70.0][((id / REGIONS) % 3) as usize];
            let angle = f64::from(id % REGIONS) / f64::from(REGIONS) * std::f64::consts::TAU;
            (band * angle.cos(), band * angle.sin())
        };
        config.proxies.push(ProxySettings {
            id: ProxyId(id),
            region: None,
            coordinates: Some([x, y]),
            tier: None,
            source_tiers: Default::default(),
            logical_connections: None,
            connections: None,
            bits_per_sec: None,
        });
    }
    let mut core = Coordinator::new(config);
    let mut now = Time::from_secs(1);
    for id in 1..=proxies_n {
        let region = if id <= SOURCES {
            "sources".to_string()
        } else {
            format!("r{}", id % REGIONS)
        };
        core.handle(
            Event::Register(Registration {
                proxy: ProxyId(id),
                name: format!("p{id}"),
                data_addr: addr(id),
                region: Some(region),
                capacity: Capacity {
                    connections: if id <= SOURCES { 100_000 } else { 50 },
                    bits_per_sec: 10_000_000_000,
                },
                streams: vec![],
                rtts: vec![],
                decides: false,
            }),
            now,
        );
    }
    for s in 0..streams_n {
        let origin = 1 + s % SOURCES;
        core.handle(
            Event::Message {
                from: ProxyId(origin),
                msg: ProxyMsg::StreamAnnounce {
                    stream: format!("s{s}"),
                    source: SourceInfo {
                        source: format!("src{origin}"),
                        content_type: "video/mp2t".into(),
                        bitrate_bps: 2_000_000,
                    },
                },
            },
            now,
        );
    }
    phase("registered and announced");
    let held_before = HELD.load(Ordering::Relaxed);
    // Build the trees: viewers of every stream in every region, arriving slowly.
    let mut bottom: Vec<(u32, ProxyId)> = Vec::new();
    for v in 0..VIEWERS_PER_STREAM {
        if v % 10 == 0 {
            phase(&format!("viewer round {v}"));
        }
        now = now.plus_micros(1_000_000);
        for s in 0..streams_n {
            let stream = format!("s{s}");
            let out = core.handle(
                Event::Resolve {
                    request: 0,
                    stream: stream.clone(),
                    region: Some(format!("r{}", (s + v) % REGIONS)),
                    client: None,
                },
                now,
            );
            let target = out.iter().find_map(|c| match c {
                Command::Resolved(r) => r.target,
                _ => None,
            });
            if target.is_none() && std::env::var("VAN_BENCH_DEBUG").is_ok() {
                for c in &out {
                    if let Command::Log(d) = c {
                        eprintln!("{v} {stream}: {:?} {:?} {}", d.rule, d.proxy, d.reason);
                    }
                }
            }
            if let Some(p) = target {
                core.handle(
                    Event::Message {
                        from: p.id,
                        msg: ProxyMsg::Login {
                            stream,
                            child: Child::Viewer,
                        },
                    },
                    now,
                );
                if v == VIEWERS_PER_STREAM - 1 {
                    bottom.push((s, p.id));
                }
            }
        }
    }
    phase("trees built");
    eprintln!("{:?}", core.counters());
    let topo = core.topology();
    let pairs: usize = topo
        .streams
        .iter()
        .flat_map(|s| {
            s.regions
                .iter()
                .flat_map(|r| r.tiers.iter().map(|t| t.active.len()))
        })
        .sum();
    drop(topo);
    let held_after = HELD.load(Ordering::Relaxed);
    let per_pair = (held_after - held_before) as f64 / pairs as f64;

    // Heartbeats: one stream's load each, the viewer count unchanged.
    let hb: Vec<Event> = bottom
        .iter()
        .cycle()
        .take(200_000)
        .map(|(s, p)| Event::Message {
            from: *p,
            msg: ProxyMsg::Heartbeat {
                streams: vec![StreamLoad {
                    stream: format!("s{s}"),
                    viewers: 0,
                    child_proxies: 0,
                    bits_per_sec: 0,
                    login_rate: 0.0,
                    logoff_rate: 0.0,
                }],
                connections: 0,
                bits_per_sec: 0,
                rtts: vec![],
            },
        })
        .collect();
    // Report the viewers the core already counts, so heartbeats change nothing.
    let hb: Vec<Event> = hb
        .into_iter()
        .map(|mut e| {
            if let Event::Message {
                from,
                msg: ProxyMsg::Heartbeat { streams, .. },
            } = &mut e
            {
                let s = &mut streams[0];
                s.viewers = core
                    .stream_states(*from)
                    .into_iter()
                    .find(|st| st.stream == s.stream)
                    .map_or(0, |st| st.viewers);
            }
            e
        })
        .collect();
    phase("heartbeats prepared");
    let n_hb = hb.len();
    now = now.plus_micros(1_000);
    let t0 = Instant::now();
    for e in hb {
        black_box(core.handle(e, now));
    }
    let hb_ns = t0.elapsed().as_nanos() as f64 / n_hb as f64;
    // Heartbeats as a loaded relay sends them (issue 12, item 13): every stream the proxy
    // carries, each with its viewer count one more or one less than the core holds and its
    // login and logoff rates changing from one heartbeat to the next, so every heartbeat moves
    // loads and predictors (and may make a proxy full or not).
    let mut proxies: Vec<ProxyId> = bottom.iter().map(|(_, p)| *p).collect();
    proxies.sort();
    proxies.dedup();
    let states: Vec<(ProxyId, Vec<StreamState>)> = proxies
        .iter()
        .map(|p| (*p, core.stream_states(*p)))
        .filter(|(_, st)| !st.is_empty())
        .collect();
    let real: Vec<Event> = (0..200_000usize)
        .map(|i| {
            let (p, st) = &states[i % states.len()];
            let round = (i / states.len()) as u32;
            let up = round.is_multiple_of(2);
            Event::Message {
                from: *p,
                msg: ProxyMsg::Heartbeat {
                    streams: st
                        .iter()
                        .map(|s| StreamLoad {
                            stream: s.stream.clone(),
                            viewers: if up {
                                s.viewers + 1
                            } else {
                                s.viewers.saturating_sub(1)
                            },
                            child_proxies: s.children.len() as u32,
                            bits_per_sec: 0,
                            login_rate: 0.5 + (round % 7) as f32 * 0.25,
                            logoff_rate: 0.25 + (round % 5) as f32 * 0.25,
                        })
                        .collect(),
                    connections: 0,
                    bits_per_sec: 0,
                    rtts: vec![],
                },
            }
        })
        .collect();
    let streams_per_hb =
        states.iter().map(|(_, st)| st.len()).sum::<usize>() as f64 / states.len() as f64;
    let n_real = real.len();
    let before = core.counters().clone();
    let mut real_times: Vec<u64> = Vec::with_capacity(n_real);
    for e in real {
        now = now.plus_micros(5);
        let t = Instant::now();
        black_box(core.handle(e, now));
        real_times.push(t.elapsed().as_nanos() as u64);
    }
    let real_mean = real_times.iter().sum::<u64>() as f64 / n_real as f64;
    let after = core.counters();
    let (hb_distributes, hb_activations) = (
        after.distributes - before.distributes,
        after.activations - before.activations,
    );
    real_times.sort_unstable();
    let real_p99 = real_times[(n_real - 1) * 99 / 100];

    phase("heartbeats done");
    // DISTRIBUTE: one per stream, from the proxy that took its last viewer.
    let mut times: Vec<u128> = Vec::new();
    let mut activations = 0;
    for (s, p) in &bottom {
        now = now.plus_micros(10);
        let e = Event::Message {
            from: *p,
            msg: ProxyMsg::Distribute {
                stream: format!("s{s}"),
            },
        };
        let t = Instant::now();
        let out = core.handle(e, now);
        times.push(t.elapsed().as_nanos());
        activations += out
            .iter()
            .filter(|c| {
                matches!(
                    c,
                    Command::Send {
                        msg: PncMsg::Activate { .. },
                        ..
                    }
                )
            })
            .count();
        black_box(out);
    }
    // The first decision runs cold (code and data not yet in cache or even paged in): reported
    // on its own, beside the warm ones' distribution.
    let first = times.remove(0) as f64 / 1000.0;
    let (slowest_at, _) = times
        .iter()
        .enumerate()
        .max_by_key(|(_, t)| **t)
        .unwrap_or((0, &0));
    times.sort();
    let pct = |q: f64| times[((times.len() - 1) as f64 * q) as usize] as f64 / 1000.0;

    println!(
        "coordinator bench: {proxies_n} proxies, {streams_n} streams, {SOURCES} sources, {REGIONS} regions"
    );
    println!(
        "placement: {:?}; active (proxy, stream) pairs: {pairs}",
        core.config().placement
    );
    println!(
        "memory: {:.0} bytes per active pair ({} KiB held for the trees; target < 1024)",
        per_pair,
        (held_after - held_before) / 1024
    );
    println!(
        "heartbeat: {real_mean:.0} ns per heartbeat (p99 {real_p99} ns) over {n_real} real ones, \
         {streams_per_hb:.1} streams each, loads and rates changing (target < 2000 ns); \
         they led to {hb_distributes} DISTRIBUTEs and {hb_activations} activations"
    );
    println!("  (heartbeats that change nothing: {hb_ns:.0} ns over {n_hb})");
    println!(
        "DISTRIBUTE: the first, cold decision {first:.1} µs; {} warm decisions after it ({} activations in all): median {:.1} µs, p99 {:.1} µs, max {:.1} µs (slowest #{}) (target < 1000 µs)",
        times.len(),
        activations,
        pct(0.5),
        pct(0.99),
        pct(1.0),
        slowest_at + 1
    );
}

/// The stream of the `per_event` case.
const STREAM: &str = "live";
/// Bottom-tier proxies take this many connections each: 10^5 viewers fill about 1,000.
const BOTTOM_CAPACITY: u32 = 100;
/// Tier-1 proxies (they feed the bottom tier).
const TIER1: u32 = 50;

/// 10,000 proxies in one region: the origin (id 1), `TIER1` proxies near it (tier 1), the rest
/// farther (the bottom tier, `BOTTOM_CAPACITY` connections each); one stream announced.
fn one_stream_network(proxies_n: u32) -> Coordinator {
    let mut config = Config {
        tier_spread_ms: 15.0,
        delta_t_ms: 1_000,
        heartbeat_timeout_ms: u64::MAX / 4_000,
        ..Config::default()
    };
    for id in 1..=proxies_n {
        let d = match id {
            1 => 0.0,
            _ if id <= 1 + TIER1 => 10.0,
            _ => 50.0,
        };
        let angle = f64::from(id) * 0.001;
        config.proxies.push(ProxySettings {
            id: ProxyId(id),
            region: None,
            coordinates: Some([d * angle.cos(), d * angle.sin()]),
            tier: None,
            source_tiers: Default::default(),
            logical_connections: None,
            connections: None,
            bits_per_sec: None,
        });
    }
    let mut core = Coordinator::new(config);
    let now = Time::from_secs(1);
    for id in 1..=proxies_n {
        let connections = match id {
            1 => 1_000_000,
            _ if id <= 1 + TIER1 => 2_000,
            _ => BOTTOM_CAPACITY,
        };
        core.handle(
            Event::Register(Registration {
                proxy: ProxyId(id),
                name: format!("p{id}"),
                data_addr: addr(id),
                region: Some("r".into()),
                capacity: Capacity {
                    connections,
                    bits_per_sec: 100_000_000_000,
                },
                streams: vec![],
                rtts: vec![],
                decides: false,
            }),
            now,
        );
    }
    core.handle(
        Event::Message {
            from: ProxyId(1),
            msg: ProxyMsg::StreamAnnounce {
                stream: STREAM.into(),
                source: SourceInfo {
                    source: "src".into(),
                    content_type: "video/mp2t".into(),
                    bitrate_bps: 2_000_000,
                },
            },
        },
        now,
    );
    core
}

fn resolve_event() -> Event {
    Event::Resolve {
        request: 0,
        stream: STREAM.into(),
        region: Some("r".into()),
        client: None,
    }
}

fn viewer_msg(from: ProxyId, login: bool) -> Event {
    let stream = STREAM.to_string();
    let child = Child::Viewer;
    Event::Message {
        from,
        msg: if login {
            ProxyMsg::Login { stream, child }
        } else {
            ProxyMsg::Logoff { stream, child }
        },
    }
}

fn resolved(out: &[Command]) -> Option<ProxyId> {
    out.iter().find_map(|c| match c {
        Command::Resolved(r) => r.target.map(|p| p.id),
        _ => None,
    })
}

/// The network of `one_stream_network`, its clock, and the viewers it logged in.
struct Level {
    core: Coordinator,
    now: Time,
    viewers: u64,
    /// Where each logged-in viewer is, oldest first.
    logged_in: VecDeque<ProxyId>,
    /// Resolves answered with no proxy (none expected).
    unresolved: u64,
}

impl Level {
    /// Resolve and log in viewers until `target`, one every `VAN_BENCH_ARRIVAL_US` (10 ms).
    fn grow_to(&mut self, target: u64) {
        let gap = u64::from(param("VAN_BENCH_ARRIVAL_US", 10_000));
        while self.viewers < target {
            self.now = self.now.plus_micros(gap);
            let out = self.core.handle(resolve_event(), self.now);
            if let Some(p) = resolved(&out) {
                self.core.handle(viewer_msg(p, true), self.now);
                self.logged_in.push_back(p);
            } else {
                self.unresolved += 1;
            }
            self.viewers += 1;
        }
    }

    fn tick(&mut self) -> Time {
        self.now = self.now.plus_micros(1);
        self.now
    }
}

/// Events are built in chunks before the clock starts: only `handle` is timed.
const CHUNK: u64 = 1_000;

fn per_event(c: &mut Criterion) {
    let proxies_n = param("VAN_BENCH_PROXIES", 10_000);
    let mut group = c.benchmark_group("per_event");
    for target in [1_000u64, 10_000, 100_000] {
        // A fresh network per level: the events of one level's measurements do not leak into
        // the next.
        let mut level = Level {
            core: one_stream_network(proxies_n),
            now: Time::from_secs(2),
            viewers: 0,
            logged_in: VecDeque::new(),
            unresolved: 0,
        };
        level.grow_to(target);
        let topo = level.core.topology();
        let bottom_active: usize = topo.streams[0].regions[0]
            .tiers
            .last()
            .map_or(0, |t| t.active.len());
        eprintln!(
            "per_event: {target} viewers ({} unresolved), {bottom_active} active proxies in the bottom tier, {} activations",
            level.unresolved,
            level.core.counters().activations
        );
        drop(topo);
        // A viewer arrives as in `grow_to`, one every `VAN_BENCH_ARRIVAL_US`: its resolve is
        // timed; it then connects (a LOGIN, untimed) and the oldest viewer leaves (untimed), so
        // the level stays put. A resolved viewer must show up: a resolve whose viewer never does
        // holds a reserved place until the proxy's next heartbeat, which this bench does not
        // send, so bare resolves would fill the tier with reservations and grow it. Nor may it
        // leave at once: a proxy whose load falls to zero goes idle ([0030], [0055]), so a
        // viewer in and out at each resolve retires every new proxy at its first viewer and
        // measures activation churn, not resolve.
        let gap = u64::from(param("VAN_BENCH_ARRIVAL_US", 10_000));
        group.bench_function(BenchmarkId::new("resolve", target), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    level.now = level.now.plus_micros(gap);
                    let now = level.now;
                    let e = resolve_event();
                    let t = Instant::now();
                    let out = black_box(level.core.handle(e, now));
                    total += t.elapsed();
                    match resolved(&out) {
                        Some(p) => {
                            level.core.handle(viewer_msg(p, true), now);
                            level.logged_in.push_back(p);
                            if let Some(old) = level.logged_in.pop_front() {
                                level.core.handle(viewer_msg(old, false), now);
                            }
                        }
                        None => {
                            if level.unresolved == 0 && std::env::var("VAN_BENCH_DEBUG").is_ok() {
                                eprintln!("first unanswered resolve: {out:?}");
                            }
                            level.unresolved += 1;
                        }
                    }
                }
                total
            })
        });
        // A viewer arrives as in `grow_to`: resolved (untimed), then its LOGIN (timed); the
        // oldest viewer logs off (untimed), so that the level stays where it is.
        group.bench_function(BenchmarkId::new("login", target), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    level.now = level.now.plus_micros(gap);
                    let now = level.now;
                    let Some(p) = resolved(&level.core.handle(resolve_event(), now)) else {
                        level.unresolved += 1;
                        continue;
                    };
                    let login = viewer_msg(p, true);
                    let t = Instant::now();
                    black_box(level.core.handle(login, now));
                    total += t.elapsed();
                    level.logged_in.push_back(p);
                    if let Some(old) = level.logged_in.pop_front() {
                        level.core.handle(viewer_msg(old, false), now);
                    }
                }
                total
            })
        });
        // Heartbeats of the active bottom proxies that change their load and rates: one viewer
        // more, then back to the count the core holds.
        let loads: Vec<(ProxyId, u32)> = {
            let topo = level.core.topology();
            topo.streams[0].regions[0]
                .tiers
                .last()
                .map(|t| t.active.iter().map(|a| (a.proxy, a.viewers)).collect())
                .unwrap_or_default()
        };
        group.bench_function(BenchmarkId::new("heartbeat", target), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                let mut done = 0u64;
                while done < iters {
                    let n = (iters - done).min(CHUNK);
                    let events: Vec<Event> = (done..done + n)
                        .map(|i| {
                            let (p, v) = loads[(i / 2) as usize % loads.len()];
                            let up = i % 2 == 0;
                            Event::Message {
                                from: p,
                                msg: ProxyMsg::Heartbeat {
                                    streams: vec![StreamLoad {
                                        stream: STREAM.into(),
                                        viewers: v + u32::from(up),
                                        child_proxies: 0,
                                        bits_per_sec: 0,
                                        login_rate: if up { 2.0 } else { 1.0 },
                                        logoff_rate: if up { 0.5 } else { 1.0 },
                                    }],
                                    connections: 0,
                                    bits_per_sec: 0,
                                    rtts: vec![],
                                },
                            }
                        })
                        .collect();
                    done += n;
                    let now = level.tick();
                    let t = Instant::now();
                    for e in events {
                        black_box(level.core.handle(e, now));
                    }
                    total += t.elapsed();
                }
                total
            })
        });
        let c = level.core.counters();
        eprintln!(
            "per_event: {target} viewers: {} resolves unanswered in all; {} DISTRIBUTEs, {} regroups, {} activations",
            level.unresolved, c.distributes, c.regroups, c.activations
        );
    }
    group.finish();
}
