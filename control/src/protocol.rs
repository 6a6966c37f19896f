//! The control protocol between a proxy (`dataplane`) and the coordinator (`pnc`).
//!
//! One TCP connection per proxy. Every frame is a `u32` little-endian payload length followed by
//! the payload: one message, a serde enum encoded with bincode 2 (standard configuration, little
//! endian, variable-length integers). The first frame from a proxy must be [`ProxyMsg::Hello`];
//! the PNC answers [`PncMsg::Welcome`] or [`PncMsg::Refused`] (then closes). The protocol version
//! and the shared token are checked at hello ([`check_hello`], constant-time token comparison).
//!
//! Decoding never trusts the peer: a frame longer than [`MAX_FRAME_LEN`] is refused from its
//! length prefix alone (nothing is allocated for it), bincode runs with a byte limit so no length
//! field inside a message can make it allocate more than the frame holds, and every failure is a
//! typed [`FrameError`]. The entry point for fuzzing is [`decode_frame`] (and [`fuzz_decode`],
//! which drives it and the [`FrameReader`] over arbitrary bytes for both directions).
//!
//! This module does no I/O: the service and the dataplane move the bytes.

use std::net::SocketAddr;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Version of this protocol; a hello with another version is refused.
/// 2: `Hello::decides`.
pub const PROTOCOL_VERSION: u32 = 2;

/// Largest payload accepted in one frame (1 MiB). A registration after a PNC restart lists every
/// stream of a proxy with its parents and children; 1 MiB holds tens of thousands of them.
pub const MAX_FRAME_LEN: usize = 1 << 20;

/// Bytes of the length prefix.
pub const LEN_PREFIX: usize = 4;

/// Identifier of a proxy (a physical relay host), unique in the deployment and stable across
/// restarts (the operator assigns it; the seed's P11 is 11, its 201 is 201).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ProxyId(pub u32);

impl std::fmt::Display for ProxyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "P{}", self.0)
    }
}

/// Capacity of a proxy machine: whichever binds first ([0047], [0048]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capacity {
    /// Simultaneous downstream connections (viewers and child proxies, all streams together).
    pub connections: u32,
    /// Outgoing bits per second, all streams together.
    pub bits_per_sec: u64,
}

/// A proxy as another proxy needs it: id and data address (HTTP, `GET /van/{stream}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Peer {
    pub id: ProxyId,
    pub addr: SocketAddr,
}

/// What a source publishes ([0047]): streams of one `source` share its tiering.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceInfo {
    /// Name of the media source (e.g. "www.ccrl.com"); streams naming the same source share one
    /// overlay (regions and tiers), different sources have their own ([0047]).
    pub source: String,
    /// `Content-Type` of the stream, passed to viewers.
    pub content_type: String,
    /// Nominal bitrate of the stream in bits/s (0 if unknown); used for the bits/s capacity.
    pub bitrate_bps: u64,
}

/// One stream as a proxy holds it, sent in [`Hello`] so that a restarted PNC can rebuild its
/// view from the proxies ([0031], DESIGN "The data plane never waits on the PNC").
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamState {
    pub stream: String,
    /// Set when the source publishes at this proxy (it is the stream's origin).
    pub source: Option<SourceInfo>,
    /// Tier of this proxy for the stream (0 for the origin).
    pub tier: u32,
    /// Parents it pulls the stream from (empty at the origin).
    pub parents: Vec<ProxyId>,
    /// Child proxies pulling the stream from it.
    pub children: Vec<ProxyId>,
    /// Viewers connected for this stream.
    pub viewers: u32,
    /// Whether it takes new viewers (expansion phase, [0030]).
    pub accepting: bool,
}

/// Measured round-trip time from the reporting proxy to another proxy (a distance for tiering,
/// [0024], [0049]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rtt {
    pub peer: ProxyId,
    pub micros: u32,
}

/// Load of one stream at the reporting proxy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StreamLoad {
    pub stream: String,
    pub viewers: u32,
    pub child_proxies: u32,
    pub bits_per_sec: u64,
    /// Predicted logins per second (the proxy's own double exponential smoothing, [0064]).
    pub login_rate: f32,
    /// Predicted logoffs per second.
    pub logoff_rate: f32,
}

/// First message of a proxy: register (or re-register after a PNC restart).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub version: u32,
    pub token: String,
    pub proxy: ProxyId,
    pub name: String,
    pub data_addr: SocketAddr,
    /// Region the operator gave the proxy; the PNC's config may override it.
    pub region: Option<String>,
    pub capacity: Capacity,
    /// Streams it currently carries (empty on a fresh start).
    pub streams: Vec<StreamState>,
    /// RTTs it measured to other proxies, if any.
    pub rtts: Vec<Rtt>,
    /// The proxy decides DISTRIBUTE and CONSOLIDATE itself from its own predictor and reports
    /// its viewers and predicted rates in heartbeats only, with no LOGIN/LOGOFF per viewer (the
    /// proxy agent, `control::agent`). `false`: one LOGIN/LOGOFF per viewer, and the PNC decides
    /// DISTRIBUTE from its own predictors. Who decides what: `control/src/agent/DECIDERS.md`.
    pub decides: bool,
}

/// Who logged in or off at a proxy ([0053]: a user is a child proxy or an end user).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Child {
    Viewer,
    Proxy(ProxyId),
}

/// Messages from a proxy to the PNC.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ProxyMsg {
    Hello(Hello),
    Heartbeat {
        streams: Vec<StreamLoad>,
        /// Connections and bits/s over all streams (machine-wide, [0047]).
        connections: u32,
        bits_per_sec: u64,
        rtts: Vec<Rtt>,
    },
    /// A source started publishing at this proxy.
    StreamAnnounce {
        stream: String,
        source: SourceInfo,
    },
    /// The source of a stream published here stopped; the PNC tears the tree down.
    StreamEnd {
        stream: String,
    },
    /// LOGIN of a viewer or child proxy ([0054]).
    Login {
        stream: String,
        child: Child,
    },
    /// LOGOFF of a viewer or child proxy ([0055]).
    Logoff {
        stream: String,
        child: Child,
    },
    /// DISTRIBUTE: this proxy reached (or expects to reach within ΔT) its capacity ([0054]).
    Distribute {
        stream: String,
    },
    /// CONSOLIDATE: this proxy expects to drain ([0055], [0062]).
    Consolidate {
        stream: String,
    },
    /// The link to `parent` is lost or degraded ([0066]).
    LinkDowngrade {
        stream: String,
        parent: ProxyId,
    },
}

/// Why a hello was refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Refusal {
    #[error("protocol version {theirs} is not supported (this PNC speaks {ours})")]
    VersionMismatch { ours: u32, theirs: u32 },
    #[error("wrong token")]
    BadToken,
    #[error("the first message must be Hello")]
    NotHello,
    #[error("proxy {0} is already connected")]
    AlreadyConnected(ProxyId),
    #[error("{0}")]
    Other(String),
    /// The id is not in the PNC's configuration, which does not allow open registration.
    #[error("proxy {0} is not in the PNC's configuration (and open_registration is off)")]
    UnknownProxy(ProxyId),
    /// The PNC declared the proxy crashed (heartbeat timeout) or never registered it: it must
    /// connect and register again, with the streams it carries ([0066]).
    #[error("proxy {0} is not registered (declared crashed?); register again")]
    RegisterAgain(ProxyId),
}

/// Messages from the PNC to a proxy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum PncMsg {
    Welcome {
        version: u32,
        /// How often the proxy should send a heartbeat.
        heartbeat_ms: u32,
    },
    Refused(Refusal),
    /// Serve `stream` in `tier`, pulling it from `parents` (one, or k for redundancy, [0029];
    /// the origin for tier 1). `accepting`: new viewers may be sent here ([0030], [0035]).
    Activate {
        stream: String,
        source: SourceInfo,
        tier: u32,
        parents: Vec<Peer>,
        accepting: bool,
    },
    /// Pull `stream` from `parents` from now on; connect to them before dropping the old ones
    /// (make-before-break, [0029], [0046], [0053]).
    SwitchToParent {
        stream: String,
        parents: Vec<Peer>,
    },
    /// Take no new viewers for `stream`; send them to `redirect_to` instead ([0030], [0035]).
    StopAccepting {
        stream: String,
        redirect_to: Vec<Peer>,
    },
    /// Take new viewers for `stream` again (a regrouped proxy, [0060]).
    StartAccepting {
        stream: String,
    },
    /// Redirect every viewer of `stream` to `to` (resume from its next sequence, [0037], [0046]).
    RedirectChildren {
        stream: String,
        to: Peer,
    },
    /// Stop serving `stream` and drop its parents ([0030], [0055]).
    Deactivate {
        stream: String,
    },
    /// Probe these parent-tier proxies and report `LinkDowngrade` ([0053], [0066]).
    MonitorList {
        stream: String,
        peers: Vec<Peer>,
    },
}

impl PncMsg {
    /// The variant's name, for logs and scripts (`expect Activate`).
    pub fn kind(&self) -> &'static str {
        match self {
            PncMsg::Welcome { .. } => "Welcome",
            PncMsg::Refused(_) => "Refused",
            PncMsg::Activate { .. } => "Activate",
            PncMsg::SwitchToParent { .. } => "SwitchToParent",
            PncMsg::StopAccepting { .. } => "StopAccepting",
            PncMsg::StartAccepting { .. } => "StartAccepting",
            PncMsg::RedirectChildren { .. } => "RedirectChildren",
            PncMsg::Deactivate { .. } => "Deactivate",
            PncMsg::MonitorList { .. } => "MonitorList",
        }
    }
}

/// Why a frame could not be decoded. After any of these the connection is closed.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {len} bytes exceeds the maximum of {max}")]
    TooLong { len: usize, max: usize },
    #[error("empty frame")]
    Empty,
    #[error("malformed message: {0}")]
    Malformed(#[source] bincode::error::DecodeError),
    #[error("{extra} bytes left after the message in its frame")]
    TrailingBytes { extra: usize },
}

/// Why a message could not be encoded.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("message of {len} bytes exceeds the maximum frame of {max}")]
    TooLong { len: usize, max: usize },
    #[error("cannot encode: {0}")]
    Bincode(#[source] bincode::error::EncodeError),
}

fn config() -> impl bincode::config::Config {
    bincode::config::standard()
        .with_little_endian()
        .with_limit::<MAX_FRAME_LEN>()
}

/// Encode `msg` as one frame (length prefix + payload).
pub fn encode_frame<M: Serialize>(msg: &M) -> Result<Vec<u8>, EncodeError> {
    let mut out = vec![0u8; LEN_PREFIX];
    bincode::serde::encode_into_std_write(msg, &mut out, config()).map_err(EncodeError::Bincode)?;
    let len = out.len() - LEN_PREFIX;
    if len > MAX_FRAME_LEN {
        return Err(EncodeError::TooLong {
            len,
            max: MAX_FRAME_LEN,
        });
    }
    // Fits in u32: MAX_FRAME_LEN is far below u32::MAX.
    out[..LEN_PREFIX].copy_from_slice(&(len as u32).to_le_bytes());
    Ok(out)
}

/// Decode the first frame of `buf`.
///
/// `Ok(None)`: `buf` does not yet hold a whole frame (read more). `Ok(Some((msg, used)))`: a
/// message and the bytes it took, prefix included. Never panics and never allocates more than
/// the bytes present, whatever `buf` holds. This is the function the fuzz target calls.
pub fn decode_frame<M: DeserializeOwned>(buf: &[u8]) -> Result<Option<(M, usize)>, FrameError> {
    let Some(prefix) = buf.get(..LEN_PREFIX) else {
        return Ok(None);
    };
    let mut len_bytes = [0u8; LEN_PREFIX];
    len_bytes.copy_from_slice(prefix);
    let len = u32::from_le_bytes(len_bytes) as usize;
    if len > MAX_FRAME_LEN {
        return Err(FrameError::TooLong {
            len,
            max: MAX_FRAME_LEN,
        });
    }
    if len == 0 {
        return Err(FrameError::Empty);
    }
    let Some(payload) = buf.get(LEN_PREFIX..LEN_PREFIX + len) else {
        return Ok(None);
    };
    let (msg, used) = bincode::serde::decode_from_slice::<M, _>(payload, config())
        .map_err(FrameError::Malformed)?;
    if used != len {
        return Err(FrameError::TrailingBytes { extra: len - used });
    }
    Ok(Some((msg, LEN_PREFIX + len)))
}

/// Streaming decoder: push the bytes as they arrive, pop whole messages.
///
/// Holds at most one partial frame plus the last pushed chunk: a length prefix over the maximum
/// is an error as soon as its four bytes are in.
#[derive(Debug, Default)]
pub struct FrameReader {
    buf: Vec<u8>,
    start: usize,
}

impl FrameReader {
    pub fn new() -> Self {
        Self::default()
    }

    /// Append received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start > 64 * 1024 && self.start * 2 > self.buf.len() {
            // Compact once the consumed part dominates, so the buffer does not grow forever.
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole message, `Ok(None)` if more bytes are needed. After an error the reader
    /// keeps failing with the same kind of error: close the connection.
    pub fn next_msg<M: DeserializeOwned>(&mut self) -> Result<Option<M>, FrameError> {
        match decode_frame::<M>(&self.buf[self.start..])? {
            Some((msg, used)) => {
                self.start += used;
                Ok(Some(msg))
            }
            None => Ok(None),
        }
    }

    /// Bytes received but not yet returned as messages.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }
}

/// Compare two byte strings in time independent of where they differ (it depends only on the
/// longer length), so a wrong token does not reveal its matching prefix.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let n = a.len().max(b.len());
    let mut diff = (a.len() != b.len()) as u8;
    for i in 0..n {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= x ^ y;
    }
    std::hint::black_box(diff) == 0
}

/// Check a hello's version and token. The caller answers `PncMsg::Refused(reason)`, logs it and
/// closes the connection on `Err`.
pub fn check_hello(hello: &Hello, token: &str) -> Result<(), Refusal> {
    if hello.version != PROTOCOL_VERSION {
        return Err(Refusal::VersionMismatch {
            ours: PROTOCOL_VERSION,
            theirs: hello.version,
        });
    }
    if !constant_time_eq(hello.token.as_bytes(), token.as_bytes()) {
        return Err(Refusal::BadToken);
    }
    Ok(())
}

/// Fuzz entry (also run by the property tests): arbitrary bytes as frames of both directions,
/// the streaming reader fed them in reads of 7 bytes, must decode as [`decoders_agree`] says.
pub fn fuzz_decode(data: &[u8]) {
    let ends: Vec<usize> = (1..=data.len().div_ceil(7))
        .map(|i| (i * 7).min(data.len()))
        .collect();
    decoders_agree::<ProxyMsg>(data, &ends);
    decoders_agree::<PncMsg>(data, &ends);
}

/// What a decoder made of a byte stream: the messages it returned, each re-encoded (so that
/// messages compare by their bytes, even with a NaN inside), then the error that stopped it, if
/// one did, and the bytes left over.
#[derive(Debug, PartialEq, Eq)]
struct Decoded {
    messages: Vec<Vec<u8>>,
    error: Option<String>,
    left: usize,
}

/// The control protocol's two decoders over the same bytes must agree: the frame decoder
/// (`decode_frame`, called again after each whole frame on the whole input) and the streaming
/// reader (`FrameReader`, fed the input in the reads `ends` gives, popping messages after each).
/// Also, a message either decodes re-encodes and decodes again. Panics when they differ.
pub fn decoders_agree<M>(wire: &[u8], ends: &[usize])
where
    M: DeserializeOwned + Serialize,
{
    let reencode = |m: &M| encode_frame(m).expect("a decoded message re-encodes");

    let mut whole = Decoded {
        messages: Vec::new(),
        error: None,
        left: 0,
    };
    let mut at = 0;
    loop {
        match decode_frame::<M>(&wire[at..]) {
            Ok(Some((msg, used))) => {
                assert!(used > 0 && at + used <= wire.len());
                at += used;
                let again = reencode(&msg);
                let back = decode_frame::<M>(&again).expect("a re-encoded message decodes");
                assert!(matches!(back, Some((_, n)) if n == again.len()));
                whole.messages.push(again);
            }
            Ok(None) => break,
            Err(e) => {
                whole.error = Some(e.to_string());
                break;
            }
        }
    }
    whole.left = wire.len() - at;

    let mut streamed = Decoded {
        messages: Vec::new(),
        error: None,
        left: 0,
    };
    let mut reader = FrameReader::new();
    let mut start = 0;
    'reads: for &end in ends {
        reader.push(&wire[start..end]);
        start = end;
        loop {
            match reader.next_msg::<M>() {
                Ok(Some(msg)) => streamed.messages.push(reencode(&msg)),
                Ok(None) => break,
                Err(e) => {
                    streamed.error = Some(e.to_string());
                    break 'reads;
                }
            }
        }
    }
    streamed.left = if streamed.error.is_some() {
        // The reader stops at the bad frame, as the frame decoder does.
        reader.buffered() + (wire.len() - start)
    } else {
        reader.buffered()
    };
    assert_eq!(
        streamed, whole,
        "the streaming reader and the frame decoder disagree"
    );
}
