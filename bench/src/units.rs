//! Parsing of the command line's quantities: bit rates, durations and connection rates.

use std::time::Duration;
use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
#[error("cannot read {what} from {input:?}: {hint}")]
pub struct UnitError {
    what: &'static str,
    input: String,
    hint: &'static str,
}

fn number_and_suffix(s: &str) -> (&str, &str) {
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    (&s[..split], s[split..].trim())
}

/// Bits per second from `8M`, `500k`, `1.5G`, `8000000` (SI multipliers; an optional trailing
/// `bit/s`, `bps` or `b` is accepted).
pub fn parse_bitrate(s: &str) -> Result<u64, UnitError> {
    let err = || UnitError {
        what: "a bit rate",
        input: s.to_string(),
        hint: "use e.g. 4M, 500k, 8000000",
    };
    let (num, suffix) = number_and_suffix(s.trim());
    let value: f64 = num.parse().map_err(|_| err())?;
    let lower = suffix.to_ascii_lowercase();
    let unit = lower
        .trim_end_matches("bit/s")
        .trim_end_matches("bps")
        .trim_end_matches('b');
    let mult = match unit {
        "" => 1.0,
        "k" => 1e3,
        "m" => 1e6,
        "g" => 1e9,
        _ => return Err(err()),
    };
    let bps = value * mult;
    if !(bps >= 1.0 && bps.is_finite()) {
        return Err(err());
    }
    Ok(bps as u64)
}

/// A duration from `10s`, `500ms`, `2m`, `1h`, or a plain number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, UnitError> {
    let err = || UnitError {
        what: "a duration",
        input: s.to_string(),
        hint: "use e.g. 10s, 500ms, 2m",
    };
    let (num, suffix) = number_and_suffix(s.trim());
    let value: f64 = num.parse().map_err(|_| err())?;
    let secs = match suffix {
        "" | "s" => value,
        "ms" => value / 1e3,
        "us" => value / 1e6,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(err()),
    };
    if !(secs >= 0.0 && secs.is_finite()) {
        return Err(err());
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Connections per second from `100/s`, `100`, `6000/m`.
pub fn parse_rate(s: &str) -> Result<f64, UnitError> {
    let err = || UnitError {
        what: "a connection rate",
        input: s.to_string(),
        hint: "use e.g. 500/s",
    };
    let (num, per) = match s.trim().split_once('/') {
        Some((n, p)) => (n.trim(), p.trim()),
        None => (s.trim(), "s"),
    };
    let value: f64 = num.parse().map_err(|_| err())?;
    let per_s = match per {
        "s" => value,
        "m" | "min" => value / 60.0,
        _ => return Err(err()),
    };
    if !(per_s > 0.0 && per_s.is_finite()) {
        return Err(err());
    }
    Ok(per_s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitrates() {
        assert_eq!(parse_bitrate("8M"), Ok(8_000_000));
        assert_eq!(parse_bitrate("500k"), Ok(500_000));
        assert_eq!(parse_bitrate("1.5G"), Ok(1_500_000_000));
        assert_eq!(parse_bitrate("4Mbit/s"), Ok(4_000_000));
        assert_eq!(parse_bitrate("123"), Ok(123));
        assert!(parse_bitrate("fast").is_err());
        assert!(parse_bitrate("0").is_err());
        assert!(parse_bitrate("4X").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn rates() {
        assert_eq!(parse_rate("100/s"), Ok(100.0));
        assert_eq!(parse_rate("50"), Ok(50.0));
        assert_eq!(parse_rate("600/m"), Ok(10.0));
        assert!(parse_rate("0/s").is_err());
        assert!(parse_rate("5/h").is_err());
    }
}
