//! Login/logoff traces for the simulator: generated shapes (steady, diurnal, flash crowd with
//! its event end, several concurrent events) and a CSV format to replay recorded ones.
//!
//! CSV, one row per event, header optional: `t_ms,event,stream,region` where `event` is `login`
//! or `logoff`; `t_ms` may have a fraction. A logoff names no viewer: the simulator picks one
//! of the stream's viewers in that region at random (seeded), as a recorded CDN log would
//! only tell which audience shrank.

use super::rng::Rng;
use std::fmt::Write as _;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Login,
    Logoff,
}

/// One trace event; `stream` and `region` index the trace's name tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Row {
    pub at_us: u64,
    pub kind: Kind,
    pub stream: u32,
    pub region: u32,
}

/// The logins of one stream in one region (`Trace::audiences`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Audience {
    pub stream: u32,
    pub region: u32,
    pub logins: u64,
    pub first_us: u64,
    pub last_us: u64,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Trace {
    pub streams: Vec<String>,
    pub regions: Vec<String>,
    /// Sorted by time (ties: logins first, then in generation or file order).
    pub rows: Vec<Row>,
}

/// A generated shape. Times in seconds.
#[derive(Clone, Debug, PartialEq)]
pub enum Shape {
    /// Poisson arrivals at `rate` per second for `duration`; each viewer watches an
    /// exponentially distributed time of mean `watch`.
    Steady {
        rate: f64,
        watch: f64,
        duration: f64,
    },
    /// Arrivals whose rate follows a day: `mean_rate × (1 + amplitude × sin(2πt/period))`
    /// (thinning of a Poisson process), exponential watch times, for `duration`.
    Diurnal {
        mean_rate: f64,
        amplitude: f64,
        period: f64,
        watch: f64,
        duration: f64,
    },
    /// A live event: `viewers` log in within `ramp` (uniformly: the flat top of a flash
    /// crowd), stay, and all log off within `leave` once the event ends at `end`.
    Flash {
        viewers: u64,
        ramp: f64,
        end: f64,
        leave: f64,
    },
}

impl Trace {
    /// `events` concurrent streams (named `event0`, `event1`, …), each following `shape`,
    /// started `stagger` seconds apart, viewers spread evenly over `regions` regions.
    pub fn generate(shape: &Shape, events: u32, stagger: f64, regions: u32, seed: u64) -> Trace {
        let mut rng = Rng::new(seed);
        let regions = regions.max(1);
        let mut rows = Vec::new();
        let us = |s: f64| (s.max(0.0) * 1e6) as u64;
        for e in 0..events.max(1) {
            let offset = f64::from(e) * stagger;
            let viewer = |rows: &mut Vec<Row>, rng: &mut Rng, login: f64, logoff: f64| {
                let region = rng.below(regions as usize) as u32;
                rows.push(Row {
                    at_us: us(offset + login),
                    kind: Kind::Login,
                    stream: e,
                    region,
                });
                rows.push(Row {
                    at_us: us(offset + logoff.max(login)),
                    kind: Kind::Logoff,
                    stream: e,
                    region,
                });
            };
            match *shape {
                Shape::Steady {
                    rate,
                    watch,
                    duration,
                } => {
                    let mut t = 0.0;
                    loop {
                        t += rng.exp(1.0 / rate.max(1e-9));
                        if t >= duration {
                            break;
                        }
                        let w = rng.exp(watch);
                        viewer(&mut rows, &mut rng, t, (t + w).min(duration));
                    }
                }
                Shape::Diurnal {
                    mean_rate,
                    amplitude,
                    period,
                    watch,
                    duration,
                } => {
                    let peak = mean_rate * (1.0 + amplitude.abs());
                    let mut t = 0.0;
                    loop {
                        t += rng.exp(1.0 / peak.max(1e-9));
                        if t >= duration {
                            break;
                        }
                        let rate = mean_rate
                            * (1.0 + amplitude * (std::f64::consts::TAU * t / period).sin());
                        if rng.unit() * peak < rate {
                            let w = rng.exp(watch);
                            viewer(&mut rows, &mut rng, t, (t + w).min(duration));
                        }
                    }
                }
                Shape::Flash {
                    viewers,
                    ramp,
                    end,
                    leave,
                } => {
                    for _ in 0..viewers {
                        let login = rng.unit() * ramp;
                        let logoff = end + rng.unit() * leave;
                        viewer(&mut rows, &mut rng, login, logoff);
                    }
                }
            }
        }
        // Stable, by time then kind: a CSV written from this trace reads back identical.
        rows.sort_by_key(|r| (r.at_us, r.kind));
        Trace {
            streams: (0..events.max(1)).map(|e| format!("event{e}")).collect(),
            regions: (0..regions).map(|r| format!("r{r}")).collect(),
            rows,
        }
    }

    /// Parses the CSV format of the module docs.
    pub fn from_csv(text: &str) -> Result<Trace, String> {
        let mut t = Trace::default();
        let intern = |names: &mut Vec<String>, n: &str| -> u32 {
            match names.iter().position(|x| x == n) {
                Some(i) => i as u32,
                None => {
                    names.push(n.to_string());
                    (names.len() - 1) as u32
                }
            }
        };
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || (i == 0 && line.starts_with("t_ms")) {
                continue;
            }
            let f: Vec<&str> = line.split(',').map(str::trim).collect();
            let [ms, ev, stream, region] = f[..] else {
                return Err(format!("line {}: want t_ms,event,stream,region", i + 1));
            };
            let ms: f64 = ms
                .parse()
                .map_err(|_| format!("line {}: bad time {ms:?}", i + 1))?;
            if !ms.is_finite() || ms < 0.0 {
                return Err(format!("line {}: time {ms} is not a time", i + 1));
            }
            let kind = match ev {
                "login" => Kind::Login,
                "logoff" => Kind::Logoff,
                _ => return Err(format!("line {}: event {ev:?} is not login/logoff", i + 1)),
            };
            if stream.is_empty() || region.is_empty() {
                return Err(format!("line {}: empty stream or region", i + 1));
            }
            let row = Row {
                at_us: (ms * 1000.0).round() as u64,
                kind,
                stream: intern(&mut t.streams, stream),
                region: intern(&mut t.regions, region),
            };
            t.rows.push(row);
        }
        t.rows.sort_by_key(|r| (r.at_us, r.kind));
        Ok(t)
    }

    pub fn to_csv(&self) -> String {
        let mut out = String::from("t_ms,event,stream,region\n");
        for r in &self.rows {
            let _ = writeln!(
                out,
                "{:.3},{},{},{}",
                r.at_us as f64 / 1000.0,
                match r.kind {
                    Kind::Login => "login",
                    Kind::Logoff => "logoff",
                },
                self.streams[r.stream as usize],
                self.regions[r.region as usize]
            );
        }
        out
    }

    /// Each stream's audience in each region, as an operator would announce it ahead of the
    /// event ([0033]): how many log in, from when, until when. Ordered by (stream, region).
    pub fn audiences(&self) -> Vec<Audience> {
        let mut by: std::collections::BTreeMap<(u32, u32), Audience> = Default::default();
        for r in self.rows.iter().filter(|r| r.kind == Kind::Login) {
            let a = by.entry((r.stream, r.region)).or_insert(Audience {
                stream: r.stream,
                region: r.region,
                logins: 0,
                first_us: r.at_us,
                last_us: r.at_us,
            });
            a.logins += 1;
            a.last_us = r.at_us;
        }
        by.into_values().collect()
    }

    pub fn logins(&self) -> u64 {
        self.rows.iter().filter(|r| r.kind == Kind::Login).count() as u64
    }

    /// Time of the last row.
    pub fn end_us(&self) -> u64 {
        self.rows.last().map_or(0, |r| r.at_us)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flash_crowd_has_every_login_in_the_ramp_and_every_logoff_after_the_end() {
        let shape = Shape::Flash {
            viewers: 1000,
            ramp: 60.0,
            end: 120.0,
            leave: 10.0,
        };
        let t = Trace::generate(&shape, 2, 30.0, 3, 1);
        assert_eq!(t.logins(), 2000);
        assert_eq!(t.rows.len(), 4000);
        for r in &t.rows {
            let off = if r.stream == 0 { 0 } else { 30_000_000 };
            match r.kind {
                Kind::Login => assert!(r.at_us >= off && r.at_us < off + 60_000_000),
                Kind::Logoff => assert!(r.at_us >= off + 120_000_000),
            }
            assert!(r.region < 3);
        }
        assert!(t.rows.windows(2).all(|w| w[0].at_us <= w[1].at_us));
        let aud = t.audiences();
        assert_eq!(aud.len(), 6);
        assert_eq!(aud.iter().map(|a| a.logins).sum::<u64>(), 2000);
        for a in &aud {
            let off = if a.stream == 0 { 0 } else { 30_000_000 };
            assert!(a.first_us >= off && a.first_us <= a.last_us);
            assert!(a.last_us < off + 60_000_000);
        }
    }

    #[test]
    fn steady_rate_and_watch_time_are_about_right_and_seeded() {
        let shape = Shape::Steady {
            rate: 100.0,
            watch: 5.0,
            duration: 100.0,
        };
        let a = Trace::generate(&shape, 1, 0.0, 1, 9);
        let b = Trace::generate(&shape, 1, 0.0, 1, 9);
        assert_eq!(a, b);
        let n = a.logins() as f64;
        assert!((n - 10_000.0).abs() < 500.0, "logins {n}");
    }

    #[test]
    fn diurnal_rate_follows_the_sine() {
        let shape = Shape::Diurnal {
            mean_rate: 100.0,
            amplitude: 0.8,
            period: 100.0,
            watch: 1.0,
            duration: 100.0,
        };
        let t = Trace::generate(&shape, 1, 0.0, 1, 4);
        let logins = |from: u64, to: u64| {
            t.rows
                .iter()
                .filter(|r| r.kind == Kind::Login && (from..to).contains(&(r.at_us / 1_000_000)))
                .count()
        };
        // The first half of the period is the high one, the second the low one.
        assert!(logins(0, 50) > 2 * logins(50, 100));
    }

    #[test]
    fn csv_round_trips_and_rejects_garbage() {
        let shape = Shape::Flash {
            viewers: 50,
            ramp: 1.0,
            end: 2.0,
            leave: 1.0,
        };
        let t = Trace::generate(&shape, 2, 0.5, 2, 3);
        let back = Trace::from_csv(&t.to_csv()).unwrap();
        assert_eq!(back.rows.len(), t.rows.len());
        assert_eq!(back.to_csv(), t.to_csv());
        for bad in [
            "1,login,s",
            "x,login,s,r",
            "1,join,s,r",
            "-5,login,s,r",
            "1,login,,r",
        ] {
            assert!(Trace::from_csv(bad).is_err(), "{bad}");
        }
    }
}
