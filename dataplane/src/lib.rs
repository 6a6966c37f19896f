//! VAN relay: ingest of live streams, fan-out to viewers and child proxies.
//!
//! What decides lives in plain modules with no I/O, each tested without a socket; the io_uring
//! [`reactor`] only moves bytes and turns completions into events for them.
//!
//! - The data port: [`frontdoor`] (what a request gets, on which core, the canned replies),
//!   [`http`] (request heads), [`auth`] (who may publish or pull VAN frames).
//! - Pulling from a parent: [`pull`] (the parents of a stream: connections, back-off,
//!   make-before-break), [`response_head`] (the parent's answer), [`frame_reader`] (its VAN
//!   frames), [`parent_feed`] (what a parent's frame does to the stream).
//! - The way in: [`ingest`] (a source's reads become frames), [`chunked`] (chunked bodies),
//!   [`mpegts`] (keyframes and PSI).
//! - The stream: [`stream`] (the directory of streams and their life), [`window`] (the blocks
//!   and frames a stream holds; [`window::reclaim`], when a block may be reused), [`pool`] (the
//!   registered block memory), [`frame`] (the VAN frame).
//! - The way out: [`fanout`] (each core's subscribers per stream), [`sendplan`] (what a
//!   subscriber is sent next, coalescing, the lag policy), [`join_rate`] (a flash crowd), [`cursor`] (positions in the window).
//! - Under a PNC: [`orders`] (the control thread's orders to the reactors, the reactors' events
//!   for it, who may take a new viewer).
//! - Around: [`config`], [`metrics`], [`admin`] (the admin port and its limits), and [`reactor`] (the completion loop, connections, timers,
//!   syscalls).

pub mod admin;
pub mod auth;
pub mod chunked;
pub mod config;
pub mod cursor;
pub mod fanout;
pub mod frame;
pub mod frame_reader;
pub mod frontdoor;
pub mod host_cpu;
pub mod http;
pub mod ingest;
pub mod join_rate;
pub mod metrics;
pub mod mpegts;
pub mod orders;
pub mod parent_feed;
pub mod pnc_link;
pub mod pool;
pub mod pull;
pub mod reactor;
pub mod response_head;
pub mod sendplan;
pub mod stream;
pub mod window;
