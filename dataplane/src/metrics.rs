//! Counters of the relay. Each core owns one [`CoreMetrics`] of relaxed atomics it alone writes;
//! the control thread reads them all when /metrics is scraped. No locks on the hot path.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::stream::{Registry as Streams, StreamState};

/// Why a connection was refused or closed early.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum Reject {
    Malformed = 0,
    HeadTooLarge,
    Unauthorized,
    Conflict,
    NotFound,
    MethodNotAllowed,
    HeaderTimeout,
    TooManyConnections,
    Other,
}

impl Reject {
    pub const ALL: [Reject; 9] = [
        Reject::Malformed,
        Reject::HeadTooLarge,
        Reject::Unauthorized,
        Reject::Conflict,
        Reject::NotFound,
        Reject::MethodNotAllowed,
        Reject::HeaderTimeout,
        Reject::TooManyConnections,
        Reject::Other,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Reject::Malformed => "malformed",
            Reject::HeadTooLarge => "head_too_large",
            Reject::Unauthorized => "unauthorized",
            Reject::Conflict => "conflict",
            Reject::NotFound => "not_found",
            Reject::MethodNotAllowed => "method_not_allowed",
            Reject::HeaderTimeout => "header_timeout",
            Reject::TooManyConnections => "too_many_connections",
            Reject::Other => "other",
        }
    }
}

#[derive(Default)]
pub struct CoreMetrics {
    pub viewers: AtomicI64,
    /// Viewers sharing the core's send budget at the last tick: those whose send is not stuck
    /// in a full socket (`Pace::viewers`).
    pub pacing_viewers: AtomicI64,
    pub van_viewers: AtomicI64,
    pub sources: AtomicI64,
    pub connections: AtomicI64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub frames_published: AtomicU64,
    pub blocks_published: AtomicU64,
    pub viewers_skipped: AtomicU64,
    pub viewers_dropped: AtomicU64,
    pub sends_zc: AtomicU64,
    pub sends_plain: AtomicU64,
    pub zc_fallbacks: AtomicU64,
    pub wakeups: AtomicU64,
    pub viewers_handed_off: AtomicU64,
    /// Sources this reactor handed to another between two reads (`--ingest-thread`).
    pub sources_moved: AtomicU64,
    /// Timer ticks (100 ms) the core held small sends for a flash crowd on a busy host
    /// (`join_rate`).
    pub flash_crowd_ticks: AtomicU64,
    pub ingest_paused: AtomicU64,
    /// Parent connections that failed or ended while their order stood.
    pub parents_lost: AtomicU64,
    /// Frames from parents dropped as copies of frames the stream has ([0044]).
    pub parent_duplicates: AtomicU64,
    /// Jumps ahead taken on frames from parents, and the frames they skipped.
    pub parent_jumps: AtomicU64,
    pub parent_frames_missed: AtomicU64,
    pub rejected: [AtomicU64; 9],
}

impl CoreMetrics {
    pub fn add(&self, c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    pub fn reject(&self, why: Reject) {
        self.rejected[why as usize].fetch_add(1, Ordering::Relaxed);
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CoreLabel {
    core: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RejectLabel {
    core: String,
    reason: &'static str,
}

/// Prometheus text of every core's counters and the pool.
pub fn render_prometheus(
    cores: &[CoreMetrics],
    pool_in_use: usize,
    pool_total: usize,
    block_size: usize,
) -> String {
    let mut reg = Registry::with_prefix("van_dataplane");
    let gauge = |reg: &mut Registry, name: &str, help: &str, f: &dyn Fn(&CoreMetrics) -> i64| {
        let fam = Family::<CoreLabel, Gauge>::default();
        for (i, c) in cores.iter().enumerate() {
            fam.get_or_create(&CoreLabel {
                core: i.to_string(),
            })
            .set(f(c));
        }
        reg.register(name, help, fam);
    };
    gauge(&mut reg, "viewers", "Connected plain viewers", &|c| {
        c.viewers.load(Ordering::Relaxed)
    });
    gauge(&mut reg, "van_viewers", "Connected VAN viewers", &|c| {
        c.van_viewers.load(Ordering::Relaxed)
    });
    gauge(
        &mut reg,
        "pacing_viewers",
        "Viewers sharing the core's send budget (those whose send is not stuck in a full socket)",
        &|c| c.pacing_viewers.load(Ordering::Relaxed),
    );
    gauge(&mut reg, "sources", "Connected sources", &|c| {
        c.sources.load(Ordering::Relaxed)
    });
    gauge(&mut reg, "connections", "Open data connections", &|c| {
        c.connections.load(Ordering::Relaxed)
    });
    let counter = |reg: &mut Registry, name: &str, help: &str, f: &dyn Fn(&CoreMetrics) -> u64| {
        let fam = Family::<CoreLabel, Counter>::default();
        for (i, c) in cores.iter().enumerate() {
            fam.get_or_create(&CoreLabel {
                core: i.to_string(),
            })
            .inc_by(f(c));
        }
        reg.register(name, help, fam);
    };
    let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
    counter(
        &mut reg,
        "bytes_in",
        "Stream bytes received from sources",
        &|c| r(&c.bytes_in),
    );
    counter(&mut reg, "bytes_out", "Bytes sent to viewers", &|c| {
        r(&c.bytes_out)
    });
    counter(&mut reg, "frames_published", "Frames published", &|c| {
        r(&c.frames_published)
    });
    counter(&mut reg, "blocks_published", "Pool blocks filled", &|c| {
        r(&c.blocks_published)
    });
    counter(
        &mut reg,
        "viewers_skipped",
        "Plain viewers skipped to the live edge (lagged)",
        &|c| r(&c.viewers_skipped),
    );
    counter(
        &mut reg,
        "viewers_dropped",
        "VAN viewers disconnected for lagging",
        &|c| r(&c.viewers_dropped),
    );
    counter(&mut reg, "sends_zc", "Sends with send_zc", &|c| {
        r(&c.sends_zc)
    });
    counter(&mut reg, "sends_plain", "Plain sends", &|c| {
        r(&c.sends_plain)
    });
    counter(
        &mut reg,
        "zc_fallbacks",
        "Sockets switched from send_zc to plain send after the kernel reported a copy",
        &|c| r(&c.zc_fallbacks),
    );
    counter(&mut reg, "wakeups", "Cross-core wake-ups received", &|c| {
        r(&c.wakeups)
    });
    counter(
        &mut reg,
        "viewers_handed_off",
        "Viewers this core accepted and handed to a less loaded core",
        &|c| r(&c.viewers_handed_off),
    );
    counter(
        &mut reg,
        "sources_moved",
        "Sources this reactor handed to another between two reads (--ingest-thread)",
        &|c| r(&c.sources_moved),
    );
    counter(
        &mut reg,
        "flash_crowd_ticks",
        "100 ms ticks this core held small sends for their whole spacing, in a flash crowd on a busy host",
        &|c| r(&c.flash_crowd_ticks),
    );
    counter(
        &mut reg,
        "ingest_paused",
        "Times ingest waited for a free pool block",
        &|c| r(&c.ingest_paused),
    );
    counter(
        &mut reg,
        "parents_lost",
        "Parent connections that failed or ended while the stream was pulled",
        &|c| r(&c.parents_lost),
    );
    counter(
        &mut reg,
        "parent_duplicates",
        "Frames from parents dropped as copies of frames the stream has",
        &|c| r(&c.parent_duplicates),
    );
    counter(
        &mut reg,
        "parent_jumps",
        "Jumps ahead in a pulled stream (a parent could not resume it where it stopped)",
        &|c| r(&c.parent_jumps),
    );
    counter(
        &mut reg,
        "parent_frames_missed",
        "Frames a pulled stream skipped in its jumps",
        &|c| r(&c.parent_frames_missed),
    );
    let rej = Family::<RejectLabel, Counter>::default();
    for (i, c) in cores.iter().enumerate() {
        for why in Reject::ALL {
            rej.get_or_create(&RejectLabel {
                core: i.to_string(),
                reason: why.label(),
            })
            .inc_by(c.rejected[why as usize].load(Ordering::Relaxed));
        }
    }
    reg.register(
        "connections_rejected",
        "Connections refused or closed early, by reason",
        rej,
    );
    let used = Gauge::<i64>::default();
    used.set(pool_in_use as i64);
    reg.register("pool_blocks_in_use", "Pool blocks in use", used);
    let total = Gauge::<i64>::default();
    total.set(pool_total as i64);
    reg.register("pool_blocks", "Pool blocks in total", total);
    let bs = Gauge::<i64>::default();
    bs.set(block_size as i64);
    reg.register("pool_block_bytes", "Bytes per pool block", bs);
    let mut out = String::new();
    encode(&mut out, &reg).expect("writing to a String cannot fail");
    out
}

/// JSON of /status: streams, pool, cores (each with its role: `fanout`, or `ingest` for the
/// ingest thread, `ingest_core`).
pub fn render_status(
    streams: &Streams,
    cores: &[CoreMetrics],
    ingest_core: Option<usize>,
    pool_in_use: usize,
    pool_total: usize,
    block_size: usize,
) -> String {
    let list: Vec<serde_json::Value> = streams
        .snapshot()
        .iter()
        .map(|s| {
            serde_json::json!({
                "name": s.name,
                "content_type": s.content_type(),
                "mpegts": s.is_ts.load(Ordering::Relaxed),
                "next_seq": s.window.next_seq(),
                "first_seq": s.window.first_seq(),
                "blocks": s.window.blocks_held(),
                "viewers": s.viewers.load(Ordering::Relaxed),
                "van_viewers": s.van_viewers.load(Ordering::Relaxed),
                "bytes_in": s.bytes_in.load(Ordering::Relaxed),
                "source_connected": s.state() == StreamState::Live,
                "in_grace": s.state() == StreamState::Grace,
            })
        })
        .collect();
    let cores: Vec<serde_json::Value> = cores
        .iter()
        .enumerate()
        .map(|(i, c)| {
            serde_json::json!({
                "core": i,
                "role": if ingest_core == Some(i) { "ingest" } else { "fanout" },
                "viewers": c.viewers.load(Ordering::Relaxed),
                "van_viewers": c.van_viewers.load(Ordering::Relaxed),
                "sources": c.sources.load(Ordering::Relaxed),
                "connections": c.connections.load(Ordering::Relaxed),
                "bytes_out": c.bytes_out.load(Ordering::Relaxed),
            })
        })
        .collect();
    let mut out = serde_json::json!({
        "streams": list,
        "pool": {"blocks": pool_total, "in_use": pool_in_use, "block_size": block_size},
        "cores": cores,
    })
    .to_string();
    let _ = writeln!(out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_text_has_per_core_series() {
        let cores = [CoreMetrics::default(), CoreMetrics::default()];
        cores[1].bytes_out.fetch_add(42, Ordering::Relaxed);
        cores[0].reject(Reject::NotFound);
        let text = render_prometheus(&cores, 3, 10, 65536);
        assert!(text.contains("van_dataplane_bytes_out_total{core=\"1\"} 42"));
        assert!(text.contains(
            "van_dataplane_connections_rejected_total{core=\"0\",reason=\"not_found\"} 1"
        ));
        assert!(text.contains("van_dataplane_pool_blocks_in_use 3"));
    }
}
