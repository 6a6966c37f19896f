//! The control socket and the task that owns the [`Coordinator`].
//!
//! One task ([`run_coordinator`]) owns the coordinator. Every connection task, the HTTP handlers
//! and the DNS handler send it [`Input`]s over one channel; it turns each into an [`Event`] with
//! the time from a monotonic clock (microseconds since the service started), and carries out
//! the [`Command`]s: `Send` goes to the connection of that proxy, `Resolved` answers the waiting
//! HTTP or DNS request, `Log` becomes a tracing line (target `pnc::decision`). A tick every
//! Δt/10 ([0065]) drives the predictors and the heartbeat-timeout check ([0066]).
//!
//! A connection: the first frame must be a `Hello` (within [`HELLO_TIMEOUT`]) with our
//! protocol version and token, else `Refused` is sent, a warning logged and the connection
//! closed. Frames that do not decode close the connection with a warning. A proxy whose outgoing
//! queue is full (it does not read) is disconnected rather than let it stall the coordinator. A
//! second hello for a proxy id that is connected replaces the older connection (a restarted
//! proxy must not wait for its old socket to time out); the older one is closed and logged.
//! When the core answers a proxy `Refused` (an id the configuration does not list, or a proxy
//! it declared crashed), the refusal is sent and the connection closed.

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use crate::core::{
    Command, Coordinator, Counters, Decision, Event, Registration, Resolution, Rule, Time, Topology,
};
use crate::protocol::{
    FrameReader, Hello, Peer, PncMsg, ProxyId, ProxyMsg, Refusal, check_hello, encode_frame,
};

/// How long a new connection has to send its hello.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// Messages queued for one proxy before it is declared too slow and disconnected.
const PROXY_QUEUE: usize = 4096;
/// Inputs queued for the coordinator task.
const INPUT_QUEUE: usize = 65_536;
/// How long an HTTP or DNS request waits for the coordinator.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(3);

/// Counters of the service itself (the core keeps its own [`Counters`]).
#[derive(Debug, Default)]
pub struct ServiceStats {
    pub connections_open: AtomicU64,
    pub connections_total: AtomicU64,
    pub hellos_refused: AtomicU64,
    pub frame_errors: AtomicU64,
    pub slow_proxies_disconnected: AtomicU64,
    pub resolve_http: AtomicU64,
    pub dns_queries: AtomicU64,
}

/// What the coordinator task receives.
#[derive(Debug)]
pub enum Input {
    /// A connection passed the hello check.
    Registered {
        conn: u64,
        hello: Box<Hello>,
        tx: mpsc::Sender<PncMsg>,
    },
    Message {
        conn: u64,
        proxy: ProxyId,
        msg: ProxyMsg,
    },
    Closed {
        conn: u64,
        proxy: ProxyId,
    },
    Resolve {
        stream: String,
        region: Option<String>,
        client: Option<IpAddr>,
        reply: oneshot::Sender<Answer>,
    },
    /// Proxies that take new viewers of a stream in the region of `client` (DNS), and whether
    /// the stream exists.
    Accepting {
        stream: String,
        client: IpAddr,
        reply: oneshot::Sender<(bool, Vec<Peer>)>,
    },
    Snapshot {
        reply: oneshot::Sender<Snapshot>,
    },
    /// The operator announces an event's audience ([0033]).
    Anticipate {
        stream: String,
        region: Option<String>,
        viewers: u64,
        ramp_secs: f64,
        reply: oneshot::Sender<Anticipated>,
    },
}

/// Answer to [`Input::Anticipate`].
#[derive(Clone, Debug)]
pub struct Anticipated {
    /// Whether a source publishes the stream (404 when not).
    pub stream_known: bool,
    /// The core's decisions on it, one per region.
    pub decisions: Vec<String>,
}

/// Answer to [`Input::Resolve`].
#[derive(Clone, Debug)]
pub struct Answer {
    pub resolution: Resolution,
    /// Whether a source publishes the stream (404 or NXDOMAIN when not).
    pub stream_known: bool,
}

/// What the admin endpoints show.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub topology: Topology,
    pub counters: Counters,
    pub connected: usize,
}

/// The coordinator task's address: cloneable, used by every front end.
#[derive(Clone, Debug)]
pub struct CoordinatorHandle {
    tx: mpsc::Sender<Input>,
    pub stats: Arc<ServiceStats>,
}

impl CoordinatorHandle {
    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Input) -> Option<T> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(make(reply)).await.ok()?;
        tokio::time::timeout(QUERY_TIMEOUT, rx).await.ok()?.ok()
    }

    /// Which proxy a new viewer should use ([0033]); `None` if the coordinator did not answer.
    pub async fn resolve(
        &self,
        stream: String,
        region: Option<String>,
        client: Option<IpAddr>,
    ) -> Option<Answer> {
        self.ask(|reply| Input::Resolve {
            stream,
            region,
            client,
            reply,
        })
        .await
    }

    /// Proxies taking new viewers of `stream` in the region of `client` ([0026], [0049]).
    pub async fn accepting(&self, stream: String, client: IpAddr) -> Option<(bool, Vec<Peer>)> {
        self.ask(|reply| Input::Accepting {
            stream,
            client,
            reply,
        })
        .await
    }

    /// Tell the coordinator what audience to expect ([0033]).
    pub async fn anticipate(
        &self,
        stream: String,
        region: Option<String>,
        viewers: u64,
        ramp_secs: f64,
    ) -> Option<Anticipated> {
        self.ask(|reply| Input::Anticipate {
            stream,
            region,
            viewers,
            ramp_secs,
            reply,
        })
        .await
    }

    pub async fn snapshot(&self) -> Option<Snapshot> {
        self.ask(|reply| Input::Snapshot { reply }).await
    }
}

/// One proxy's connection as the coordinator task routes to it.
struct Route {
    conn: u64,
    tx: mpsc::Sender<PncMsg>,
}

/// State of the coordinator task.
struct CoordinatorTask {
    core: Coordinator,
    start: Instant,
    routes: HashMap<ProxyId, Route>,
    next_request: u64,
    /// Streams with a source, as of `known_at` (see `stream_known`).
    known: BTreeSet<String>,
    known_at: Option<Instant>,
    stats: Arc<ServiceStats>,
}

const KNOWN_REFRESH: Duration = Duration::from_millis(500);

impl CoordinatorTask {
    fn now(&self) -> Time {
        Time(u64::try_from(self.start.elapsed().as_micros()).unwrap_or(u64::MAX))
    }

    /// Handle one event and carry out its commands; returns the resolutions among them.
    fn handle(&mut self, event: Event) -> Vec<Resolution> {
        self.handle_noting(event, |_| {})
    }

    /// `handle`, showing `note` each decision as it is logged.
    fn handle_noting(&mut self, event: Event, mut note: impl FnMut(&Decision)) -> Vec<Resolution> {
        let now = self.now();
        let commands = self.core.handle(event, now);
        let mut resolved = Vec::new();
        for c in commands {
            match c {
                Command::Send { to, msg } => self.send(to, msg),
                Command::Resolved(r) => resolved.push(r),
                Command::Log(d) => {
                    note(&d);
                    info!(
                    target: "pnc::decision",
                    rule = ?d.rule,
                    cites = d.rule.cites(),
                    stream = d.stream.as_deref().unwrap_or("-"),
                    proxy = %d.proxy.map_or_else(|| "-".to_string(), |p| p.to_string()),
                    at_us = d.at.0,
                    "{}",
                    d.reason
                    )
                }
            }
        }
        resolved
    }

    fn send(&mut self, to: ProxyId, msg: PncMsg) {
        let Some(route) = self.routes.get(&to) else {
            debug!(proxy = %to, ?msg, "not connected; message dropped");
            return;
        };
        let refused = matches!(msg, PncMsg::Refused(_));
        match route.tx.try_send(msg) {
            Ok(()) if refused => {
                // The core refused the proxy (an unlisted id, or one it declared crashed): the
                // writer sends what is queued, the refusal last, and closes the connection; the
                // proxy registers again ([0066]).
                warn!(proxy = %to, "refused by the coordinator; connection closed");
                self.stats.hellos_refused.fetch_add(1, Ordering::Relaxed);
                self.routes.remove(&to);
            }
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                // Never let one proxy that does not read stall the coordinator.
                warn!(proxy = %to, "outgoing queue full; disconnecting the proxy");
                self.stats
                    .slow_proxies_disconnected
                    .fetch_add(1, Ordering::Relaxed);
                self.routes.remove(&to);
                self.handle(Event::Disconnected { proxy: to });
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.routes.remove(&to);
            }
        }
    }

    /// Whether a source publishes `stream`. Asked only when no proxy was found for it (the
    /// rare case), from the topology cached for at most [`KNOWN_REFRESH`], so that a flood of
    /// unknown names costs at most one topology walk per period.
    // The core has no cheaper "does this stream exist" yet (asked for in the report).
    fn stream_known(&mut self, stream: &str) -> bool {
        if self.known_at.is_none_or(|t| t.elapsed() >= KNOWN_REFRESH) {
            self.known = self
                .core
                .topology()
                .streams
                .into_iter()
                .map(|s| s.stream)
                .collect();
            self.known_at = Some(Instant::now());
        }
        self.known.contains(stream)
    }

    fn input(&mut self, input: Input) {
        match input {
            Input::Registered { conn, hello, tx } => {
                let proxy = hello.proxy;
                if let Some(old) = self.routes.insert(proxy, Route { conn, tx }) {
                    warn!(%proxy, old_conn = old.conn, conn, "proxy connected again; the older connection is closed");
                }
                // A re-registration may bring streams back (PNC restart).
                self.known_at = None;
                self.handle(Event::Register(Registration::from(*hello)));
            }
            Input::Message { conn, proxy, msg } => {
                if self.routes.get(&proxy).is_some_and(|r| r.conn == conn) {
                    if matches!(
                        msg,
                        ProxyMsg::StreamAnnounce { .. } | ProxyMsg::StreamEnd { .. }
                    ) {
                        self.known_at = None;
                    }
                    self.handle(Event::Message { from: proxy, msg });
                }
            }
            Input::Closed { conn, proxy } => {
                if self.routes.get(&proxy).is_some_and(|r| r.conn == conn) {
                    self.routes.remove(&proxy);
                    self.handle(Event::Disconnected { proxy });
                }
            }
            Input::Resolve {
                stream,
                region,
                client,
                reply,
            } => {
                self.next_request += 1;
                let request = self.next_request;
                let resolved = self.handle(Event::Resolve {
                    request,
                    stream: stream.clone(),
                    region,
                    client,
                });
                if let Some(resolution) = resolved.into_iter().find(|r| r.request == request) {
                    let stream_known =
                        resolution.target.is_some() || self.stream_known(&resolution.stream);
                    let _ = reply.send(Answer {
                        resolution,
                        stream_known,
                    });
                }
            }
            Input::Accepting {
                stream,
                client,
                reply,
            } => {
                let region = self.core.region_of(client);
                let peers = self.core.accepting(&stream, Some(&region));
                let known = !peers.is_empty() || self.stream_known(&stream);
                let _ = reply.send((known, peers));
            }
            Input::Anticipate {
                stream,
                region,
                viewers,
                ramp_secs,
                reply,
            } => {
                let mut decisions = Vec::new();
                self.handle_noting(
                    Event::Anticipate {
                        stream: stream.clone(),
                        region,
                        viewers,
                        ramp_secs,
                    },
                    |d| {
                        if d.rule == Rule::Anticipate {
                            decisions.push(d.reason.clone());
                        }
                    },
                );
                let stream_known = self.stream_known(&stream);
                let _ = reply.send(Anticipated {
                    stream_known,
                    decisions,
                });
            }
            Input::Snapshot { reply } => {
                let _ = reply.send(Snapshot {
                    topology: self.core.topology(),
                    counters: self.core.counters().clone(),
                    connected: self.routes.len(),
                });
            }
        }
    }
}

/// Start the coordinator task; returns its handle.
pub fn spawn_coordinator(core: Coordinator, stats: Arc<ServiceStats>) -> CoordinatorHandle {
    let (tx, rx) = mpsc::channel(INPUT_QUEUE);
    let tick = Duration::from_micros(core.config().tick_micros()).max(Duration::from_millis(1));
    let task = CoordinatorTask {
        core,
        start: Instant::now(),
        routes: HashMap::new(),
        next_request: 0,
        known: BTreeSet::new(),
        known_at: None,
        stats: stats.clone(),
    };
    tokio::spawn(run_coordinator(task, rx, tick));
    CoordinatorHandle { tx, stats }
}

async fn run_coordinator(mut task: CoordinatorTask, mut rx: mpsc::Receiver<Input>, tick: Duration) {
    let mut ticker = tokio::time::interval(tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            input = rx.recv() => match input {
                Some(input) => task.input(input),
                None => break,
            },
            _ = ticker.tick() => {
                task.handle(Event::Tick);
            }
        }
    }
}

/// Accept proxies on `listener` forever, at most `max_connections` open at once.
pub async fn serve_control(
    listener: TcpListener,
    handle: CoordinatorHandle,
    token: Arc<str>,
    max_connections: usize,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(max_connections));
    let mut next_conn = 0u64;
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and the like: wait a little rather than spin.
                warn!(error = %e, "control socket accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            // Closing at once (rather than not accepting) keeps the backlog from hiding it.
            warn!(%peer, max_connections, "too many control connections; closed");
            handle.stats.hellos_refused.fetch_add(1, Ordering::Relaxed);
            drop(stream);
            continue;
        };
        next_conn += 1;
        let conn = next_conn;
        let handle = handle.clone();
        let token = token.clone();
        tokio::spawn(async move {
            let _slot = slot;
            handle
                .stats
                .connections_open
                .fetch_add(1, Ordering::Relaxed);
            handle
                .stats
                .connections_total
                .fetch_add(1, Ordering::Relaxed);
            connection(stream, peer, conn, &handle, &token).await;
            handle
                .stats
                .connections_open
                .fetch_sub(1, Ordering::Relaxed);
        });
    }
}

async fn write_msg(stream: &mut (impl AsyncWriteExt + Unpin), msg: &PncMsg) -> std::io::Result<()> {
    let frame = encode_frame(msg).map_err(std::io::Error::other)?;
    stream.write_all(&frame).await
}

/// Read frames until one message decodes; `Ok(None)` at a clean end of stream.
async fn read_msg(
    stream: &mut (impl AsyncReadExt + Unpin),
    reader: &mut FrameReader,
    buf: &mut [u8],
) -> Result<Option<ProxyMsg>, String> {
    loop {
        match reader.next_msg::<ProxyMsg>() {
            Ok(Some(msg)) => return Ok(Some(msg)),
            Ok(None) => {}
            Err(e) => return Err(e.to_string()),
        }
        let n = stream.read(buf).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return if reader.buffered() == 0 {
                Ok(None)
            } else {
                Err("connection closed inside a frame".into())
            };
        }
        reader.push(&buf[..n]);
    }
}

async fn connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    conn: u64,
    handle: &CoordinatorHandle,
    token: &str,
) {
    let _ = stream.set_nodelay(true);
    let mut reader = FrameReader::new();
    let mut buf = vec![0u8; 16 * 1024];
    let first = tokio::time::timeout(HELLO_TIMEOUT, read_msg(&mut stream, &mut reader, &mut buf));
    let hello = match first.await {
        Err(_) => {
            warn!(%peer, "no hello within {HELLO_TIMEOUT:?}; connection closed");
            handle.stats.hellos_refused.fetch_add(1, Ordering::Relaxed);
            return;
        }
        Ok(Ok(None)) => return,
        Ok(Err(e)) => {
            warn!(%peer, error = %e, "malformed first frame; connection closed");
            handle.stats.frame_errors.fetch_add(1, Ordering::Relaxed);
            return;
        }
        Ok(Ok(Some(ProxyMsg::Hello(h)))) => h,
        Ok(Ok(Some(_))) => {
            refuse(&mut stream, peer, None, Refusal::NotHello, handle).await;
            return;
        }
    };
    if let Err(reason) = check_hello(&hello, token) {
        refuse(&mut stream, peer, Some(hello.proxy), reason, handle).await;
        return;
    }
    let proxy = hello.proxy;
    info!(%peer, %proxy, name = %hello.name, conn, "proxy connected");
    let (tx, mut rx) = mpsc::channel::<PncMsg>(PROXY_QUEUE);
    if handle
        .tx
        .send(Input::Registered {
            conn,
            hello: Box::new(hello),
            tx,
        })
        .await
        .is_err()
    {
        return;
    }
    let (mut rd, mut wr) = stream.into_split();
    // The writer ends when the coordinator drops our sender (replaced, too slow, shutdown);
    // `done` resolves then, whichever way the writer ended.
    let (done_tx, mut done) = oneshot::channel::<()>();
    let writer = tokio::spawn(async move {
        let _done_tx = done_tx;
        while let Some(msg) = rx.recv().await {
            if let Err(e) = write_msg(&mut wr, &msg).await {
                debug!(%proxy, error = %e, "write failed");
                return;
            }
        }
        let _ = wr.shutdown().await;
    });
    let why = loop {
        tokio::select! {
            read = read_msg(&mut rd, &mut reader, &mut buf) => match read {
                Ok(Some(msg)) => {
                    if handle.tx.send(Input::Message { conn, proxy, msg }).await.is_err() {
                        break "the coordinator stopped".to_string();
                    }
                }
                Ok(None) => break "closed by the proxy".to_string(),
                Err(e) => {
                    handle.stats.frame_errors.fetch_add(1, Ordering::Relaxed);
                    warn!(%peer, %proxy, error = %e, "bad frame from proxy; connection closed");
                    break e;
                }
            },
            _ = &mut done => break "closed by the PNC".to_string(),
        }
    };
    writer.abort();
    info!(%peer, %proxy, conn, reason = %why, "proxy disconnected");
    let _ = handle.tx.send(Input::Closed { conn, proxy }).await;
}

async fn refuse(
    stream: &mut TcpStream,
    peer: SocketAddr,
    proxy: Option<ProxyId>,
    reason: Refusal,
    handle: &CoordinatorHandle,
) {
    handle.stats.hellos_refused.fetch_add(1, Ordering::Relaxed);
    warn!(%peer, proxy = ?proxy.map(|p| p.0), reason = %reason, "hello refused; connection closed");
    let _ = tokio::time::timeout(
        Duration::from_secs(2),
        write_msg(stream, &PncMsg::Refused(reason)),
    )
    .await;
    let _ = stream.shutdown().await;
}
