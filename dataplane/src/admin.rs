//! The admin port: `GET /metrics` (Prometheus) and `GET /status` (JSON), on loopback by default.
//!
//! Guarded like the data port, because a scraper's port that anyone on the host can open must not
//! be a way to take the relay down: at most `max_connections` at once (beyond that a `503` with
//! the reason, then close, so the admin port can never use the descriptors the data port keeps
//! in reserve: the data port's default cap leaves 64 of the open-files limit free and the admin
//! cap defaults to 32); a request head must arrive within `header_timeout`; and no connection
//! lives longer than `lifetime`, so that idle keep-alive connections give their slot back.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::sync::Semaphore;
use tracing::{info, warn};

/// Bounds on the admin port's connections.
#[derive(Clone, Copy, Debug)]
pub struct AdminLimits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub lifetime: Duration,
}

/// Refusals logged one by one; beyond that, one line per this many.
const LOG_EVERY: u64 = 100;

/// Serves `app` on `listener` within `limits` until the runtime stops.
pub async fn serve(listener: tokio::net::TcpListener, app: axum::Router, limits: AdminLimits) {
    let open = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let refused = AtomicU64::new(0);
    loop {
        let (sock, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: the connection stays in the backlog; try again shortly
                // rather than spinning.
                warn!("admin port: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = open.clone().try_acquire_owned() else {
            let n = refused.fetch_add(1, Ordering::Relaxed) + 1;
            if n <= 10 || n.is_multiple_of(LOG_EVERY) {
                info!(
                    "admin port: refused {peer}: {} connections open, the limit \
                     (--admin-max-connections); {n} refused so far",
                    limits.max_connections
                );
            }
            // A clear answer, written only if the socket takes it at once: a refused peer gets
            // no buffer and no task of ours.
            let body = format!(
                "admin connections at the limit ({})\n",
                limits.max_connections
            );
            let reply = format!(
                "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = sock.try_write(reply.as_bytes());
            continue;
        };
        let service = TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .serve_connection(TokioIo::new(sock), service);
            if tokio::time::timeout(limits.lifetime, conn).await.is_err() {
                info!("admin port: closed {peer} after {:?}", limits.lifetime);
            }
            drop(permit);
        });
    }
}
