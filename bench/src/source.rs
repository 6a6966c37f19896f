//! The source: publishes a stream to a relay or to Icecast over one TCP connection, the way
//! ffmpeg does (`-method PUT http://…` with a chunked body, or Icecast's `SOURCE` / a PUT with
//! `Expect: 100-continue` and a close-delimited body).
//!
//! Generated data is whole records (see [`crate::record`]), paced by a token bucket to the bit
//! rate in small steps so that bursts stay small, each batch stamped with the send time just
//! before its write. Raw bytes from a file or stdin are sent as read, paced the same way if a
//! bit rate is given. Blocking I/O on one thread: one connection needs nothing more.

use crate::http::{HttpUrl, basic_auth};
use crate::record::{encode_record, stamp_send_time};
use crate::sys::{now_us, thread_cpu_s};
use anyhow::{Context, bail};
use dataplane::response_head::parse_response_head;
use serde::Serialize;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Method {
    /// `PUT`, with `Expect: 100-continue` (ffmpeg `-method PUT`, Icecast ≥ 2.4).
    Put,
    /// Icecast's legacy `SOURCE` (HTTP/1.0, close-delimited body).
    Source,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Framing {
    /// `Transfer-Encoding: chunked`, one chunk per write.
    Chunked,
    /// No length and no chunking: the body ends when the connection closes.
    Close,
}

/// Where raw bytes come from instead of generated records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RawInput {
    Stdin,
    File(PathBuf),
}

#[derive(Clone, Debug)]
pub struct SourceConfig {
    pub url: HttpUrl,
    pub user: String,
    pub password: String,
    pub method: Method,
    pub framing: Framing,
    /// Bits per second; `None` sends as fast as the connection takes.
    pub bitrate: Option<u64>,
    pub record_size: usize,
    /// How long to send; `None` until stopped.
    pub duration: Option<Duration>,
    pub start_seq: u64,
    pub raw: Option<RawInput>,
    pub content_type: String,
    /// Pacing step: the longest the source sleeps between writes.
    pub pace: Duration,
}

/// Live counters another thread may read while the source runs.
#[derive(Debug, Default)]
pub struct SourceProgress {
    /// Body bytes written (records or raw bytes, without chunk framing).
    pub bytes: AtomicU64,
    pub records: AtomicU64,
    /// Set once the relay accepted the stream and the first bytes went out.
    pub started: AtomicBool,
}

/// The source's JSON summary.
#[derive(Clone, Debug, Serialize)]
pub struct SourceReport {
    pub records: u64,
    pub bytes: u64,
    pub seconds: f64,
    pub rate_bps: f64,
    pub first_seq: u64,
    pub next_seq: u64,
    /// CPU seconds of the sending thread.
    pub self_cpu_s: f64,
    /// Why sending ended: "duration", "stopped", "eof", or the write error.
    pub ended_by: String,
}

/// The largest batch written at once when unlimited (records are written whole).
const MAX_BATCH_BYTES: usize = 64 * 1024;

/// Connects, publishes until the duration passes, `stop` is set, the input ends or the peer
/// closes, and reports. Errors are for failing to start (connect, refused, bad answer).
pub fn run_source(
    cfg: &SourceConfig,
    stop: &AtomicBool,
    progress: &SourceProgress,
) -> anyhow::Result<SourceReport> {
    let cpu0 = thread_cpu_s();
    let addr = cfg.url.socket_addr()?;
    let mut sock = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
        .with_context(|| format!("connecting the source to {addr}"))?;
    sock.set_nodelay(true)?;
    handshake(cfg, &mut sock)?;
    // Drain whatever the peer sends from now on (a late status, a close) so it never blocks.
    let peer_closed = Arc::new(AtomicBool::new(false));
    {
        let mut reader = sock.try_clone()?;
        let closed = peer_closed.clone();
        std::thread::Builder::new()
            .name("source-drain".into())
            .spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = reader.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    if let Some(line) = buf[..n].split(|&b| b == b'\n').next()
                        && line.starts_with(b"HTTP/")
                    {
                        tracing::info!(
                            "source: peer says {}",
                            String::from_utf8_lossy(line).trim()
                        );
                    }
                }
                closed.store(true, Ordering::Relaxed);
            })?;
    }
    let mut out = Sender {
        sock: &mut sock,
        chunked: cfg.framing == Framing::Chunked && cfg.method == Method::Put,
        buf: Vec::with_capacity(MAX_BATCH_BYTES + 64),
    };
    let start = Instant::now();
    let deadline = cfg.duration.map(|d| start + d);
    let mut seq = cfg.start_seq;
    let mut sent: u64 = 0;
    let mut raw_reader: Option<Box<dyn Read>> = match &cfg.raw {
        None => None,
        Some(RawInput::Stdin) => Some(Box::new(std::io::stdin())),
        Some(RawInput::File(p)) => Some(Box::new(
            std::fs::File::open(p).with_context(|| format!("opening {}", p.display()))?,
        )),
    };
    let mut raw_buf = vec![
        0u8;
        if raw_reader.is_some() {
            MAX_BATCH_BYTES
        } else {
            0
        }
    ];
    let unit = if raw_reader.is_some() {
        1
    } else {
        cfg.record_size
    };
    let ended_by = loop {
        if stop.load(Ordering::Relaxed) || crate::sys::stop_requested() {
            break "stopped".to_string();
        }
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            break "duration".to_string();
        }
        if peer_closed.load(Ordering::Relaxed) {
            break "peer closed".to_string();
        }
        // Token bucket: what the bit rate allows by now, minus what was sent.
        let budget = match cfg.bitrate {
            None => MAX_BATCH_BYTES as u64,
            Some(bps) => {
                let allowed = (now - start).as_secs_f64() * bps as f64 / 8.0;
                (allowed as u64)
                    .saturating_sub(sent)
                    .min(MAX_BATCH_BYTES as u64)
            }
        };
        let units = budget / unit as u64;
        if units == 0 {
            let bps = cfg.bitrate.unwrap_or(1);
            let until_next = Duration::from_secs_f64(
                ((sent + unit as u64) as f64 * 8.0 / bps as f64 - (now - start).as_secs_f64())
                    .max(0.0),
            );
            std::thread::sleep(until_next.min(cfg.pace).max(Duration::from_micros(50)));
            continue;
        }
        let result = if let Some(r) = raw_reader.as_mut() {
            let n = match r.read(&mut raw_buf[..units as usize]) {
                Ok(0) => break "eof".to_string(),
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => break format!("reading input: {e}"),
            };
            sent += n as u64;
            out.write_batch(|b| b.extend_from_slice(&raw_buf[..n]))
        } else {
            let first = seq;
            let n = units;
            seq += n;
            sent += n * unit as u64;
            let size = cfg.record_size;
            let r = out.write_batch(|b| {
                let at = b.len();
                for s in first..first + n {
                    encode_record(s, 0, size, b);
                }
                // Stamp just before the write: latency excludes the time to build the batch.
                let t = now_us();
                for i in 0..n as usize {
                    stamp_send_time(b, at + i * size, t);
                }
            });
            progress.records.fetch_add(n, Ordering::Relaxed);
            r
        };
        if let Err(e) = result {
            break format!("write failed: {e}");
        }
        progress.bytes.store(sent, Ordering::Relaxed);
        progress.started.store(true, Ordering::Relaxed);
    };
    if out.chunked {
        let _ = out.sock.write_all(b"0\r\n\r\n");
    }
    let _ = sock.shutdown(std::net::Shutdown::Both);
    let seconds = start.elapsed().as_secs_f64();
    Ok(SourceReport {
        records: seq - cfg.start_seq,
        bytes: sent,
        seconds,
        rate_bps: if seconds > 0.0 {
            sent as f64 * 8.0 / seconds
        } else {
            0.0
        },
        first_seq: cfg.start_seq,
        next_seq: seq,
        self_cpu_s: thread_cpu_s() - cpu0,
        ended_by,
    })
}

/// Writes one batch per call, as one chunk when chunked.
struct Sender<'a> {
    sock: &'a mut TcpStream,
    chunked: bool,
    buf: Vec<u8>,
}

impl Sender<'_> {
    fn write_batch(&mut self, fill: impl FnOnce(&mut Vec<u8>)) -> std::io::Result<()> {
        self.buf.clear();
        // Room for the chunk-size line in front, so the chunk goes out in one write.
        const ROOM: usize = 16;
        self.buf.resize(ROOM, 0);
        fill(&mut self.buf);
        let body = self.buf.len() - ROOM;
        let from = if self.chunked {
            let line = format!("{body:x}\r\n");
            let from = ROOM - line.len();
            self.buf[from..ROOM].copy_from_slice(line.as_bytes());
            self.buf.extend_from_slice(b"\r\n");
            from
        } else {
            ROOM
        };
        self.sock.write_all(&self.buf[from..])
    }
}

/// Sends the request head and waits, like ffmpeg, for `100 Continue` or a final status.
fn handshake(cfg: &SourceConfig, sock: &mut TcpStream) -> anyhow::Result<()> {
    let auth = basic_auth(&cfg.user, &cfg.password);
    let host = cfg.url.authority();
    let path = &cfg.url.path;
    let ct = &cfg.content_type;
    let head = match cfg.method {
        Method::Put => {
            let framing = match cfg.framing {
                Framing::Chunked => "Transfer-Encoding: chunked\r\n",
                Framing::Close => "",
            };
            format!(
                "PUT {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: vanbench\r\n\
                 Authorization: {auth}\r\nContent-Type: {ct}\r\n{framing}\
                 Ice-Public: 0\r\nIce-Name: vanbench\r\nExpect: 100-continue\r\n\r\n"
            )
        }
        Method::Source => format!(
            "SOURCE {path} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: vanbench\r\n\
             Authorization: {auth}\r\nContent-Type: {ct}\r\nIce-Public: 0\r\n\
             Ice-Name: vanbench\r\n\r\n"
        ),
    };
    sock.write_all(head.as_bytes())?;
    sock.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut buf = Vec::with_capacity(1024);
    let mut piece = [0u8; 1024];
    let resp = loop {
        let n = sock
            .read(&mut piece)
            .context("waiting for the answer to the source request")?;
        if n == 0 {
            bail!("the server closed the connection before answering the source request");
        }
        buf.extend_from_slice(&piece[..n]);
        if let Some(h) = parse_response_head(&buf)? {
            break h;
        }
    };
    sock.set_read_timeout(None)?;
    if resp.status != 100 && !(200..300).contains(&resp.status) {
        bail!(
            "the server refused the source: {} {}",
            resp.status,
            resp.reason
        );
    }
    if buf.len() > resp.len {
        // A 100 followed by a final status in one read: check that one too.
        if let Ok(Some(next)) = parse_response_head(&buf[resp.len..])
            && !(200..300).contains(&next.status)
        {
            bail!(
                "the server refused the source: {} {}",
                next.status,
                next.reason
            );
        }
    }
    Ok(())
}
