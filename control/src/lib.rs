//! VAN proxy network coordinator: the control protocol, the coordinator core (a pure state
//! machine with explicit time) and the `pnc` service around it.
//!
//! - [`agent`]: the proxy's side of the control protocol, [`agent::Agent`], a pure state
//!   machine the dataplane and the simulator drive.
//! - [`protocol`]: the messages between a proxy and the PNC, their framing and the hello check;
//!   both `pnc` and `dataplane` use it.
//! - [`core`]: [`core::Coordinator`], `handle(event, now) -> commands`, with no I/O.
//! - [`service`] (feature `service`): the `pnc` service around the core (control socket, HTTP,
//!   DNS, config).
//! - [`proxy_client`] (feature `proxy-client`): the proxy's side of the control connection over
//!   tokio; today the scripted proxy client.
//!
//! Both features are on by default. Without them (`default-features = false`) the crate is the
//! protocol and the core alone, with no tokio, axum or hickory: what the dataplane links.

pub mod agent;
pub mod core;
pub mod protocol;
#[cfg(feature = "proxy-client")]
pub mod proxy_client;
#[cfg(feature = "service")]
pub mod service;
