//! The `pnc` configuration file: a TOML overlay on built-in defaults.
//!
//! Every field has a default, so an empty file (or no file) is a valid configuration apart from
//! the token, which must come from `token_file` or `--token-file`. `control/pnc.example.toml`
//! documents every key. The coordinator's parameters live in `[coordinator]` and are the core's
//! own [`crate::core::Config`]; `[[regions]]` and `[[proxies]]` are top-level tables and are
//! moved into it by [`ServiceConfig::core_config`].
//!
//! Errors name the file, the line and column (from toml's span) and what was expected.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::core::{Config as CoreConfig, ProxySettings, RegionRule};

/// Everything the service reads from its file.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServiceConfig {
    pub listen: Listen,
    /// File holding the shared control-socket token (surrounding whitespace is ignored).
    pub token_file: Option<PathBuf>,
    pub dns: Dns,
    pub coordinator: CoreConfig,
    /// Viewer regions by client address ([0049]); the longest matching prefix wins.
    pub regions: Vec<RegionRule>,
    /// What the operator fixes about each proxy.
    pub proxies: Vec<ProxySettings>,
}

/// Listen addresses. Port 0 picks a free port; the `listening …` line on stdout says which.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Listen {
    /// Control socket, where proxies connect (TCP).
    pub control: SocketAddr,
    /// Admin HTTP: `/api/topology`, `/metrics`, `/status`, the topology page. Loopback by
    /// default: it is not authenticated.
    pub admin: SocketAddr,
    /// Public HTTP, reached by viewers: `/resolve/{stream}`.
    pub public: SocketAddr,
    /// DNS (UDP and TCP) for `{stream}.{zone}`.
    pub dns: SocketAddr,
    /// Control connections open at once; more are closed at accept, with a log line.
    pub max_control_connections: usize,
    /// HTTP connections open at once on each of the admin and public ports; more wait.
    pub max_http_connections: usize,
    /// An HTTP connection is closed this many seconds after it was accepted, whatever it is
    /// doing (a slow or silent client cannot hold it).
    pub http_connection_secs: u64,
}

impl Default for Listen {
    fn default() -> Self {
        Listen {
            control: ([0, 0, 0, 0], 7700).into(),
            admin: ([127, 0, 0, 1], 7701).into(),
            public: ([0, 0, 0, 0], 8080).into(),
            dns: ([0, 0, 0, 0], 5353).into(),
            max_control_connections: 10_000,
            max_http_connections: 10_000,
            http_connection_secs: 30,
        }
    }
}

/// DNS answers for stream names ([0026], [0033]).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Dns {
    /// Zone under which stream names are answered: `{stream}.{zone}`.
    pub zone: String,
    /// TTL of the answers in seconds: short, so viewers follow the tree as it changes.
    pub ttl_secs: u32,
}

impl Default for Dns {
    fn default() -> Self {
        Dns {
            zone: "live.van.".to_string(),
            ttl_secs: 5,
        }
    }
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}:{line}:{column}: {message}")]
    Syntax {
        file: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{file}: {message}")]
    Invalid { file: String, message: String },
}

/// Line and column (both from 1) of byte `offset` in `text`.
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rfind('\n').map_or(before.chars().count(), |nl| {
        before[nl + 1..].chars().count()
    }) + 1;
    (line, column)
}

impl ServiceConfig {
    /// Parse `text`, naming `file` in errors.
    pub fn parse(file: &str, text: &str) -> Result<Self, ConfigError> {
        let config: ServiceConfig = toml::from_str(text).map_err(|e| {
            let (line, column) = e.span().map_or((1, 1), |s| line_column(text, s.start));
            ConfigError::Syntax {
                file: file.to_string(),
                line,
                column,
                message: e.message().trim().to_string(),
            }
        })?;
        config.validate().map_err(|message| ConfigError::Invalid {
            file: file.to_string(),
            message,
        })?;
        Ok(config)
    }

    /// Read and parse a file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: file.clone(),
            source,
        })?;
        Self::parse(&file, &text)
    }

    /// Checks serde cannot express: ranges of the algorithms' parameters.
    fn validate(&self) -> Result<(), String> {
        let c = &self.coordinator;
        let open_unit = |name: &str, v: f64| {
            if v > 0.0 && v < 1.0 {
                Ok(())
            } else {
                Err(format!(
                    "coordinator.{name} = {v}: expected a number strictly between 0 and 1"
                ))
            }
        };
        open_unit("alpha", c.alpha)?;
        open_unit("beta", c.beta)?;
        for (name, v) in [("farm_alpha", c.farm_alpha), ("hysteresis", c.hysteresis)] {
            if !(0.0..=1.0).contains(&v) {
                return Err(format!(
                    "coordinator.{name} = {v}: expected a number from 0 to 1"
                ));
            }
        }
        let positive = |name: &str, v: u64| {
            if v > 0 {
                Ok(())
            } else {
                Err(format!(
                    "coordinator.{name} = 0: expected a positive number"
                ))
            }
        };
        positive("delta_t_ms", c.delta_t_ms)?;
        positive("heartbeat_timeout_ms", c.heartbeat_timeout_ms)?;
        positive("heartbeat_interval_ms", u64::from(c.heartbeat_interval_ms))?;
        positive("redundant_parents", u64::from(c.redundant_parents))?;
        positive("max_tiers", u64::from(c.max_tiers))?;
        for (key, v) in [
            (
                "max_control_connections",
                self.listen.max_control_connections as u64,
            ),
            (
                "max_http_connections",
                self.listen.max_http_connections as u64,
            ),
            ("http_connection_secs", self.listen.http_connection_secs),
        ] {
            if v == 0 {
                return Err(format!("listen.{key} = 0: expected a positive number"));
            }
        }
        if u64::from(c.heartbeat_interval_ms) >= c.heartbeat_timeout_ms {
            return Err(format!(
                "coordinator.heartbeat_interval_ms = {} must be below heartbeat_timeout_ms = {}",
                c.heartbeat_interval_ms, c.heartbeat_timeout_ms
            ));
        }
        if !self.dns.zone.ends_with('.') || self.dns.zone.len() < 2 {
            return Err(format!(
                "dns.zone = {:?}: expected a fully qualified name ending with '.', e.g. \"live.van.\"",
                self.dns.zone
            ));
        }
        let mut ids = std::collections::BTreeSet::new();
        for id in self
            .proxies
            .iter()
            .map(|p| p.id)
            .chain(c.proxies.iter().map(|p| p.id))
        {
            if !ids.insert(id) {
                return Err(format!("proxy {} is configured twice", id.0));
            }
        }
        Ok(())
    }

    /// The core's configuration, with `[[regions]]` and `[[proxies]]` moved in.
    pub fn core_config(&self) -> CoreConfig {
        let mut c = self.coordinator.clone();
        c.regions.extend(self.regions.iter().cloned());
        c.proxies.extend(self.proxies.iter().cloned());
        c
    }
}

/// Read the token from `path`: surrounding whitespace is ignored; it must not be empty.
pub fn read_token(path: &Path) -> Result<String, ConfigError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        file: file.clone(),
        source,
    })?;
    let token = text.trim();
    if token.is_empty() {
        return Err(ConfigError::Invalid {
            file,
            message: "the token file is empty".into(),
        });
    }
    Ok(token.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_all_defaults() {
        let c = ServiceConfig::parse("x.toml", "").unwrap();
        assert_eq!(c, ServiceConfig::default());
        assert_eq!(c.core_config(), CoreConfig::default());
    }

    #[test]
    fn example_file_parses() {
        let text = include_str!("../../pnc.example.toml");
        let c = ServiceConfig::parse("pnc.example.toml", text).unwrap();
        let core = c.core_config();
        assert!(!core.regions.is_empty());
        assert!(!core.proxies.is_empty());
    }

    #[test]
    fn syntax_error_names_file_line_and_expectation() {
        let text = "[listen]\ncontrol = \"127.0.0.1:1\"\n\n[coordinator]\nalpha = \"high\"\n";
        let e = ServiceConfig::parse("pnc.toml", text)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("pnc.toml:5:"), "{e}");
        assert!(e.contains("f64") || e.contains("float"), "{e}");
    }

    #[test]
    fn unknown_key_is_an_error_at_its_line() {
        let text = "[dns]\nzone = \"live.van.\"\nttl = 3\n";
        let e = ServiceConfig::parse("a.toml", text)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("a.toml:3:1:"), "{e}");
        assert!(e.contains("ttl_secs"), "{e}");
    }

    #[test]
    fn out_of_range_parameter_is_named() {
        let e = ServiceConfig::parse("b.toml", "[coordinator]\nalpha = 1.5\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("b.toml") && e.contains("coordinator.alpha"),
            "{e}"
        );
    }

    #[test]
    fn line_column_counts_from_one() {
        assert_eq!(line_column("ab\ncd", 0), (1, 1));
        assert_eq!(line_column("ab\ncd", 4), (2, 2));
        assert_eq!(line_column("ab", 99), (1, 3));
    }
}
