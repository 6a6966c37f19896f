//! VAN proxy network coordinator: the control protocol, the coordinator core (a pure state
//! machine with explicit time) and the `pnc` service around it.
//!
//! - [`agent`]: the proxy's side of the control protocol, [`agent::Agent`], a pure state
//!   machine the dataplane and the simulator drive.
//! - [`protocol`]: the messages between a proxy and the PNC, their framing and the hello check;
//!   both `pnc` and `dataplane` use it.
//! - [`core`]: [`core::Coordinator`], `handle(event, now) -> commands`, with no I/O.
//! - [`service`]: the `pnc` service around the core (control socket, HTTP, DNS, config) and the
//!   scripted proxy client.

pub mod agent;
pub mod core;
pub mod protocol;
pub mod service;
