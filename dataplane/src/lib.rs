//! VAN relay: ingest of live streams, fan-out to viewers and child proxies.
//!
//! What decides lives in plain modules with no I/O, each tested without a socket; the io_uring
//! [`reactor`] only moves bytes and turns completions into events for them.
//!
//! - The data port: [`frontdoor`] (what a request gets, on which core, the canned replies),
//!   [`http`] (request heads), [`auth`] (who may publish or pull VAN frames).
//! - The way in: [`ingest`] (a source's reads become frames), [`chunked`] (chunked bodies),
//!   [`mpegts`] (keyframes and PSI).
//! - The stream: [`stream`] (the directory of streams and their life), [`window`] (the blocks
//!   and frames a stream holds; [`window::reclaim`], when a block may be reused), [`pool`] (the
//!   registered block memory), [`frame`] (the VAN frame).
//! - The way out: [`fanout`] (each core's subscribers per stream), [`sendplan`] (what a
//!   subscriber is sent next, coalescing, the lag policy), [`cursor`] (positions in the window).
//! - Around: [`config`], [`metrics`], and [`reactor`] (the completion loop, connections, timers,
//!   syscalls).

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
