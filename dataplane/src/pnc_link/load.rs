//! The load the heartbeats carry, measured ([0047]): machine-wide connections and bits/s, and
//! bits/s per stream, from the relay's counters sampled at each heartbeat interval.
//!
//! The relay counts bytes sent per core and bytes received per stream, not bytes sent per
//! stream; a stream's sinks all get the same bytes, so its outgoing rate is its incoming rate
//! times its sinks (viewers and child proxies).

use std::sync::atomic::Ordering;

use std::collections::HashMap;

use control::agent::Input;

use crate::reactor::Shared;

/// The counters at one moment.
#[derive(Clone, Debug, PartialEq)]
pub struct Counters {
    /// Monotonic microseconds.
    pub at_us: u64,
    /// Open connections of the data port, all kinds.
    pub connections: u32,
    /// Bytes sent by every core since start-up.
    pub bytes_out: u64,
    pub streams: Vec<StreamCounters>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct StreamCounters {
    pub name: String,
    /// Bytes received for the stream since it started.
    pub bytes_in: u64,
    /// Viewers and child proxies now.
    pub sinks: u64,
}

/// The relay's counters now.
pub fn counters(shared: &Shared) -> Counters {
    Counters {
        at_us: shared.now_us(),
        connections: u32::try_from(shared.connections.load(Ordering::Relaxed)).unwrap_or(u32::MAX),
        bytes_out: shared
            .metrics
            .iter()
            .map(|m| m.bytes_out.load(Ordering::Relaxed))
            .sum(),
        streams: shared
            .streams
            .snapshot()
            .iter()
            .map(|s| StreamCounters {
                name: s.name.clone(),
                bytes_in: s.bytes_in.load(Ordering::Relaxed),
                sinks: s.viewers.load(Ordering::Relaxed) + s.van_viewers.load(Ordering::Relaxed),
            })
            .collect(),
    }
}

/// Turns successive [`Counters`] into rates.
#[derive(Debug, Default)]
pub struct LoadMeter {
    last: Option<(u64, u64, HashMap<String, u64>)>,
}

impl LoadMeter {
    /// The agent's inputs for a new sample: `MachineLoad`, and `StreamBits` for every stream
    /// with sinks. The first sample has no rate yet (0 bits/s).
    pub fn sample(&mut self, now: Counters) -> Vec<Input> {
        let previous = self.last.take();
        let seconds = previous
            .as_ref()
            .map_or(0.0, |(at, _, _)| now.at_us.saturating_sub(*at) as f64 / 1e6);
        let rate = |bytes: u64| -> u64 {
            if seconds > 0.0 {
                (bytes as f64 * 8.0 / seconds) as u64
            } else {
                0
            }
        };
        let out = previous
            .as_ref()
            .map_or(0, |(_, bytes, _)| now.bytes_out.saturating_sub(*bytes));
        let mut inputs = vec![Input::MachineLoad {
            connections: now.connections,
            bits_per_sec: rate(out),
        }];
        for s in &now.streams {
            if s.sinks == 0 {
                continue;
            }
            // A stream not seen at the last sample started since: no rate yet.
            let before = previous
                .as_ref()
                .and_then(|(_, _, m)| m.get(&s.name).copied())
                .unwrap_or(s.bytes_in);
            inputs.push(Input::StreamBits {
                stream: s.name.clone(),
                bits_per_sec: rate(s.bytes_in.saturating_sub(before)).saturating_mul(s.sinks),
            });
        }
        let by_name = now
            .streams
            .into_iter()
            .map(|s| (s.name, s.bytes_in))
            .collect();
        self.last = Some((now.at_us, now.bytes_out, by_name));
        inputs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(us: u64, bytes_out: u64, streams: &[(&str, u64, u64)]) -> Counters {
        Counters {
            at_us: us,
            connections: 5,
            bytes_out,
            streams: streams
                .iter()
                .map(|&(n, b, s)| StreamCounters {
                    name: n.into(),
                    bytes_in: b,
                    sinks: s,
                })
                .collect(),
        }
    }

    #[test]
    fn rates_come_from_the_difference_of_two_samples() {
        let mut m = LoadMeter::default();
        assert_eq!(
            m.sample(at(0, 1000, &[("a", 500, 2), ("idle", 0, 0)])),
            vec![
                Input::MachineLoad {
                    connections: 5,
                    bits_per_sec: 0
                },
                Input::StreamBits {
                    stream: "a".into(),
                    bits_per_sec: 0
                }
            ]
        );
        // Half a second later: 125,000 bytes out, "a" received 25,000 bytes for 2 sinks, "b" is new.
        assert_eq!(
            m.sample(at(
                500_000,
                126_000,
                &[("a", 25_500, 2), ("b", 9_000, 1), ("idle", 0, 0)]
            )),
            vec![
                Input::MachineLoad {
                    connections: 5,
                    bits_per_sec: 2_000_000
                },
                Input::StreamBits {
                    stream: "a".into(),
                    bits_per_sec: 800_000
                },
                Input::StreamBits {
                    stream: "b".into(),
                    bits_per_sec: 0
                }
            ]
        );
    }

    #[test]
    fn counters_going_back_or_time_standing_still_give_no_rate() {
        let mut m = LoadMeter::default();
        m.sample(at(1_000_000, 5000, &[("a", 500, 1)]));
        let inputs = m.sample(at(1_000_000, 4000, &[("a", 100, 1)]));
        assert_eq!(
            inputs,
            vec![
                Input::MachineLoad {
                    connections: 5,
                    bits_per_sec: 0
                },
                Input::StreamBits {
                    stream: "a".into(),
                    bits_per_sec: 0
                }
            ]
        );
    }
}
