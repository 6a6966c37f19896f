//! HTTP front ends (axum).
//!
//! Admin port (loopback by default, unauthenticated): `GET /api/topology` (the core's
//! [`crate::core::Topology`] as JSON), `GET /metrics` (Prometheus, OpenMetrics text),
//! `GET /status` (JSON summary), `GET /` (a live topology page that polls `/api/topology`) and
//! `POST /api/anticipate` (an event's expected audience, [`super::announce`]).
//!
//! Public port: `GET /resolve/{stream}[?region=R]` → `302 Location: http://PROXY/live/{stream}`
//! ([0033]); the region is `?region=R` or the client's address through the CIDR table. `404`
//! with a reason when no source publishes the stream, `503` with a reason when no proxy can take
//! the viewer, `400` for a stream name that is not a plain name.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::Router;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::Deserialize;
use tracing::{debug, warn};

use super::control::{CoordinatorHandle, Snapshot};

/// Longest stream name accepted.
pub const MAX_STREAM_NAME: usize = 128;

/// A stream name is 1–128 of `[A-Za-z0-9._-]`, not starting with a dot: it goes into URLs and
/// DNS labels unchanged.
pub fn valid_stream_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_STREAM_NAME
        && !s.starts_with('.')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

pub fn admin_router(handle: CoordinatorHandle) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/api/topology", get(topology))
        .route("/metrics", get(metrics))
        .route("/status", get(status))
        .with_state(handle)
}

pub fn public_router(handle: CoordinatorHandle) -> Router {
    Router::new()
        .route("/resolve/{stream}", get(resolve))
        .with_state(handle)
}

pub(super) fn unavailable() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        "the coordinator did not answer in time\n",
    )
        .into_response()
}

async fn topology(State(h): State<CoordinatorHandle>) -> Response {
    match h.snapshot().await {
        Some(s) => Json(s.topology).into_response(),
        None => unavailable(),
    }
}

async fn status(State(h): State<CoordinatorHandle>) -> Response {
    let Some(s) = h.snapshot().await else {
        return unavailable();
    };
    Json(serde_json::json!({
        "service": "pnc",
        "version": env!("CARGO_PKG_VERSION"),
        "proxies_registered": s.topology.proxies.len(),
        "proxies_alive": s.topology.proxies.iter().filter(|p| p.alive).count(),
        "proxies_connected": s.connected,
        "streams": s.topology.streams.len(),
        "uptime_us": s.topology.at.0,
    }))
    .into_response()
}

async fn metrics(State(h): State<CoordinatorHandle>) -> Response {
    let Some(s) = h.snapshot().await else {
        return unavailable();
    };
    let mut text = String::new();
    if let Err(e) = encode(&mut text, &registry(&s, &h)) {
        warn!(error = %e, "cannot encode metrics");
        return (StatusCode::INTERNAL_SERVER_ERROR, "cannot encode metrics\n").into_response();
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

type Labels = Vec<(String, String)>;

/// A registry filled from one snapshot (cheap: one per scrape).
fn registry(s: &Snapshot, h: &CoordinatorHandle) -> Registry {
    let mut r = Registry::with_prefix("pnc");
    let c = &s.counters;
    let counters: [(&str, &str, u64); 17] = [
        ("events", "Events handled by the coordinator", c.events),
        (
            "registrations",
            "Proxy registrations and re-registrations",
            c.registrations,
        ),
        (
            "activations",
            "Proxies activated for a stream",
            c.activations,
        ),
        (
            "deactivations",
            "Proxies deactivated for a stream",
            c.deactivations,
        ),
        ("distributes", "DISTRIBUTE decisions [0059]", c.distributes),
        (
            "distributes_unserved",
            "DISTRIBUTEs with nothing to add (overlay full)",
            c.distributes_unserved,
        ),
        ("regroups", "Regroupings by MIN_s [0060]", c.regroups),
        ("farms", "Farms activated [0042]", c.farms),
        (
            "consolidations",
            "CONSOLIDATE carried out [0062]",
            c.consolidations,
        ),
        (
            "consolidations_ignored",
            "CONSOLIDATE requests ignored",
            c.consolidations_ignored,
        ),
        (
            "link_downgrades",
            "LinkDowngrade reports [0066]",
            c.link_downgrades,
        ),
        (
            "heartbeat_timeouts",
            "Proxies declared crashed by heartbeat timeout or removal [0066]",
            c.crashes,
        ),
        (
            "redirects",
            "Viewer redirections asked for [0033]",
            c.resolves,
        ),
        (
            "redirect_failures",
            "Redirections with no proxy to offer",
            c.resolve_failures,
        ),
        (
            "migrations",
            "Parent switches (children migrated) [0037] [0066]",
            c.parent_switches,
        ),
        (
            "protocol_errors",
            "Proxy messages out of place, ignored",
            c.protocol_errors,
        ),
        ("streams_started", "Streams announced", c.streams_started),
    ];
    for (name, help, v) in counters {
        let m = Counter::<u64>::default();
        m.inc_by(v);
        r.register(name, help, m);
    }
    let st = &h.stats;
    let service: [(&str, &str, &std::sync::atomic::AtomicU64); 6] = [
        ("http_resolves", "GET /resolve requests", &st.resolve_http),
        (
            "control_connections",
            "Control connections accepted",
            &st.connections_total,
        ),
        (
            "hellos_refused",
            "Hellos refused (wrong token, version, not a hello)",
            &st.hellos_refused,
        ),
        (
            "frame_errors",
            "Control connections closed on a bad frame",
            &st.frame_errors,
        ),
        (
            "slow_proxies_disconnected",
            "Proxies disconnected for not reading",
            &st.slow_proxies_disconnected,
        ),
        ("dns_queries", "DNS queries answered", &st.dns_queries),
    ];
    for (name, help, v) in service {
        let m = Counter::<u64>::default();
        m.inc_by(v.load(Ordering::Relaxed));
        r.register(name, help, m);
    }
    let proxies = Family::<Labels, Gauge>::default();
    let alive = s.topology.proxies.iter().filter(|p| p.alive).count();
    let down = s.topology.proxies.len() - alive;
    proxies
        .get_or_create(&vec![("state".into(), "alive".into())])
        .set(alive as i64);
    proxies
        .get_or_create(&vec![("state".into(), "down".into())])
        .set(down as i64);
    r.register("proxies", "Registered proxies by state", proxies);
    let open = Gauge::<i64>::default();
    open.set(i64::try_from(st.connections_open.load(Ordering::Relaxed)).unwrap_or(i64::MAX));
    r.register(
        "control_connections_open",
        "Control connections open now (registered or not)",
        open,
    );
    let connected = Gauge::<i64>::default();
    connected.set(s.connected as i64);
    r.register(
        "proxies_connected",
        "Proxies with an open control connection",
        connected,
    );
    let active = Family::<Labels, Gauge>::default();
    let viewers = Family::<Labels, Gauge>::default();
    for sv in &s.topology.streams {
        let mut by_phase: BTreeMap<String, i64> = BTreeMap::new();
        for t in sv.regions.iter().flat_map(|r| &r.tiers) {
            for a in &t.active {
                *by_phase
                    .entry(format!("{:?}", a.phase).to_lowercase())
                    .or_default() += 1;
            }
        }
        for (phase, n) in by_phase {
            active
                .get_or_create(&vec![
                    ("stream".into(), sv.stream.clone()),
                    ("phase".into(), phase),
                ])
                .set(n);
        }
        viewers
            .get_or_create(&vec![("stream".into(), sv.stream.clone())])
            .set(i64::from(sv.viewers));
    }
    r.register(
        "stream_active_proxies",
        "Active proxies per stream and phase [0030]",
        active,
    );
    r.register("stream_viewers", "Viewers per stream", viewers);
    r
}

#[derive(Debug, Deserialize)]
struct ResolveQuery {
    region: Option<String>,
}

async fn resolve(
    State(h): State<CoordinatorHandle>,
    ConnectInfo(ClientAddr(client)): ConnectInfo<ClientAddr>,
    Path(stream): Path<String>,
    Query(q): Query<ResolveQuery>,
) -> Response {
    h.stats.resolve_http.fetch_add(1, Ordering::Relaxed);
    if !valid_stream_name(&stream) {
        return (
            StatusCode::BAD_REQUEST,
            "a stream name is 1-128 characters of A-Z a-z 0-9 . _ -\n",
        )
            .into_response();
    }
    let region = q.region.filter(|r| !r.is_empty());
    let Some(answer) = h.resolve(stream.clone(), region, Some(client.ip())).await else {
        return unavailable();
    };
    let r = answer.resolution;
    match r.target {
        Some(peer) => {
            let location = format!("http://{}/live/{}", peer.addr, stream);
            debug!(%client, %stream, region = %r.region, proxy = %peer.id, "redirect");
            match HeaderValue::from_str(&location) {
                Ok(v) => (
                    StatusCode::FOUND,
                    [(header::LOCATION, v)],
                    format!("{location}\n"),
                )
                    .into_response(),
                Err(_) => {
                    (StatusCode::INTERNAL_SERVER_ERROR, "bad proxy address\n").into_response()
                }
            }
        }
        None if !answer.stream_known => (
            StatusCode::NOT_FOUND,
            format!("no such stream: {stream} ({})\n", r.reason),
        )
            .into_response(),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "no proxy for {stream} in region {}: {}\n",
                r.region, r.reason
            ),
        )
            .into_response(),
    }
}

async fn page() -> Html<&'static str> {
    Html(PAGE)
}

/// The live topology page: plain HTML and a little script, no outside assets.
const PAGE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>VAN topology</title>
<style>
body{font:14px system-ui,sans-serif;margin:1.5em;color:#222}
h2{margin:1.2em 0 .3em}.tier{display:flex;gap:.6em;margin:.3em 0;align-items:flex-start}
.label{width:5em;color:#666}.p{border:1px solid #999;border-radius:6px;padding:.3em .5em;min-width:8em}
.Expansion{background:#e6f6e6}.Contraction{background:#fff3d6}.Idle{background:#eee}
.standby{border-style:dashed}.small{color:#555;font-size:12px}#err{color:#b00}
</style></head><body>
<h1>VAN topology</h1><div id="err"></div><div id="proxies" class="small"></div><div id="streams"></div>
<script>
function esc(s){return String(s).replace(/[&<>"]/g,c=>({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;'}[c]))}
function name(id){return 'P'+id}
function names(ids){return ids.length?ids.map(name).join(' '):'none'}
async function refresh(){
  try{
    const t=await (await fetch('api/topology')).json();
    document.getElementById('err').textContent='';
    document.getElementById('proxies').innerHTML='proxies: '+t.proxies.map(p=>
      esc(name(p.proxy))+(p.alive?'':' (down)')+' '+p.connections+'/'+p.capacity.connections).join(', ');
    let h='';
    for(const s of t.streams){
      h+='<h2>'+esc(s.stream)+'</h2><div class="small">source '+esc(s.source.source)+' at '+
         esc(name(s.origin))+', '+s.viewers+' viewers</div>';
      for(const r of s.regions){
        h+='<h3>region '+esc(r.region)+'</h3>';
        for(const tier of r.tiers){
          h+='<div class="tier"><div class="label">tier '+tier.tier+'</div>';
          for(const a of tier.active){
            h+='<div class="p '+esc(a.phase)+(a.standby?' standby':'')+'"><b>'+esc(name(a.proxy))+'</b> '+
               esc(a.phase)+(a.standby?' standby':'')+(a.accepting?' accepting':'')+
               '<div class="small">load '+a.load+'/'+a.capacity+', viewers '+a.viewers+
               '<br>parents '+names(a.parents)+'<br>children '+names(a.children)+'</div></div>';
          }
          h+='<div class="small">overlay '+names(tier.overlay)+'</div></div>';
        }
      }
    }
    document.getElementById('streams').innerHTML=h||'<p>no streams</p>';
  }catch(e){document.getElementById('err').textContent='cannot load: '+e}
}
refresh();setInterval(refresh,1000);
</script></body></html>
"#;

/// A listener for the HTTP ports that bounds what a client can hold: at most `max`
/// connections at once (the next waits in the kernel backlog) and each connection closed
/// `lifetime` after it was accepted, whatever it is doing, so a client that sends its request
/// slowly (or never) cannot keep a connection forever. Requests here are short (a redirect, a
/// JSON document); the topology page reconnects on its next poll.
pub struct BoundedListener {
    inner: tokio::net::TcpListener,
    slots: std::sync::Arc<tokio::sync::Semaphore>,
    lifetime: std::time::Duration,
}

impl BoundedListener {
    pub fn new(inner: tokio::net::TcpListener, max: usize, lifetime: std::time::Duration) -> Self {
        BoundedListener {
            inner,
            slots: std::sync::Arc::new(tokio::sync::Semaphore::new(max)),
            lifetime,
        }
    }
}

impl axum::serve::Listener for BoundedListener {
    type Io = BoundedIo;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        // The semaphore is never closed, so acquiring cannot fail; if it ever did, serve
        // without a slot rather than stop accepting.
        let slot = self.slots.clone().acquire_owned().await.ok();
        loop {
            match self.inner.accept().await {
                Ok((io, addr)) => {
                    let _ = io.set_nodelay(true);
                    let io = BoundedIo {
                        io,
                        deadline: Box::pin(tokio::time::sleep(self.lifetime)),
                        _slot: slot,
                    };
                    return (io, addr);
                }
                Err(e) => {
                    // EMFILE and the like: wait a little rather than spin.
                    warn!(error = %e, "HTTP accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// A connection of [`BoundedListener`]: reads and writes fail once its lifetime is over.
pub struct BoundedIo {
    io: tokio::net::TcpStream,
    deadline: std::pin::Pin<Box<tokio::time::Sleep>>,
    _slot: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl BoundedIo {
    fn expired(&mut self, cx: &mut std::task::Context<'_>) -> bool {
        std::future::Future::poll(self.deadline.as_mut(), cx).is_ready()
    }
}

fn timed_out() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        "HTTP connection lifetime over",
    )
}

impl tokio::io::AsyncRead for BoundedIo {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.expired(cx) {
            return std::task::Poll::Ready(Err(timed_out()));
        }
        std::pin::Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for BoundedIo {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        if this.expired(cx) {
            return std::task::Poll::Ready(Err(timed_out()));
        }
        std::pin::Pin::new(&mut this.io).poll_write(cx, buf)
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.expired(cx) {
            return std::task::Poll::Ready(Err(timed_out()));
        }
        std::pin::Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// The client's address on a [`BoundedListener`] (axum's `ConnectInfo`).
#[derive(Clone, Copy, Debug)]
pub struct ClientAddr(pub SocketAddr);

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, BoundedListener>>
    for ClientAddr
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, BoundedListener>) -> Self {
        ClientAddr(*stream.remote_addr())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_names() {
        assert!(valid_stream_name("demo"));
        assert!(valid_stream_name("a.b_c-1"));
        assert!(!valid_stream_name(""));
        assert!(!valid_stream_name(".hidden"));
        assert!(!valid_stream_name("a/b"));
        assert!(!valid_stream_name("a b"));
        assert!(!valid_stream_name(&"x".repeat(129)));
    }
}
