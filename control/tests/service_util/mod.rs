//! Helpers for the service tests: start the real `pnc` binary on 127.0.0.1 ephemeral ports,
//! run `pnc script` clients, and talk HTTP and DNS to it. Every process started is killed by PID
//! when its guard drops; every wait is bounded.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use control::core::Topology;
use control::protocol::PncMsg;
use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};

pub const PNC: &str = env!("CARGO_BIN_EXE_pnc");
pub const TOKEN: &str = "s3cret-token";

/// A directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "pnc-test-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, text).expect("write temp file");
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child process killed (by PID, through `Child::kill`) when dropped.
pub struct ProcessGuard(pub Child);

impl Drop for ProcessGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Collect a pipe's lines in the background.
fn collect(pipe: impl Read + Send + 'static, into: Arc<Mutex<Vec<String>>>) {
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            into.lock().unwrap().push(line);
        }
    });
}

/// A running pnc.
pub struct Pnc {
    pub dir: TempDir,
    pub control: SocketAddr,
    pub admin: SocketAddr,
    pub public: SocketAddr,
    pub dns: SocketAddr,
    pub token_file: PathBuf,
    pub stderr: Arc<Mutex<Vec<String>>>,
    // Last: killed before the directory is removed.
    process: ProcessGuard,
}

/// The configuration every test starts from: loopback ephemeral ports, short ΔT, open
/// registration (the tests' proxies are not listed) unless `coordinator` sets it. `extra` is
/// appended (TOML keys for `[coordinator]`, then any other tables).
pub fn config_text(
    token_file: &std::path::Path,
    listen: &str,
    coordinator: &str,
    extra: &str,
) -> String {
    let open = if coordinator.contains("open_registration") {
        ""
    } else {
        "open_registration = true"
    };
    format!(
        "token_file = {:?}\n\
         [listen]\ncontrol = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\npublic = \"127.0.0.1:0\"\ndns = \"127.0.0.1:0\"\n{listen}\n\
         [coordinator]\ndelta_t_ms = 200\n{open}\n{coordinator}\n{extra}\n",
        token_file.display().to_string()
    )
}

impl Pnc {
    /// Start pnc with [`config_text`]; waits (at most 60 s) for its `listening` line.
    pub fn start(coordinator: &str, extra: &str) -> Pnc {
        Self::start_with("", coordinator, extra)
    }

    /// Like [`Pnc::start`], with keys added to `[listen]`.
    pub fn start_with(listen: &str, coordinator: &str, extra: &str) -> Pnc {
        let dir = TempDir::new("pnc");
        let token_file = dir.write("token", &format!("{TOKEN}\n"));
        let config = dir.write(
            "pnc.toml",
            &config_text(&token_file, listen, coordinator, extra),
        );
        let mut child = Command::new(PNC)
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start pnc");
        let stdout = child.stdout.take().unwrap();
        let stderr = Arc::new(Mutex::new(Vec::new()));
        collect(child.stderr.take().unwrap(), stderr.clone());
        let process = ProcessGuard(child);
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            // Keep draining so that pnc never blocks on a full pipe.
            for _ in lines {}
        });
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| {
                panic!(
                    "pnc did not print its listening line; stderr: {:?}",
                    stderr.lock().unwrap()
                )
            });
        let addr = |key: &str| -> SocketAddr {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(&format!("{key}=")))
                .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
                .parse()
                .expect("an address")
        };
        assert!(line.starts_with("listening "), "{line}");
        Pnc {
            control: addr("control"),
            admin: addr("admin"),
            public: addr("public"),
            dns: addr("dns"),
            token_file,
            stderr,
            dir,
            process,
        }
    }

    pub fn pid(&self) -> u32 {
        self.process.0.id()
    }

    /// Run a script to its end (at most `limit`); its stdout lines and exit status.
    pub fn script(&self, text: &str, limit: Duration) -> ScriptRun {
        static N: AtomicU32 = AtomicU32::new(0);
        let file = self.dir.write(
            &format!("s{}.script", N.fetch_add(1, Ordering::Relaxed)),
            text,
        );
        let mut child = Command::new(PNC)
            .arg("script")
            .arg(&file)
            .arg("--connect")
            .arg(self.control.to_string())
            .arg("--public")
            .arg(self.public.to_string())
            .arg("--admin")
            .arg(self.admin.to_string())
            .arg("--token-file")
            .arg(&self.token_file)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start pnc script");
        let out = Arc::new(Mutex::new(Vec::new()));
        let err = Arc::new(Mutex::new(Vec::new()));
        collect(child.stdout.take().unwrap(), out.clone());
        collect(child.stderr.take().unwrap(), err.clone());
        let mut guard = ProcessGuard(child);
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(s) = guard.0.try_wait().expect("wait for script") {
                break s;
            }
            assert!(
                Instant::now() < deadline,
                "script still running after {limit:?}; output: {:#?}",
                out.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        // The pipes close with the process; give the collector threads a moment.
        std::thread::sleep(Duration::from_millis(50));
        let lines = out.lock().unwrap().clone();
        let errors = err.lock().unwrap().clone();
        ScriptRun {
            status,
            lines,
            stderr: errors,
        }
    }

    pub fn topology(&self) -> Topology {
        let (status, _, body) = http_get(self.admin, "/api/topology");
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).expect("topology JSON")
    }

    /// Whether a line of pnc's log contains every one of `parts` (waits up to 10 s).
    pub fn log_has(&self, parts: &[&str]) -> bool {
        self.log_line(parts).is_some()
    }

    /// The first line of pnc's log that contains every one of `parts` (waits up to 10 s).
    pub fn log_line(&self, parts: &[&str]) -> Option<String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(line) = self
                .stderr
                .lock()
                .unwrap()
                .iter()
                .find(|l| parts.iter().all(|p| l.contains(p)))
            {
                return Some(line.clone());
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// What a script printed.
#[derive(Debug)]
pub struct ScriptRun {
    pub status: ExitStatus,
    pub lines: Vec<String>,
    pub stderr: Vec<String>,
}

impl ScriptRun {
    pub fn assert_ok(&self) {
        assert!(
            self.status.success(),
            "script failed: {:?}\nstdout: {:#?}",
            self.stderr,
            self.lines
        );
    }

    /// Every message received, in order: (proxy id, message).
    pub fn received(&self) -> Vec<(u32, PncMsg)> {
        self.lines
            .iter()
            .filter_map(|l| l.strip_prefix("recv P"))
            .map(|rest| {
                let (id, json) = rest.split_once(' ').expect("recv line");
                (
                    id.parse().expect("proxy id"),
                    serde_json::from_str(json).expect("a PncMsg as JSON"),
                )
            })
            .collect()
    }

    /// The proxy each `viewer` step was sent to.
    pub fn viewers(&self) -> Vec<u32> {
        self.lines
            .iter()
            .filter_map(|l| l.strip_prefix("viewer "))
            .filter_map(|l| l.split(" -> P").nth(1))
            .map(|l| l.split(' ').next().unwrap().parse().unwrap())
            .collect()
    }
}

/// A plain HTTP/1.1 GET: (status, headers lowercased, body).
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, Vec<(String, String)>, String) {
    http_request(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"),
    )
}

/// A plain HTTP/1.1 POST of a JSON body: (status, headers lowercased, body).
pub fn http_post_json(
    addr: SocketAddr,
    path: &str,
    json: &str,
) -> (u16, Vec<(String, String)>, String) {
    http_request(
        addr,
        &format!(
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{json}",
            json.len()
        ),
    )
}

fn http_request(addr: SocketAddr, request: &str) -> (u16, Vec<(String, String)>, String) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(10)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("read HTTP answer");
    let (head, body) = raw.split_once("\r\n\r\n").expect("HTTP head");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers, body.to_string())
}

pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// One DNS query over UDP (retried a few times: UDP on a loaded machine).
pub fn dns_query(server: SocketAddr, name: &str, rtype: RecordType) -> Message {
    dns_query_from([127, 0, 0, 1], server, name, rtype)
}

/// [`dns_query`] from a chosen loopback address (so that the client's region can differ).
pub fn dns_query_from(
    client: [u8; 4],
    server: SocketAddr,
    name: &str,
    rtype: RecordType,
) -> Message {
    let sock = UdpSocket::bind((std::net::Ipv4Addr::from(client), 0)).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut msg = Message::new(4242, MessageType::Query, OpCode::Query);
    msg.metadata.recursion_desired = true;
    msg.add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
    let bytes = msg.to_vec().unwrap();
    let mut buf = [0u8; 4096];
    for _ in 0..5 {
        sock.send_to(&bytes, server).unwrap();
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            return Message::from_vec(&buf[..n]).expect("a DNS message");
        }
    }
    panic!("no DNS answer from {server}");
}

/// Figure 2's proxies: the origin P1 and P11…P33, capacity 3, tiered by their RTT to P1.
pub fn figure_2_hellos() -> String {
    let mut s = String::from("hello P1 capacity=100\n");
    for tier in 1..=3u32 {
        for j in 1..=3u32 {
            let id = tier * 10 + j;
            s += &format!("hello P{id} capacity=3 rtt=P1:{}\n", tier * 20 - 10 + j);
        }
    }
    for id in [1, 11, 12, 13, 21, 22, 23, 31, 32, 33] {
        s += &format!("P{id} expect Welcome 20000\n");
    }
    s += "P1 announce demo source=www.ccrl.com\nwait-stream demo 20000\n";
    s
}
