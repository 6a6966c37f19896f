//! VAN relay: ingest of live streams, fan-out to viewers and child proxies.
//!
//! What decides (framing, the stream window, cursors, lag policy, protocol parsing) lives in
//! plain modules with no I/O; the io_uring reactor only moves bytes and turns completions into
//! events for them.

pub mod auth;
pub mod chunked;
pub mod config;
pub mod cursor;
pub mod fanout;
pub mod frame;
pub mod frontdoor;
pub mod http;
pub mod ingest;
pub mod metrics;
pub mod mpegts;
pub mod pool;
pub mod reactor;
pub mod sendplan;
pub mod stream;
pub mod window;
