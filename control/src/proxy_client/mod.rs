//! The proxy's side of the control connection, over tokio but without the service's servers
//! (feature `proxy-client`): what a proxy-side agent builds on.
//!
//! - [`script`]: a scripted proxy client (`pnc script`), to exercise the service without a
//!   dataplane.

pub mod script;
