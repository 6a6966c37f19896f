//! A real `pnc` for the end-to-end tests: started on 127.0.0.1 (ephemeral ports, or a given
//! control port so that a restarted PNC is found where the proxies look), its token file, its
//! `GET /api/topology`, and the `--pnc` arguments a test relay needs to register with it.

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};

use crate::{Proc, TempDir, bin, request};

/// The control token every test PNC and its proxies share.
pub const PNC_TOKEN: &str = "pnc-e2e-token";

/// A running `pnc`, stopped (by PID) when dropped.
pub struct Pnc {
    pub proc: Proc,
    pub control: SocketAddr,
    pub admin: SocketAddr,
    pub public: SocketAddr,
    pub token_file: PathBuf,
    dir: TempDir,
}

impl Pnc {
    /// Starts a pnc whose control socket is on `control_port` (0: any free port), with short
    /// heartbeats (`heartbeat_interval_ms`, a timeout of ten of them), open registration (the
    /// test relays are not listed in its configuration) and `coordinator` added to its
    /// `[coordinator]` table.
    pub fn start(control_port: u16, heartbeat_ms: u32, coordinator: &str) -> Result<Self> {
        Self::start_at(
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            control_port,
            heartbeat_ms,
            coordinator,
        )
    }

    /// Like [`Pnc::start`], listening on `host` (e.g. an address of a test's network namespace,
    /// `crate::netns`) instead of 127.0.0.1.
    pub fn start_at(
        host: IpAddr,
        control_port: u16,
        heartbeat_ms: u32,
        coordinator: &str,
    ) -> Result<Self> {
        let dir = TempDir::new("pnc");
        let token_file = dir.path().join("token");
        std::fs::write(&token_file, format!("{PNC_TOKEN}\n"))?;
        let config = dir.path().join("pnc.toml");
        std::fs::write(
            &config,
            format!(
                "token_file = {:?}\n\
                 [listen]\ncontrol = \"{control}\"\nadmin = \"{host}:0\"\n\
                 public = \"{host}:0\"\ndns = \"{host}:0\"\n\
                 [coordinator]\nopen_registration = true\nheartbeat_interval_ms = {heartbeat_ms}\n\
                 heartbeat_timeout_ms = {}\n{coordinator}\n",
                token_file.display().to_string(),
                u64::from(heartbeat_ms) * 10,
                control = SocketAddr::new(host, control_port),
            ),
        )?;
        let stderr = std::fs::File::create(dir.path().join("stderr"))?;
        let mut proc = Proc::spawn(
            "pnc",
            Command::new(bin("pnc"))
                .arg("--config")
                .arg(&config)
                .env("RUST_LOG", "info")
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::from(stderr)),
        )?;
        let stdout = proc.child_mut().stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let _ = tx.send(lines.next());
            // Keep draining so that pnc never blocks on a full pipe.
            for _ in lines {}
        });
        let line = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(Some(Ok(line))) => line,
            other => {
                let log = std::fs::read_to_string(dir.path().join("stderr")).unwrap_or_default();
                bail!("pnc printed no `listening` line ({other:?}); stderr:\n{log}");
            }
        };
        let addr = |key: &str| -> Result<SocketAddr> {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(&format!("{key}=")))
                .ok_or_else(|| anyhow!("no {key}= in {line:?}"))?
                .parse()
                .with_context(|| format!("{key}= in {line:?}"))
        };
        Ok(Pnc {
            control: addr("control")?,
            admin: addr("admin")?,
            public: addr("public")?,
            token_file,
            proc,
            dir,
        })
    }

    /// `GET /api/topology` as JSON.
    pub fn topology(&self) -> Result<serde_json::Value> {
        let answer = request(
            self.admin,
            b"GET /api/topology HTTP/1.0\r\n\r\n",
            Duration::from_secs(5),
        )?;
        if answer.status != 200 {
            bail!("GET /api/topology answered {}", answer.status);
        }
        serde_json::from_slice(&answer.body).context("/api/topology is not JSON")
    }

    /// What the pnc logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr")).unwrap_or_default()
    }

    /// The arguments that make a test relay proxy `id` of this PNC.
    pub fn relay_args(&self, id: u32) -> Vec<String> {
        vec![
            "--pnc".into(),
            self.control.to_string(),
            "--pnc-token-file".into(),
            self.token_file.display().to_string(),
            "--proxy-id".into(),
            id.to_string(),
            "--name".into(),
            format!("P{id}"),
        ]
    }
}

impl Drop for Pnc {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- pnc stderr ----\n{}", self.log());
        }
    }
}
