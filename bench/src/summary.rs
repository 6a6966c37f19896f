//! The summary `viewers` and `fanout` print: one JSON object whose fields are a contract
//! (/work/briefs/vanbench-cli.md; every field always present, `null` when not measured), plus a
//! table for people.

use crate::source::SourceReport;
use crate::viewing::ClientKind;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write;

#[derive(Clone, Debug, Serialize)]
pub struct ConnectMs {
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct LatencyUs {
    pub p50: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

/// Each viewer's longest wait between two reads that brought records, over the whole run and
/// up to the window's end (so a viewer that never resumed shows its wait), across viewers.
#[derive(Clone, Debug, Serialize)]
pub struct GapMs {
    /// Viewers that received at least one record.
    pub viewers: u64,
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    /// Viewers asked for.
    pub viewers: usize,
    /// Viewers that got their `200` (stalled ones included).
    pub connected: usize,
    /// From the start of a viewer's connect to its `200`.
    pub connect_ms: ConnectMs,
    /// From the start of the run to the last `200`.
    pub all_connected_ms: f64,
    /// Payload bytes received over the whole run.
    pub bytes: u64,
    /// Aggregate payload bit rate over the measured window.
    pub delivered_bps: f64,
    /// Stream bit rate × viewers reading at the window's start; null if the rate is unknown.
    pub expected_bps: Option<f64>,
    pub delivered_ratio: Option<f64>,
    pub records: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub out_of_order: u64,
    pub corrupt: u64,
    /// VAN data frames received (0 for plain viewers).
    pub frames: u64,
    /// VAN data frames whose seq was not the previous plus one.
    pub seq_gaps: u64,
    /// Receive time − send time of every new record, whole run.
    pub latency_us: LatencyUs,
    /// This process's CPU over the measured window.
    pub self_cpu_s: f64,
    /// The relay's CPU over the measured window (`--relay-pid`).
    pub relay_cpu_s: Option<f64>,
    pub relay_cpu_s_per_gb: Option<f64>,
    /// The relay's VmRSS at the window's end.
    pub relay_rss_kib: Option<u64>,
    pub stalled: usize,
    // Beyond the contract:
    /// VAN viewers: the relay's timestamp on the frame that completed each record − the
    /// record's send time, i.e. how long a source's bytes waited before the relay read and
    /// published them (fan-out excluded); null for plain viewers.
    pub ingest_us: Option<LatencyUs>,
    pub failed: usize,
    /// Viewers whose stream ended (closed by the peer, end frame) before the run did.
    pub ended: usize,
    pub window_s: f64,
    pub window_bytes: u64,
    /// The relay's VmRSS before any viewer connected.
    pub relay_rss_before_kib: Option<u64>,
    /// (VmRSS once all viewers connected − before any connected) / connected viewers: the
    /// relay's user-space memory per viewer.
    pub relay_kib_per_viewer: Option<f64>,
    pub self_cpu_s_per_gb: Option<f64>,
    pub threads: usize,
    /// Which client the viewers behaved like (`shards` or `crowd`).
    pub client: ClientKind,
    /// Crowd client: whether its read buffers could be backed by transparent huge pages.
    pub client_huge_pages: bool,
    /// Why viewers failed, with counts.
    pub failures: BTreeMap<String, u64>,
    /// The source's report (fanout only).
    pub source: Option<SourceReport>,
    /// Per viewer, the longest time without a record (a relay above it dying, a stall); null
    /// when no viewer got a record.
    pub max_gap_ms: Option<GapMs>,
}

fn opt(x: Option<f64>, scale: f64, digits: usize) -> String {
    x.map(|v| format!("{:.*}", digits, v * scale))
        .unwrap_or_else(|| "-".into())
}

impl Summary {
    /// A human-readable table of the main figures.
    pub fn table(&self) -> String {
        let mut t = String::new();
        let mut row = |k: &str, v: String| {
            let _ = writeln!(t, "  {k:<28} {v}");
        };
        row(
            "viewers connected",
            format!(
                "{} / {} (failed {}, stalled {}, ended early {})",
                self.connected, self.viewers, self.failed, self.stalled, self.ended
            ),
        );
        row(
            "connect ms p50/p99/max",
            format!(
                "{:.1} / {:.1} / {:.1}",
                self.connect_ms.p50, self.connect_ms.p99, self.connect_ms.max
            ),
        );
        row(
            "all connected after",
            format!("{:.0} ms", self.all_connected_ms),
        );
        row(
            "delivered",
            format!(
                "{:.3} Gbit/s of {} Gbit/s expected (ratio {})",
                self.delivered_bps / 1e9,
                opt(self.expected_bps, 1e-9, 3),
                opt(self.delivered_ratio, 1.0, 4)
            ),
        );
        row(
            "records / lost / dup / ooo / corrupt",
            format!(
                "{} / {} / {} / {} / {}",
                self.records, self.lost, self.duplicated, self.out_of_order, self.corrupt
            ),
        );
        if self.frames > 0 {
            row(
                "VAN frames / seq gaps",
                format!("{} / {}", self.frames, self.seq_gaps),
            );
        }
        row(
            "latency ms p50/p99/p99.9/max",
            format!(
                "{:.3} / {:.3} / {:.3} / {:.3}",
                self.latency_us.p50 as f64 / 1e3,
                self.latency_us.p99 as f64 / 1e3,
                self.latency_us.p999 as f64 / 1e3,
                self.latency_us.max as f64 / 1e3
            ),
        );
        if let Some(i) = &self.ingest_us {
            row(
                "ingest ms p50/p99/p99.9/max",
                format!(
                    "{:.3} / {:.3} / {:.3} / {:.3}",
                    i.p50 as f64 / 1e3,
                    i.p99 as f64 / 1e3,
                    i.p999 as f64 / 1e3,
                    i.max as f64 / 1e3
                ),
            );
        }
        row(
            "relay CPU s (per GB)",
            format!(
                "{} ({})",
                opt(self.relay_cpu_s, 1.0, 2),
                opt(self.relay_cpu_s_per_gb, 1.0, 3)
            ),
        );
        row(
            "relay RSS KiB (per viewer)",
            format!(
                "{} ({})",
                self.relay_rss_kib
                    .map(|v| v.to_string())
                    .unwrap_or_else(|| "-".into()),
                opt(self.relay_kib_per_viewer, 1.0, 2)
            ),
        );
        row(
            "vanbench CPU s (per GB)",
            format!(
                "{:.2} ({}) on {} thread(s), window {:.1} s",
                self.self_cpu_s,
                opt(self.self_cpu_s_per_gb, 1.0, 3),
                self.threads,
                self.window_s
            ),
        );
        if let Some(s) = &self.source {
            row(
                "source",
                format!(
                    "{} records, {:.1} Mbit/s, ended by {}",
                    s.records,
                    s.rate_bps / 1e6,
                    s.ended_by
                ),
            );
        }
        if let Some(g) = &self.max_gap_ms {
            row(
                "longest gap ms p50/p99/max",
                format!(
                    "{:.1} / {:.1} / {:.1} over {} viewers",
                    g.p50, g.p99, g.max, g.viewers
                ),
            );
        }
        for (reason, n) in &self.failures {
            row("failure", format!("{n} × {reason}"));
        }
        t
    }
}
