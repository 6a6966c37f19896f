//! Helpers for the end-to-end tests: locating and starting the real binaries, stopping every
//! process a test starts (by PID, from `Drop`), small raw-HTTP clients over `TcpStream`, and
//! tests that cannot run here ([`skip`]). Generated sources and checking viewers are in
//! [`checked`].
//!
//! The binaries are the ones `scripts/test.sh` builds: `target/<profile>/dataplane` and this
//! crate's `deny_io_uring`, found next to the test executable's `deps/` directory. Everything
//! listens on and connects to 127.0.0.1 only, except in the network namespaces a fault test
//! creates for itself ([`netns`]).

use anyhow::{Context, Result, anyhow, bail};
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The source account every test relay accepts.
pub const SOURCE_USER: &str = "source";
pub const SOURCE_PASSWORD: &str = "pw-e2e";
/// The VAN token every test relay accepts.
pub const VAN_TOKEN: &str = "van-e2e-token";

/// `target/<profile>`: the directory of the binaries built alongside this test.
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    // .../target/<profile>/deps/test-xxxx -> .../target/<profile>
    let deps = exe.parent().expect("deps dir");
    if deps.file_name().is_some_and(|n| n == "deps") {
        deps.parent().expect("profile dir").to_path_buf()
    } else {
        deps.to_path_buf()
    }
}

/// Path of a workspace binary; fails with the command that builds it if it is missing.
pub fn bin(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.exists(),
        "{} is missing: build the binaries first (scripts/test.sh does: cargo build --workspace --release --bins)",
        path.display()
    );
    path
}

pub mod checked;
pub mod ffmpeg;
pub mod netns;
pub mod network;
pub mod pnc;
pub mod wire;

/// True if an outside tool (ffmpeg, prlimit, ...) is an executable on the PATH.
pub fn have_tool(tool: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| {
            std::fs::metadata(dir.join(tool)).is_ok_and(|m| {
                m.is_file()
                    && std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0
            })
        })
    })
}

/// True if every one of `tools` is installed; otherwise [`skip`]s `test` naming the missing ones.
pub fn require_tools(test: &str, tools: &[&str]) -> bool {
    let missing: Vec<&str> = tools.iter().copied().filter(|t| !have_tool(t)).collect();
    if missing.is_empty() {
        return true;
    }
    skip(test, &format!("{} not installed", missing.join(", ")));
    false
}

/// The file `scripts/test.sh` collects skips in (one `test: reason` line each) and lists at the
/// end of the run: `cargo test` shows a test that returned early as "ok" and hides its output.
pub const SKIPS_FILE_ENV: &str = "VAN_SKIPS_FILE";

/// Records that `test` cannot run here, for `reason`, and returns (the caller then returns).
/// Under CI (`CI` set) it fails the test instead: `.ci/run` installs every tool, so a skip there
/// would hide a broken install step and pass a test that never ran.
pub fn skip(test: &str, reason: &str) {
    assert!(
        std::env::var_os("CI").is_none(),
        "{test} cannot run: {reason}; under CI every test must run (.ci/run installs its tools)"
    );
    eprintln!("SKIPPED {test}: {reason}");
    if let Some(path) = std::env::var_os(SKIPS_FILE_ENV) {
        let line = format!("{test}: {reason}\n");
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(line.as_bytes()));
        if let Err(e) = written {
            panic!("could not record the skip of {test} in {path:?}: {e}");
        }
    }
}

/// A directory removed on drop.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(tag: &str) -> Self {
        static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("van-e2e-{tag}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&path).expect("create temp dir");
        Self { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A child process that is stopped when dropped: SIGTERM, then SIGKILL if it has not exited
/// within [`Proc::TERM_GRACE`]. Always by its own PID.
pub struct Proc {
    name: String,
    child: Option<Child>,
}

impl Proc {
    pub const TERM_GRACE: Duration = Duration::from_secs(5);

    pub fn spawn(name: &str, cmd: &mut Command) -> Result<Self> {
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {name}: {cmd:?}"))?;
        Ok(Self {
            name: name.to_owned(),
            child: Some(child),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    pub fn child_mut(&mut self) -> &mut Child {
        self.child.as_mut().expect("child still owned")
    }

    /// Sends a signal to the process (not its group).
    pub fn signal(&self, signal: i32) {
        if let Some(child) = &self.child {
            // SAFETY: kill(2) with the PID of our own child, not yet reaped (we hold its Child
            // and reap it only through it), so the PID cannot have been reused.
            unsafe { libc::kill(child.id() as libc::pid_t, signal) };
        }
    }

    /// Waits up to `limit` for the process to exit.
    pub fn wait_timeout(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        let child = self.child.as_mut()?;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) if Instant::now() >= deadline => return None,
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                Err(_) => return None,
            }
        }
    }

    /// SIGTERM, wait up to `limit`; SIGKILL if still running. Returns the exit status, if it
    /// exited by itself after SIGTERM.
    pub fn terminate(&mut self, limit: Duration) -> Option<ExitStatus> {
        if let Some(Some(status)) = self.child.as_mut().map(|c| c.try_wait().ok().flatten()) {
            return Some(status);
        }
        self.signal(libc::SIGTERM);
        if let Some(status) = self.wait_timeout(limit) {
            return Some(status);
        }
        self.kill();
        None
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        if let Some(child) = self.child.as_mut() {
            if matches!(child.try_wait(), Ok(None)) {
                eprintln!("e2e: killing {} (pid {})", self.name, child.id());
                let _ = child.kill();
            }
            let _ = child.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.terminate(Self::TERM_GRACE);
    }
}

/// Options of a test relay beyond the defaults (`--cores 2`, credentials and token files).
#[derive(Clone, Debug, Default)]
pub struct RelayOptions {
    /// Extra command-line arguments, e.g. `["--grace", "2"]`.
    pub args: Vec<String>,
    /// Wrapper command and its arguments to start the relay under (e.g. `prlimit ...`).
    pub wrapper: Vec<String>,
}

impl RelayOptions {
    pub fn args(args: &[&str]) -> Self {
        Self {
            args: args.iter().map(|a| a.to_string()).collect(),
            wrapper: Vec::new(),
        }
    }
}

/// A running `dataplane` on 127.0.0.1 ephemeral ports, stopped on drop.
pub struct Relay {
    pub proc: Proc,
    pub data: SocketAddr,
    pub admin: SocketAddr,
    dir: TempDir,
}

/// How a relay that was expected to fail at start-up ended.
#[derive(Debug)]
pub struct StartupFailure {
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
}

impl Relay {
    /// Starts a relay with the default test accounts and waits for its `listening` line.
    pub fn start() -> Self {
        Self::start_with(RelayOptions::default())
    }

    pub fn start_with(options: RelayOptions) -> Self {
        match Self::try_start(options) {
            Ok(relay) => relay,
            Err(e) => panic!("relay did not start: {e:#}"),
        }
    }

    fn command(options: &RelayOptions, dir: &TempDir) -> Command {
        let creds = dir.path().join("sources");
        std::fs::write(&creds, format!("{SOURCE_USER}:{SOURCE_PASSWORD}\n")).expect("write");
        let tokens = dir.path().join("tokens");
        std::fs::write(&tokens, format!("{VAN_TOKEN}\n")).expect("write");
        let dataplane = bin("dataplane");
        let mut cmd = match options.wrapper.split_first() {
            Some((program, rest)) => {
                let mut cmd = Command::new(program);
                cmd.args(rest).arg(&dataplane);
                cmd
            }
            None => Command::new(&dataplane),
        };
        // A test that restarts a relay at the same address gives its own --listen.
        let listen_given = options
            .args
            .iter()
            .any(|a| a == "--listen" || a.starts_with("--listen="));
        if !listen_given {
            cmd.args(["--listen", "127.0.0.1:0"]);
        }
        // A test that wants another number of reactors gives its own --cores.
        if !options.args.iter().any(|a| a == "--cores") {
            cmd.args(["--cores", "2"]);
        }
        // A relay in a network namespace (`netns`) listens on that namespace's address.
        if !options
            .args
            .iter()
            .any(|a| a == "--admin-listen" || a.starts_with("--admin-listen="))
        {
            cmd.args(["--admin-listen", "127.0.0.1:0"]);
        }
        cmd.arg("--source-credentials")
            .arg(&creds)
            .arg("--van-token-file")
            .arg(&tokens)
            .args(&options.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(
                File::create(dir.path().join("stderr")).expect("stderr file"),
            ));
        cmd
    }

    pub fn try_start(options: RelayOptions) -> Result<Self> {
        let dir = TempDir::new("relay");
        let mut proc = Proc::spawn("dataplane", &mut Self::command(&options, &dir))?;
        let stdout = proc.child_mut().stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let first = lines.next();
            let _ = tx.send(first);
            // Keep draining so the relay never blocks on a full pipe.
            for _ in lines {}
        });
        let line = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(Some(Ok(line))) => line,
            other => {
                let status = proc.wait_timeout(Duration::from_secs(1));
                let stderr = std::fs::read_to_string(dir.path().join("stderr")).unwrap_or_default();
                bail!("no `listening` line ({other:?}, exit {status:?}); stderr:\n{stderr}");
            }
        };
        let (data, admin) = parse_listening(&line)?;
        Ok(Self {
            proc,
            data,
            admin,
            dir,
        })
    }

    /// Starts a relay that is expected to fail at start-up; waits up to 30 s for its exit.
    pub fn expect_startup_failure(options: RelayOptions) -> StartupFailure {
        let dir = TempDir::new("relay-fail");
        let mut proc =
            Proc::spawn("dataplane", &mut Self::command(&options, &dir)).expect("spawn dataplane");
        let status = proc.wait_timeout(Duration::from_secs(30));
        let mut stdout = String::new();
        // Only read stdout once the relay exited: a relay that kept running would block it.
        if let (Some(_), Some(mut out)) = (status, proc.child_mut().stdout.take()) {
            let _ = out.read_to_string(&mut stdout);
        }
        drop(proc);
        StartupFailure {
            status,
            stdout,
            stderr: std::fs::read_to_string(dir.path().join("stderr")).unwrap_or_default(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// What the relay logged to stderr so far, without terminal colour codes.
    pub fn log(&self) -> String {
        let raw = std::fs::read_to_string(self.dir.path().join("stderr")).unwrap_or_default();
        strip_ansi(&raw)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.data)
    }

    /// Source URL with the test account in it (for ffmpeg `icecast://` or `http://`).
    pub fn source_url(&self, scheme: &str, stream: &str) -> String {
        format!(
            "{scheme}://{SOURCE_USER}:{SOURCE_PASSWORD}@{}/live/{stream}",
            self.data
        )
    }

    /// Resident memory of the relay in KiB, from /proc/PID/status.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("read /proc/PID/status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS line")
    }

    /// Per-core values of one `van_dataplane_{family}` series of the relay's /metrics (for a
    /// family with more labels, e.g. `connections_rejected`, the samples of a core are summed).
    pub fn metric_per_core(&self, family: &str) -> Vec<f64> {
        let metrics = request(
            self.admin,
            b"GET /metrics HTTP/1.0\r\n\r\n",
            Duration::from_secs(10),
        )
        .expect("GET /metrics");
        let text = String::from_utf8_lossy(&metrics.body).into_owned();
        let prefix = format!("van_dataplane_{family}{{core=\"");
        let mut values = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix(&prefix) {
                let (core, rest) = rest.split_once('"').expect("a labelled sample");
                let value: f64 = rest
                    .rsplit(' ')
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| panic!("a number in {line:?}"));
                let core: usize = core.parse().expect("core number");
                if values.len() <= core {
                    values.resize(core + 1, 0.0);
                }
                values[core] += value;
            }
        }
        assert!(
            !values.is_empty(),
            "no van_dataplane_{family} in /metrics:\n{text}"
        );
        values
    }

    /// A /metrics family summed over the cores.
    pub fn metric_total(&self, family: &str) -> f64 {
        self.metric_per_core(family).iter().sum()
    }

    /// The relay's /status entry of `stream`, if it has one.
    /// `GET /status` on the admin port, as JSON.
    pub fn status(&self) -> serde_json::Value {
        let answer = request(
            self.admin,
            b"GET /status HTTP/1.0\r\n\r\n",
            Duration::from_secs(10),
        )
        .expect("GET /status");
        serde_json::from_slice(&answer.body).expect("/status is JSON")
    }

    pub fn stream_status(&self, stream: &str) -> Option<serde_json::Value> {
        self.status()["streams"]
            .as_array()?
            .iter()
            .find(|s| s["name"] == stream)
            .cloned()
    }

    /// Polls `GET /live/{stream}` until it answers 200 (the stream is live), up to `limit`.
    pub fn wait_live(&self, stream: &str, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        let mut last = None;
        while Instant::now() < deadline {
            let head = format!("GET /live/{stream} HTTP/1.1\r\nHost: test\r\n\r\n");
            match status_of(self.data, head.as_bytes(), Duration::from_secs(5)) {
                Ok(200) => return Ok(()),
                other => last = Some(other),
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!(
            "stream {stream} not live within {limit:?} (last answer {last:?}); relay log:\n{}",
            self.log()
        )
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- relay stderr ----\n{}", self.log());
        }
    }
}

/// `text` without ANSI escape sequences (`ESC [ ... letter`), which the relay's log has when
/// its subscriber decides to colour.
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.next() == Some('[') {
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Parses `listening data=IP:PORT admin=IP:PORT`.
pub fn parse_listening(line: &str) -> Result<(SocketAddr, SocketAddr)> {
    let mut data = None;
    let mut admin = None;
    let mut words = line.split_whitespace();
    if words.next() != Some("listening") {
        bail!("unexpected first line {line:?}");
    }
    for word in words {
        if let Some(v) = word.strip_prefix("data=") {
            data = Some(
                v.parse()
                    .with_context(|| format!("data address in {line:?}"))?,
            );
        } else if let Some(v) = word.strip_prefix("admin=") {
            admin = Some(
                v.parse()
                    .with_context(|| format!("admin address in {line:?}"))?,
            );
        }
    }
    Ok((
        data.ok_or_else(|| anyhow!("no data= in {line:?}"))?,
        admin.ok_or_else(|| anyhow!("no admin= in {line:?}"))?,
    ))
}

/// An HTTP response read from a raw connection.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    /// Header lines, names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Connects to `addr` with read and write timeouts.
pub fn connect(addr: SocketAddr, timeout: Duration) -> Result<TcpStream> {
    let stream =
        TcpStream::connect_timeout(&addr, timeout).with_context(|| format!("connect {addr}"))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Opens `n` plain viewers of `stream` on `relay`, one after another, and reads each one's
/// response head (a 200); their bodies are left unread.
pub fn join_plain(relay: &Relay, stream: &str, n: usize) -> Vec<TcpStream> {
    (0..n)
        .map(|_| {
            let mut s = connect(relay.data, Duration::from_secs(10)).expect("connect");
            s.write_all(format!("GET /live/{stream} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
                .expect("request");
            let head = read_head(&mut s).expect("response head");
            assert_eq!(head.status, 200, "viewer of {stream}");
            s
        })
        .collect()
}

/// Reads one response head (through the blank line) from `stream`; the bytes read past it are
/// returned as the start of the body.
pub fn read_head(stream: &mut TcpStream) -> Result<Response> {
    read_head_after(stream, Vec::new())
}

/// Like [`read_head`], with `buf` holding bytes already read from `stream`.
pub fn read_head_after(stream: &mut TcpStream, mut buf: Vec<u8>) -> Result<Response> {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = find(&buf, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let mut lines = head.split("\r\n");
            let status_line = lines.next().unwrap_or_default();
            let status = status_line
                .split_whitespace()
                .nth(1)
                .and_then(|c| c.parse().ok())
                .ok_or_else(|| anyhow!("bad status line {status_line:?}"))?;
            let headers = lines
                .filter_map(|l| l.split_once(':'))
                .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
                .collect();
            return Ok(Response {
                status,
                headers,
                body: buf[end + 4..].to_vec(),
            });
        }
        let n = stream.read(&mut chunk).context("reading a response head")?;
        if n == 0 {
            bail!(
                "connection closed before a whole response head ({} bytes: {:?})",
                buf.len(),
                String::from_utf8_lossy(&buf)
            );
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > 64 * 1024 {
            bail!("response head larger than 64 KiB");
        }
    }
}

/// Sends `request` and reads the whole response until the relay closes (bounded by `timeout`
/// per read and 1 MiB of body).
pub fn request(addr: SocketAddr, request: &[u8], timeout: Duration) -> Result<Response> {
    let mut stream = connect(addr, timeout)?;
    stream.write_all(request)?;
    let mut response = read_head(&mut stream)?;
    let mut chunk = [0u8; 16 * 1024];
    while response.body.len() < 1 << 20 {
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => response.body.extend_from_slice(&chunk[..n]),
            // A reset after a complete answer (e.g. unread request bytes) still counts.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => return Err(e).context("reading a response body"),
        }
    }
    Ok(response)
}

/// Sends `request` and returns the status code of the answer's head.
pub fn status_of(addr: SocketAddr, request: &[u8], timeout: Duration) -> Result<u16> {
    let mut stream = connect(addr, timeout)?;
    stream.write_all(request)?;
    Ok(read_head(&mut stream)?.status)
}

/// `Authorization: Basic` header value.
pub fn basic(user: &str, password: &str) -> String {
    use base64::Engine as _;
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {token}")
}

/// A raw Icecast-style source: `PUT /live/{stream}` with `Expect: 100-continue`, no length and
/// no chunking; then whatever [`RawSource::send`] writes is the stream.
pub struct RawSource {
    pub stream: TcpStream,
}

impl RawSource {
    /// Publishes with the given credentials; `Err` carries the status when the relay refuses.
    pub fn publish(addr: SocketAddr, name: &str, auth: Option<(&str, &str)>) -> Result<Self, u16> {
        let mut stream = connect(addr, Duration::from_secs(10)).map_err(|_| 0u16)?;
        let mut head = format!(
            "PUT /live/{name} HTTP/1.1\r\nHost: test\r\nContent-Type: application/octet-stream\r\nExpect: 100-continue\r\n"
        );
        if let Some((user, password)) = auth {
            head.push_str(&format!("Authorization: {}\r\n", basic(user, password)));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).map_err(|_| 0u16)?;
        // `100 Continue`, then (as Icecast does) `200 OK` before the body; any other status is
        // a refusal.
        let mut response = read_head(&mut stream).map_err(|_| 0u16)?;
        if response.status == 100 {
            response = read_head_after(&mut stream, response.body).map_err(|_| 100u16)?;
        }
        match response.status {
            200 => Ok(Self { stream }),
            status => Err(status),
        }
    }

    pub fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Ends the stream: closes the write side, as a source that stops does.
    pub fn finish(self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }
}

/// A raw plain viewer: `GET /live/{stream}`, then reads bytes.
pub struct RawViewer {
    pub stream: TcpStream,
    pub head: Response,
}

impl RawViewer {
    pub fn open(addr: SocketAddr, path: &str, extra_headers: &str) -> Result<Self> {
        let mut stream = connect(addr, Duration::from_secs(10))?;
        stream.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: test\r\n{extra_headers}\r\n").as_bytes(),
        )?;
        let head = read_head(&mut stream)?;
        Ok(Self { stream, head })
    }

    /// Reads until the relay ends the response, up to `limit`. `Ok(bytes)` on a clean end
    /// (EOF), `Err` on a reset, a timeout or if `limit` passes first.
    pub fn read_to_end(&mut self, limit: Duration) -> Result<Vec<u8>> {
        let deadline = Instant::now() + limit;
        let mut body = std::mem::take(&mut self.head.body);
        let mut chunk = [0u8; 64 * 1024];
        self.stream
            .set_read_timeout(Some(Duration::from_millis(200)))?;
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => return Ok(body),
                Ok(n) => {
                    // Keep only the tail: a live stream is long.
                    body.extend_from_slice(&chunk[..n]);
                    if body.len() > 8 << 20 {
                        body.drain(..body.len() - (1 << 20));
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => return Err(e).context("viewer read"),
            }
            if Instant::now() >= deadline {
                bail!("the response did not end within {limit:?}");
            }
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A VAN frame viewer over a raw connection: collects frames until an end frame or EOF.
pub struct VanViewer {
    viewer: RawViewer,
    decoder: dataplane::frame::FrameDecoder,
}

/// What a VAN viewer saw.
#[derive(Debug, Default)]
pub struct VanOutcome {
    /// Sequence numbers of the data frames, in arrival order.
    pub data_seqs: Vec<u64>,
    /// The end frame's sequence number, if one came.
    pub end: Option<u64>,
    /// True if the connection ended with EOF after the frames (not a reset or a timeout).
    pub clean_eof: bool,
}

impl VanViewer {
    pub fn open(addr: SocketAddr, stream: &str, token: &str) -> Result<Self> {
        let viewer = RawViewer::open(
            addr,
            &format!("/van/{stream}"),
            &format!("Authorization: Bearer {token}\r\n"),
        )?;
        if viewer.head.status != 200 {
            bail!("VAN viewer got {}", viewer.head.status);
        }
        let mut decoder = dataplane::frame::FrameDecoder::new();
        decoder.push(&viewer.head.body);
        Ok(Self { viewer, decoder })
    }

    /// Reads frames until an end frame and EOF, or until `limit`.
    pub fn run(&mut self, limit: Duration) -> Result<VanOutcome> {
        use dataplane::frame::FrameKind;
        let deadline = Instant::now() + limit;
        let mut outcome = VanOutcome::default();
        let mut chunk = [0u8; 64 * 1024];
        self.viewer
            .stream
            .set_read_timeout(Some(Duration::from_millis(200)))?;
        loop {
            while let Some((header, _)) = self.decoder.next_frame()? {
                match header.kind {
                    FrameKind::Data => outcome.data_seqs.push(header.seq),
                    FrameKind::End => outcome.end = Some(header.seq),
                    FrameKind::Redirect | FrameKind::Heartbeat => {}
                }
            }
            if Instant::now() >= deadline {
                return Ok(outcome);
            }
            match self.viewer.stream.read(&mut chunk) {
                Ok(0) => {
                    outcome.clean_eof = true;
                    return Ok(outcome);
                }
                Ok(n) => self.decoder.push(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => return Err(e).context("VAN viewer read"),
            }
        }
    }
}

/// Checks that `seqs` are consecutive.
pub fn consecutive(seqs: &[u64]) -> bool {
    seqs.windows(2).all(|w| w[1] == w[0] + 1)
}

/// Bounded retry: runs `f` every `every` until it returns `Some`, up to `limit`.
pub fn poll<T>(limit: Duration, every: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(every);
    }
}

/// Runs a command to completion within `limit` (killed by PID past it), capturing its output:
/// (exited successfully, stdout, stderr).
pub fn run_to_end(name: &str, cmd: &mut Command, limit: Duration) -> (bool, String, String) {
    let mut proc = Proc::spawn(
        name,
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    )
    .expect("spawn");
    let stdout = proc.child_mut().stdout.take().expect("piped");
    let stderr = proc.child_mut().stderr.take().expect("piped");
    let out = std::thread::spawn(move || read_all(stdout));
    let err = std::thread::spawn(move || read_all(stderr));
    let status = proc.wait_timeout(limit);
    if status.is_none() {
        proc.kill();
    }
    let ok = status.is_some_and(|s| s.success());
    (
        ok,
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default(),
    )
}

fn read_all(mut from: impl Read) -> String {
    let mut s = String::new();
    let _ = from.read_to_string(&mut s);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_codes_are_stripped_from_log_lines() {
        let line = "\u{1b}[2m2026\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m refused \u{1b}[3mstatus\u{1b}[0m\u{1b}[2m=\u{1b}[0m400";
        assert_eq!(strip_ansi(line), "2026  INFO refused status=400");
    }
}
