//! vanbench: load generation and fan-out benchmarks for VAN relays (and any HTTP relay that
//! takes a PUT or Icecast SOURCE and serves GET, such as Icecast itself).
//!
//! - [`record`]: the record format generated sources send and the streaming checker viewers run.
//! - [`van`]: checking VAN frames as they arrive, on top of `dataplane::frame_reader`.
//! - [`source`]: the publishing client (PUT chunked/close, SOURCE; paced or unlimited; raw input).
//! - [`viewers`]: thousands of checking viewers; [`crowd`]: the same viewers behaving like an
//!   outside load generator (one task and buffer each, all at once, greedy reads).
//! - [`fanout`]: a source and viewers together for a set time.
//! - [`sim`]: `vanbench simulate`, a discrete-event simulation of a whole VAN around the
//!   coordinator's own core, each relay machine running the proxies' own agent.
//! - [`tree`]: `vanbench tree`, the PNC's topology drawn as a text tree.
//! - [`curve`]: `vanbench curve`, the latency-to-CPU trade of fan-out runs as a chart;
//!   [`chart_style`]: the colours and error mapping every chart shares.
//! - [`summary`]: the JSON summary (a contract, /work/briefs/vanbench-cli.md) and its table.
//!
//! Benchmarks are programs that print figures; nothing here is a timed test.

pub mod chart_style;
pub mod crowd;
pub mod curve;
pub mod fanout;
pub mod http;
pub mod record;
pub mod sim;
pub mod source;
pub mod summary;
pub mod sys;
pub mod tree;
pub mod units;
pub mod van;
pub mod viewers;
pub mod viewing;
