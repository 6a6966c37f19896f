//! `pnc script`: plays proxy messages from a script against a running pnc, through the real
//! control socket, printing every message received. It exercises the service without a
//! dataplane. One script drives any number of proxies, each with its own connection.
//!
//! # Script format
//!
//! One step per line; `#` starts a comment; blank lines are skipped. A proxy is written `P31` or
//! `31`. Any step may end with `sleep=MS`: pause that long after it.
//!
//! | step | what it does |
//! | --- | --- |
//! | `hello P31 [name=N] [addr=IP:PORT] [region=R] [capacity=N] [bps=N] [rtt=P1:MS,…] [token=T] [version=N] [stream=…]…` | connect and send `Hello` (default addr `127.0.X.Y:8000` from the id, capacity 100, the script's token); heartbeats then go out automatically at the interval `Welcome` gives. Each `stream=NAME[,tier=N][,parents=P21+P22][,children=P31+P32][,viewers=N][,accepting][,source=S]` adds a stream the proxy carries, as after a PNC restart (`source` marks its origin) |
//! | `P31 announce STREAM [source=S] [type=CT] [bitrate=N]` | `StreamAnnounce` |
//! | `P31 end STREAM` | `StreamEnd` |
//! | `P31 login STREAM [viewer \| proxy=P21]` | `Login` (a viewer by default) |
//! | `P31 logoff STREAM [viewer \| proxy=P21]` | `Logoff` |
//! | `P31 distribute STREAM` / `P31 consolidate STREAM` | `Distribute` / `Consolidate` |
//! | `P31 link-down STREAM parent=P21` | `LinkDowngrade` |
//! | `P31 heartbeat` | one `Heartbeat` now |
//! | `P31 mute` / `P31 unmute` | stop / resume the automatic heartbeats (the connection stays open) |
//! | `P31 close` | close the control connection |
//! | `P31 expect KIND [MS]` | wait (default 5000 ms) until P31 receives a `KIND` message (`Welcome`, `Refused`, `Activate`, `SwitchToParent`, `StopAccepting`, `StartAccepting`, `RedirectChildren`, `Deactivate`, `MonitorList`) not matched by an earlier `expect`; fails the script otherwise |
//! | `viewer STREAM [region=R]` | `GET /resolve/STREAM` on `--public`, then `Login` of a viewer at the proxy the 302 names; with `--admin`, waits until `/api/topology` shows it there |
//! | `wait-stream STREAM [MS]` | wait (default 5000 ms) until `/api/topology` on `--admin` lists the stream (a source announced it) |
//! | `sleep MS` | pause |
//!
//! # Output (stdout, one line per event)
//!
//! - `recv P31 {JSON of the PncMsg}` for every message received;
//! - `sent P31 {JSON of the ProxyMsg}` for every message sent but heartbeats (`hello P31` for a
//!   hello: the token is not printed);
//! - `viewer STREAM -> P31 302 LOCATION`, or `viewer STREAM -> STATUS BODY` when not redirected;
//! - `closed P31` when the pnc closes a connection;
//! - `stream STREAM listed` after a `wait-stream`.
//!
//! The script fails (exit status 1, the line number on stderr) on a syntax error, an `expect`
//! that times out or a connection that cannot be made.

use std::collections::HashMap;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::protocol::{
    Capacity, Child, FrameReader, Hello, PROTOCOL_VERSION, PncMsg, ProxyId, ProxyMsg, Rtt,
    SourceInfo, StreamState, encode_frame,
};

/// What a `hello` step sets.
#[derive(Clone, Debug, PartialEq)]
pub struct HelloStep {
    pub proxy: ProxyId,
    pub name: Option<String>,
    pub addr: Option<SocketAddr>,
    pub region: Option<String>,
    pub capacity: u32,
    pub bps: u64,
    pub rtts: Vec<Rtt>,
    pub token: Option<String>,
    pub version: u32,
    /// Streams it carries, for a re-registration after a PNC restart.
    pub streams: Vec<StreamState>,
}

/// One step of a script.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    Hello(Box<HelloStep>),
    Send(ProxyId, ProxyMsg),
    Heartbeat(ProxyId),
    Mute(ProxyId, bool),
    Close(ProxyId),
    Expect {
        proxy: ProxyId,
        kind: String,
        timeout: Duration,
    },
    Viewer {
        stream: String,
        region: Option<String>,
    },
    /// Wait until `/api/topology` (on `--admin`) lists the stream.
    WaitStream {
        stream: String,
        timeout: Duration,
    },
    Sleep(Duration),
}

/// A step and where it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    pub line: usize,
    pub action: Action,
    pub sleep_after: Option<Duration>,
}

const KINDS: [&str; 9] = [
    "Welcome",
    "Refused",
    "Activate",
    "SwitchToParent",
    "StopAccepting",
    "StartAccepting",
    "RedirectChildren",
    "Deactivate",
    "MonitorList",
];

/// Default data address of a proxy: 127.0.X.Y:8000 from its id, so that every proxy of a test
/// has its own loopback address.
pub fn default_addr(id: ProxyId) -> SocketAddr {
    SocketAddr::new(IpAddr::from([127, 0, (id.0 >> 8) as u8, id.0 as u8]), 8000)
}

fn parse_proxy(s: &str) -> Result<ProxyId, String> {
    let digits = s.strip_prefix(['P', 'p']).unwrap_or(s);
    digits
        .parse::<u32>()
        .map(ProxyId)
        .map_err(|_| format!("expected a proxy like P31 or 31, found {s:?}"))
}

/// `NAME[,tier=N][,parents=P21+P22][,children=P31+P32][,viewers=N][,accepting][,source=S]`:
/// one stream of a re-registration (`source` marks the proxy as the stream's origin).
fn parse_stream_state(v: &str) -> Result<StreamState, String> {
    let mut parts = v.split(',');
    let name = parts
        .next()
        .filter(|n| !n.is_empty())
        .ok_or("stream=: expected a name")?;
    let ids = |list: &str| -> Result<Vec<ProxyId>, String> {
        list.split('+')
            .filter(|x| !x.is_empty())
            .map(parse_proxy)
            .collect()
    };
    let mut st = StreamState {
        stream: name.to_string(),
        source: None,
        tier: 0,
        parents: Vec::new(),
        children: Vec::new(),
        viewers: 0,
        accepting: false,
    };
    for part in parts {
        match part.split_once('=') {
            Some(("tier", n)) => st.tier = parse_num("tier", n)?,
            Some(("parents", l)) => st.parents = ids(l)?,
            Some(("children", l)) => st.children = ids(l)?,
            Some(("viewers", n)) => st.viewers = parse_num("viewers", n)?,
            Some(("source", src)) => {
                st.source = Some(SourceInfo {
                    source: src.to_string(),
                    content_type: "video/mp2t".into(),
                    bitrate_bps: 0,
                })
            }
            None if part == "accepting" => st.accepting = true,
            _ => {
                return Err(format!(
                    "stream=: unknown part {part:?} (tier=, parents=, children=, viewers=, accepting, source=)"
                ));
            }
        }
    }
    Ok(st)
}

fn parse_num<T: std::str::FromStr>(key: &str, v: &str) -> Result<T, String> {
    v.parse()
        .map_err(|_| format!("{key}={v:?}: expected a number"))
}

/// Split `key=value` words from plain words.
fn split_words<'a>(words: &[&'a str]) -> (Vec<&'a str>, Vec<(&'a str, &'a str)>) {
    let mut plain = Vec::new();
    let mut kv = Vec::new();
    for w in words {
        match w.split_once('=') {
            Some((k, v)) => kv.push((k, v)),
            None => plain.push(*w),
        }
    }
    (plain, kv)
}

fn child_of(plain: &[&str], kv: &[(&str, &str)]) -> Result<Child, String> {
    if let Some((_, v)) = kv.iter().find(|(k, _)| *k == "proxy") {
        return Ok(Child::Proxy(parse_proxy(v)?));
    }
    match plain.first() {
        None | Some(&"viewer") => Ok(Child::Viewer),
        Some(w) => Err(format!("expected `viewer` or `proxy=P..`, found {w:?}")),
    }
}

fn parse_line(words: &[&str]) -> Result<(Action, Option<Duration>), String> {
    let (plain, mut kv) = split_words(words);
    let sleep_after = match kv.iter().position(|(k, _)| *k == "sleep") {
        Some(i) => Some(Duration::from_millis(parse_num("sleep", kv.remove(i).1)?)),
        None => None,
    };
    let get = |k: &str| kv.iter().find(|(key, _)| *key == k).map(|(_, v)| *v);
    let allow = |keys: &[&str]| -> Result<(), String> {
        match kv.iter().find(|(k, _)| !keys.contains(k)) {
            Some((k, _)) => Err(format!("unknown key {k:?} (expected one of {keys:?})")),
            None => Ok(()),
        }
    };
    let stream_arg = |i: usize| -> Result<String, String> {
        plain
            .get(i)
            .map(|s| s.to_string())
            .ok_or_else(|| "expected a stream name".to_string())
    };
    let first = *plain.first().ok_or("expected a step")?;
    let action = match first {
        "hello" => {
            allow(&[
                "name", "addr", "region", "capacity", "bps", "rtt", "token", "version", "stream",
            ])?;
            let streams = kv
                .iter()
                .filter(|(k, _)| *k == "stream")
                .map(|(_, v)| parse_stream_state(v))
                .collect::<Result<Vec<_>, String>>()?;
            let proxy = parse_proxy(plain.get(1).ok_or("hello: expected a proxy")?)?;
            let rtts = match get("rtt") {
                None => Vec::new(),
                Some(list) => list
                    .split(',')
                    .map(|pair| {
                        let (p, ms) = pair
                            .split_once(':')
                            .ok_or_else(|| format!("rtt {pair:?}: expected PEER:MS"))?;
                        Ok(Rtt {
                            peer: parse_proxy(p)?,
                            micros: parse_num::<u32>("rtt", ms)?.saturating_mul(1000),
                        })
                    })
                    .collect::<Result<_, String>>()?,
            };
            Action::Hello(Box::new(HelloStep {
                proxy,
                name: get("name").map(str::to_string),
                addr: get("addr")
                    .map(|a| {
                        a.parse()
                            .map_err(|_| format!("addr={a:?}: expected IP:PORT"))
                    })
                    .transpose()?,
                region: get("region").map(str::to_string),
                capacity: get("capacity").map_or(Ok(100), |v| parse_num("capacity", v))?,
                bps: get("bps").map_or(Ok(10_000_000_000), |v| parse_num("bps", v))?,
                rtts,
                token: get("token").map(str::to_string),
                version: get("version")
                    .map_or(Ok(PROTOCOL_VERSION), |v| parse_num("version", v))?,
                streams,
            }))
        }
        "viewer" => {
            allow(&["region"])?;
            Action::Viewer {
                stream: stream_arg(1)?,
                region: get("region").map(str::to_string),
            }
        }
        "wait-stream" => {
            allow(&[])?;
            let ms = plain.get(2).map_or(Ok(5000), |v| parse_num("timeout", v))?;
            Action::WaitStream {
                stream: stream_arg(1)?,
                timeout: Duration::from_millis(ms),
            }
        }
        "sleep" => {
            allow(&[])?;
            let ms = plain.get(1).ok_or("sleep: expected milliseconds")?;
            Action::Sleep(Duration::from_millis(parse_num("sleep", ms)?))
        }
        _ => {
            let proxy = parse_proxy(first)?;
            let verb = *plain.get(1).ok_or("expected a step after the proxy")?;
            match verb {
                "announce" => {
                    allow(&["source", "type", "bitrate"])?;
                    let stream = stream_arg(2)?;
                    Action::Send(
                        proxy,
                        ProxyMsg::StreamAnnounce {
                            source: SourceInfo {
                                source: get("source").unwrap_or(&stream).to_string(),
                                content_type: get("type").unwrap_or("video/mp2t").to_string(),
                                bitrate_bps: get("bitrate")
                                    .map_or(Ok(0), |v| parse_num("bitrate", v))?,
                            },
                            stream,
                        },
                    )
                }
                "end" => {
                    allow(&[])?;
                    Action::Send(
                        proxy,
                        ProxyMsg::StreamEnd {
                            stream: stream_arg(2)?,
                        },
                    )
                }
                "login" | "logoff" => {
                    allow(&["proxy"])?;
                    let stream = stream_arg(2)?;
                    let child = child_of(&plain[3..], &kv)?;
                    let msg = if verb == "login" {
                        ProxyMsg::Login { stream, child }
                    } else {
                        ProxyMsg::Logoff { stream, child }
                    };
                    Action::Send(proxy, msg)
                }
                "distribute" => {
                    allow(&[])?;
                    Action::Send(
                        proxy,
                        ProxyMsg::Distribute {
                            stream: stream_arg(2)?,
                        },
                    )
                }
                "consolidate" => {
                    allow(&[])?;
                    Action::Send(
                        proxy,
                        ProxyMsg::Consolidate {
                            stream: stream_arg(2)?,
                        },
                    )
                }
                "link-down" => {
                    allow(&["parent"])?;
                    let parent =
                        parse_proxy(get("parent").ok_or("link-down: expected parent=P..")?)?;
                    Action::Send(
                        proxy,
                        ProxyMsg::LinkDowngrade {
                            stream: stream_arg(2)?,
                            parent,
                        },
                    )
                }
                "heartbeat" => Action::Heartbeat(proxy),
                "mute" => Action::Mute(proxy, true),
                "unmute" => Action::Mute(proxy, false),
                "close" => Action::Close(proxy),
                "expect" => {
                    allow(&[])?;
                    let kind = *plain.get(2).ok_or("expect: expected a message kind")?;
                    if !KINDS.contains(&kind) {
                        return Err(format!("expect: unknown kind {kind:?} (one of {KINDS:?})"));
                    }
                    let ms = plain.get(3).map_or(Ok(5000), |v| parse_num("timeout", v))?;
                    Action::Expect {
                        proxy,
                        kind: kind.to_string(),
                        timeout: Duration::from_millis(ms),
                    }
                }
                other => return Err(format!("unknown step {other:?}")),
            }
        }
    };
    Ok((action, sleep_after))
}

/// Parse a whole script; errors say `line N: …`.
pub fn parse_script(text: &str) -> Result<Vec<Step>, String> {
    let mut steps = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        let (action, sleep_after) =
            parse_line(&words).map_err(|e| format!("line {}: {e}", i + 1))?;
        steps.push(Step {
            line: i + 1,
            action,
            sleep_after,
        });
    }
    Ok(steps)
}

/// Where the script connects.
#[derive(Clone, Debug)]
pub struct ScriptOptions {
    pub control: SocketAddr,
    pub public: Option<SocketAddr>,
    /// The pnc's admin address: when given, a `viewer` step waits until `/api/topology` shows
    /// the viewer at its proxy, so that the next step sees the coordinator after that LOGIN.
    pub admin: Option<SocketAddr>,
    pub token: String,
}

/// One scripted proxy's connection.
struct Conn {
    tx: mpsc::UnboundedSender<ProxyMsg>,
    muted: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|e| format!("<{e}>"))
}

/// What the reader tasks report.
enum Received {
    Msg(ProxyId, PncMsg),
    Closed(ProxyId),
}

struct Runner {
    opts: ScriptOptions,
    conns: HashMap<ProxyId, Conn>,
    addrs: HashMap<SocketAddr, ProxyId>,
    events_tx: mpsc::UnboundedSender<Received>,
    events: mpsc::UnboundedReceiver<Received>,
    /// Kinds received per proxy, and how many an `expect` consumed.
    received: HashMap<ProxyId, Vec<&'static str>>,
    cursor: HashMap<ProxyId, usize>,
}

impl Runner {
    fn drain(&mut self) {
        while let Ok(ev) = self.events.try_recv() {
            self.note(ev);
        }
    }

    fn note(&mut self, ev: Received) {
        match ev {
            Received::Msg(p, m) => self.received.entry(p).or_default().push(m.kind()),
            Received::Closed(p) => {
                self.conns.remove(&p);
            }
        }
    }

    async fn hello(&mut self, h: &HelloStep) -> anyhow::Result<()> {
        let addr = h.addr.unwrap_or_else(|| default_addr(h.proxy));
        let hello = Hello {
            version: h.version,
            token: h.token.clone().unwrap_or_else(|| self.opts.token.clone()),
            proxy: h.proxy,
            name: h.name.clone().unwrap_or_else(|| format!("p{}", h.proxy.0)),
            data_addr: addr,
            region: h.region.clone(),
            capacity: Capacity {
                connections: h.capacity,
                bits_per_sec: h.bps,
            },
            streams: h.streams.clone(),
            rtts: h.rtts.clone(),
            // A scripted proxy sends a LOGIN/LOGOFF per viewer; the PNC decides for it.
            decides: false,
        };
        let stream = TcpStream::connect(self.opts.control)
            .await
            .with_context(|| format!("cannot connect to {}", self.opts.control))?;
        let _ = stream.set_nodelay(true);
        let (mut rd, mut wr) = stream.into_split();
        wr.write_all(&encode_frame(&ProxyMsg::Hello(hello))?)
            .await?;
        say(&format!("hello {}", h.proxy));
        let proxy = h.proxy;
        let (tx, mut rx) = mpsc::unbounded_channel::<ProxyMsg>();
        let writer = tokio::spawn(async move {
            while let Some(msg) = rx.recv().await {
                let Ok(frame) = encode_frame(&msg) else {
                    continue;
                };
                if wr.write_all(&frame).await.is_err() {
                    return;
                }
            }
            let _ = wr.shutdown().await;
        });
        let muted = Arc::new(AtomicBool::new(false));
        let events = self.events_tx.clone();
        let (hb_tx, hb_muted) = (tx.clone(), muted.clone());
        let reader = tokio::spawn(async move {
            let mut reader = FrameReader::new();
            let mut buf = vec![0u8; 16 * 1024];
            let mut heartbeat: Option<tokio::task::JoinHandle<()>> = None;
            loop {
                match reader.next_msg::<PncMsg>() {
                    Ok(Some(msg)) => {
                        say(&format!("recv {proxy} {}", json(&msg)));
                        if let PncMsg::Welcome { heartbeat_ms, .. } = &msg {
                            let every = Duration::from_millis(u64::from(*heartbeat_ms).max(10));
                            let (tx, muted) = (hb_tx.clone(), hb_muted.clone());
                            heartbeat = Some(tokio::spawn(async move {
                                let mut tick = tokio::time::interval(every);
                                loop {
                                    tick.tick().await;
                                    if !muted.load(Ordering::Relaxed)
                                        && tx.send(empty_heartbeat()).is_err()
                                    {
                                        return;
                                    }
                                }
                            }));
                        }
                        let _ = events.send(Received::Msg(proxy, msg));
                        continue;
                    }
                    Ok(None) => {}
                    Err(e) => {
                        eprintln!("{proxy}: bad frame from the pnc: {e}");
                        break;
                    }
                }
                match rd.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => reader.push(&buf[..n]),
                }
            }
            if let Some(h) = heartbeat {
                h.abort();
            }
            say(&format!("closed {proxy}"));
            let _ = events.send(Received::Closed(proxy));
        });
        self.addrs.insert(addr, proxy);
        self.cursor
            .insert(proxy, self.received.get(&proxy).map_or(0, Vec::len));
        self.conns.insert(
            proxy,
            Conn {
                tx,
                muted,
                tasks: vec![writer, reader],
            },
        );
        Ok(())
    }

    fn send(&mut self, proxy: ProxyId, msg: ProxyMsg, quiet: bool) -> anyhow::Result<()> {
        self.drain();
        let conn = self
            .conns
            .get(&proxy)
            .with_context(|| format!("{proxy} is not connected"))?;
        if !quiet {
            say(&format!("sent {proxy} {}", json(&msg)));
        }
        conn.tx
            .send(msg)
            .map_err(|_| anyhow::anyhow!("{proxy}: connection closed"))
    }

    async fn expect(
        &mut self,
        proxy: ProxyId,
        kind: &str,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            self.drain();
            let from = self.cursor.get(&proxy).copied().unwrap_or(0);
            if let Some(list) = self.received.get(&proxy)
                && let Some(i) = list.iter().skip(from).position(|k| *k == kind)
            {
                self.cursor.insert(proxy, from + i + 1);
                return Ok(());
            }
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(ev)) => self.note(ev),
                Ok(None) | Err(_) => {
                    bail!(
                        "{proxy} received no {kind} within {} ms",
                        timeout.as_millis()
                    )
                }
            }
        }
    }

    async fn viewer(&mut self, stream: &str, region: Option<&str>) -> anyhow::Result<()> {
        let public = self
            .opts
            .public
            .context("a `viewer` step needs --public ADDR")?;
        let path = match region {
            Some(r) => format!("/resolve/{stream}?region={r}"),
            None => format!("/resolve/{stream}"),
        };
        let (status, location, body) = http_get(public, &path).await?;
        if status != 302 {
            say(&format!("viewer {stream} -> {status} {}", body.trim()));
            return Ok(());
        }
        let location = location.context("302 without Location")?;
        let host = location
            .strip_prefix("http://")
            .and_then(|r| r.split('/').next())
            .with_context(|| format!("unexpected Location {location:?}"))?;
        let addr: SocketAddr = host
            .parse()
            .with_context(|| format!("unexpected Location {location:?}"))?;
        let proxy = *self
            .addrs
            .get(&addr)
            .with_context(|| format!("{location}: not a proxy of this script"))?;
        say(&format!("viewer {stream} -> {proxy} 302 {location}"));
        let before = match self.opts.admin {
            Some(admin) => Some(viewers_at(admin, proxy, stream).await?),
            None => None,
        };
        self.send(
            proxy,
            ProxyMsg::Login {
                stream: stream.to_string(),
                child: Child::Viewer,
            },
            false,
        )?;
        if let (Some(admin), Some(before)) = (self.opts.admin, before) {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            while viewers_at(admin, proxy, stream).await? <= before {
                if tokio::time::Instant::now() > deadline {
                    bail!("the LOGIN at {proxy} did not show in {admin}/api/topology within 10 s");
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        Ok(())
    }

    async fn step(&mut self, step: &Step) -> anyhow::Result<()> {
        match &step.action {
            Action::Hello(h) => self.hello(h).await?,
            Action::Send(p, msg) => self.send(*p, msg.clone(), false)?,
            Action::Heartbeat(p) => self.send(*p, empty_heartbeat(), false)?,
            Action::Mute(p, on) => {
                let conn = self
                    .conns
                    .get(p)
                    .with_context(|| format!("{p} is not connected"))?;
                conn.muted.store(*on, Ordering::Relaxed);
                say(&format!("{} {p}", if *on { "muted" } else { "unmuted" }));
            }
            Action::Close(p) => {
                self.conns.remove(p);
                say(&format!("closed {p}"));
            }
            Action::Expect {
                proxy,
                kind,
                timeout,
            } => self.expect(*proxy, kind, *timeout).await?,
            Action::Viewer { stream, region } => self.viewer(stream, region.as_deref()).await?,
            Action::WaitStream { stream, timeout } => {
                let admin = self
                    .opts
                    .admin
                    .context("a `wait-stream` step needs --admin ADDR")?;
                let deadline = tokio::time::Instant::now() + *timeout;
                while !stream_listed(admin, stream).await? {
                    if tokio::time::Instant::now() > deadline {
                        bail!("{stream} not in {admin}/api/topology within {timeout:?}");
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                say(&format!("stream {stream} listed"));
            }
            Action::Sleep(d) => tokio::time::sleep(*d).await,
        }
        if let Some(d) = step.sleep_after {
            tokio::time::sleep(d).await;
        }
        Ok(())
    }
}

async fn topology(admin: SocketAddr) -> anyhow::Result<crate::core::Topology> {
    let (status, _, body) = http_get(admin, "/api/topology").await?;
    if status != 200 {
        bail!("{admin}/api/topology answered {status}");
    }
    serde_json::from_str(&body).context("cannot parse /api/topology")
}

async fn stream_listed(admin: SocketAddr, stream: &str) -> anyhow::Result<bool> {
    Ok(topology(admin)
        .await?
        .streams
        .iter()
        .any(|s| s.stream == stream))
}

/// Viewers of `stream` at `proxy` per the admin topology (0 if it is not active).
async fn viewers_at(admin: SocketAddr, proxy: ProxyId, stream: &str) -> anyhow::Result<u32> {
    Ok(topology(admin)
        .await?
        .streams
        .iter()
        .filter(|s| s.stream == stream)
        .flat_map(|s| &s.regions)
        .flat_map(|r| &r.tiers)
        .flat_map(|t| &t.active)
        .filter(|a| a.proxy == proxy)
        .map(|a| a.viewers)
        .sum())
}

fn empty_heartbeat() -> ProxyMsg {
    ProxyMsg::Heartbeat {
        streams: Vec::new(),
        connections: 0,
        bits_per_sec: 0,
        rtts: Vec::new(),
    }
}

/// A minimal HTTP/1.1 GET (the answer is small and the connection is closed after it).
async fn http_get(addr: SocketAddr, path: &str) -> anyhow::Result<(u16, Option<String>, String)> {
    let fetch = async {
        let mut s = TcpStream::connect(addr).await?;
        let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await?;
        let mut raw = Vec::new();
        s.take(64 << 20).read_to_end(&mut raw).await?;
        anyhow::Ok(raw)
    };
    let raw = tokio::time::timeout(Duration::from_secs(5), fetch)
        .await
        .context("HTTP request timed out")??;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .context("no HTTP status line")?;
    let location = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.eq_ignore_ascii_case("location"))
        .map(|(_, v)| v.trim().to_string());
    Ok((status, location, body.to_string()))
}

/// Run `steps`; connections close when it returns.
pub async fn run_script(steps: &[Step], opts: ScriptOptions) -> anyhow::Result<()> {
    let (events_tx, events) = mpsc::unbounded_channel();
    let mut runner = Runner {
        opts,
        conns: HashMap::new(),
        addrs: HashMap::new(),
        events_tx,
        events,
        received: HashMap::new(),
        cursor: HashMap::new(),
    };
    for step in steps {
        runner
            .step(step)
            .await
            .with_context(|| format!("line {}", step.line))?;
    }
    // Let the writers flush what the last steps queued.
    tokio::time::sleep(Duration::from_millis(100)).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_step() {
        let text = "\
# figure 2
hello P31 capacity=3 rtt=P1:50,2:60 region=R1
P1 announce demo source=www.ccrl.com bitrate=1000 sleep=10
31 login demo
P31 login demo proxy=P21
P31 logoff demo viewer
P21 link-down demo parent=P11
P31 expect Activate 200
viewer demo region=R2
wait-stream demo 100
sleep 5
P31 mute
";
        let steps = parse_script(text).unwrap();
        assert_eq!(steps.len(), 11);
        match &steps[0].action {
            Action::Hello(h) => {
                assert_eq!(h.proxy, ProxyId(31));
                assert_eq!(h.capacity, 3);
                assert_eq!(h.rtts.len(), 2);
                assert_eq!(h.rtts[1].micros, 60_000);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(steps[1].sleep_after, Some(Duration::from_millis(10)));
        assert_eq!(
            steps[3].action,
            Action::Send(
                ProxyId(31),
                ProxyMsg::Login {
                    stream: "demo".into(),
                    child: Child::Proxy(ProxyId(21))
                }
            )
        );
        assert_eq!(steps[2].line, 4);
    }

    #[test]
    fn hello_with_streams() {
        let steps = parse_script(
            "hello P1 stream=demo,source=www.ccrl.com,children=11\n\
             hello P21 stream=demo,tier=2,parents=P11,children=31+32,accepting stream=x,tier=1\n",
        )
        .unwrap();
        let Action::Hello(h) = &steps[1].action else {
            panic!("{:?}", steps[1])
        };
        assert_eq!(h.streams.len(), 2);
        let d = &h.streams[0];
        assert_eq!((d.stream.as_str(), d.tier, d.accepting), ("demo", 2, true));
        assert_eq!(d.parents, vec![ProxyId(11)]);
        assert_eq!(d.children, vec![ProxyId(31), ProxyId(32)]);
        let Action::Hello(h) = &steps[0].action else {
            panic!()
        };
        assert_eq!(h.streams[0].source.as_ref().unwrap().source, "www.ccrl.com");
        assert!(parse_script("hello P1 stream=demo,colour=red\n").is_err());
    }

    #[test]
    fn errors_name_the_line() {
        let e = parse_script("hello P1\nP1 fly demo\n").unwrap_err();
        assert!(e.starts_with("line 2:"), "{e}");
        let e = parse_script("P1 expect Nothing\n").unwrap_err();
        assert!(e.contains("unknown kind"), "{e}");
        let e = parse_script("hello P1 colour=red\n").unwrap_err();
        assert!(e.contains("colour"), "{e}");
    }

    #[test]
    fn default_addresses_differ_per_proxy() {
        assert_eq!(default_addr(ProxyId(31)).to_string(), "127.0.0.31:8000");
        assert_eq!(default_addr(ProxyId(300)).to_string(), "127.0.1.44:8000");
    }
}
