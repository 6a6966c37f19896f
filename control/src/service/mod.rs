//! The `pnc` service: the I/O around the coordinator core.
//!
//! - [`config`]: the TOML file (defaults, errors with file:line:column);
//! - [`control`]: the control socket and the one task that owns the [`Coordinator`];
//! - [`http`]: admin port (`/api/topology`, `/metrics`, `/status`, the topology page) and public
//!   port (`/resolve/{stream}`);
//! - [`announce`]: `POST /api/anticipate` on the admin port, an event's expected audience;
//! - [`dns`]: `A`/`AAAA` answers for `{stream}.{zone}`.
//!
//! The scripted proxy client that exercises the service is a proxy's side, in
//! [`crate::proxy_client`].
//!
//! [`start`] binds every socket first (so a port in use fails before anything runs), then
//! spawns the tasks and returns the bound addresses.

pub mod announce;
pub mod config;
pub mod control;
pub mod dns;
pub mod http;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::{TcpListener, UdpSocket};

use crate::core::Coordinator;
use config::ServiceConfig;
use control::{CoordinatorHandle, ServiceStats};

/// Where the service listens once bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bound {
    pub control: SocketAddr,
    pub admin: SocketAddr,
    pub public: SocketAddr,
    pub dns: SocketAddr,
}

impl std::fmt::Display for Bound {
    /// The ready line the binary prints (a contract: tests and scripts parse it).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "listening control={} admin={} public={} dns={}",
            self.control, self.admin, self.public, self.dns
        )
    }
}

/// Bind every socket and start the service on the current tokio runtime.
pub async fn start(
    config: &ServiceConfig,
    token: String,
) -> anyhow::Result<(Bound, CoordinatorHandle)> {
    let l = &config.listen;
    let control = TcpListener::bind(l.control)
        .await
        .with_context(|| format!("cannot bind the control socket on {}", l.control))?;
    let admin = TcpListener::bind(l.admin)
        .await
        .with_context(|| format!("cannot bind the admin port on {}", l.admin))?;
    let public = TcpListener::bind(l.public)
        .await
        .with_context(|| format!("cannot bind the public port on {}", l.public))?;
    let (dns_udp, dns_tcp) = bind_dns(l.dns).await?;
    let dns_addr = dns_udp.local_addr()?;
    let bound = Bound {
        control: control.local_addr()?,
        admin: admin.local_addr()?,
        public: public.local_addr()?,
        dns: dns_addr,
    };
    let stats = Arc::new(ServiceStats::default());
    let handle = control::spawn_coordinator(Coordinator::new(config.core_config()), stats);
    tokio::spawn(control::serve_control(
        control,
        handle.clone(),
        Arc::from(token.as_str()),
        l.max_control_connections,
    ));
    let lifetime = std::time::Duration::from_secs(l.http_connection_secs);
    let admin = http::BoundedListener::new(admin, l.max_http_connections, lifetime);
    let public = http::BoundedListener::new(public, l.max_http_connections, lifetime);
    let admin_app = http::admin_router(handle.clone()).merge(announce::router(handle.clone()));
    tokio::spawn(async move {
        if let Err(e) = axum::serve(admin, admin_app).await {
            tracing::error!(error = %e, "admin HTTP server stopped");
        }
    });
    let public_app = http::public_router(handle.clone())
        .into_make_service_with_connect_info::<http::ClientAddr>();
    tokio::spawn(async move {
        if let Err(e) = axum::serve(public, public_app).await {
            tracing::error!(error = %e, "public HTTP server stopped");
        }
    });
    let dns = dns::StreamDns::new(handle.clone(), &config.dns.zone, config.dns.ttl_secs);
    tokio::spawn(dns::serve_dns(dns, dns_udp, dns_tcp));
    Ok((bound, handle))
}

/// Bind DNS on UDP and TCP at the same port. With port 0 the UDP socket picks the port and TCP
/// may find it taken by someone else: try again with another port, a few times.
async fn bind_dns(addr: SocketAddr) -> anyhow::Result<(UdpSocket, TcpListener)> {
    let tries = if addr.port() == 0 { 20 } else { 1 };
    let mut last = None;
    for _ in 0..tries {
        let udp = UdpSocket::bind(addr)
            .await
            .with_context(|| format!("cannot bind DNS (UDP) on {addr}"))?;
        let at = udp.local_addr()?;
        match TcpListener::bind(at).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) => last = Some((at, e)),
        }
    }
    let (at, e) = last.expect("at least one try");
    Err(e).with_context(|| format!("cannot bind DNS (TCP) on {at}"))
}
