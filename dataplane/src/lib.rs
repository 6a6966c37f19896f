//! VAN relay: ingest of live streams, fan-out to viewers and child proxies.
//!
//! What decides (framing, the stream window, cursors, lag policy, protocol parsing) lives in
//! plain modules with no I/O; the io_uring reactor only moves bytes and turns completions into
//! events for them.

pub mod cursor;
pub mod frame;
pub mod pool;
pub mod window;
