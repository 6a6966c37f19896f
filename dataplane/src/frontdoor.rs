//! The front door: what the data port answers a request whose head was parsed (DESIGN.md,
//! "Wire protocols", a contract), on which core a viewer is served, and the canned replies.
//!
//! [`FrontDoor::admit`] decides, from the request, the credentials and the stream directory:
//! refuse (with the status and the reject counter), answer a `HEAD` with the head alone, take
//! a source (its [`Ingest`] and the reply it waits for), or take a viewer. [`least_loaded`]
//! places a viewer on a core (`--placement`); [`source_reader`] says which reactor reads a
//! source (`--ingest-thread`), when it is taken and after each of its reads. The reactor reads
//! the head, sends the reply and starts the connection; nothing here touches a socket: the one
//! fact that needs the socket, whether the peer is on loopback, is asked of the caller only
//! when it decides.
//!
//! Under a PNC, a new viewer of a stream this proxy no longer takes (the PNC's StopAccepting,
//! [0030], [0035]) is sent on with `307` to the first proxy the PNC named, or answered `503`
//! with the reason when it named none; a child proxy (`X-Van-Proxy`) is never turned away
//! here: the PNC moves child proxies with its orders ([0037], [0046]).

use std::net::SocketAddr;
use std::sync::Arc;

use tracing::info;

use crate::auth::{SourceCredentials, VanTokens};
use crate::config::IngestThread;
use crate::frame;
use crate::http::{self, HttpError, Request, Route};
use crate::ingest::Ingest;
use crate::metrics::Reject;
use crate::orders::{self, Admit};
use crate::stream::{AttachError, LOOPBACK, Registry, Stream};

/// What the data port does with a parsed request.
pub enum Admission {
    /// Send `reply` and close; counted as rejected for `why`.
    Refuse { why: Reject, reply: Vec<u8> },
    /// Send `reply` (the head a `GET` would get) and close.
    Head { reply: Vec<u8> },
    /// Send `reply` (a `307` to the proxy that takes the viewer) and close.
    Redirect { reply: Vec<u8> },
    /// A source: send `reply` (it waits for it), then ingest the body. `resumed`: it continues
    /// a stream in grace (not a new stream for the PNC).
    Source {
        ingest: Box<Ingest>,
        reply: Vec<u8>,
        resumed: bool,
    },
    /// A viewer of a stream the PNC activated here that does not flow yet (a standby pulls from
    /// its parents at its first sink, [0054]): it waits for the stream, up to a deadline.
    /// `activated`: false for a stream whose activation may still be on its way (a relay under
    /// a PNC, [`orders::Admission::is_linked`]): it waits a short while for the order too.
    Wait {
        stream: String,
        van: Option<Option<u64>>,
        child: Option<u32>,
        activated: bool,
    },
    /// A viewer of `stream`: plain when `van` is `None`, else a VAN viewer asking to resume from
    /// the sequence number inside (`?from=`), if any. `child`: the child proxy it is
    /// (`X-Van-Proxy`), for a VAN viewer that named one.
    Viewer {
        stream: Arc<Stream>,
        van: Option<Option<u64>>,
        child: Option<u32>,
    },
}

/// Who may come in, and to what.
pub struct FrontDoor<'a> {
    pub streams: &'a Registry,
    /// `None`: sources are taken from loopback only.
    pub creds: Option<&'a SourceCredentials>,
    /// `None`: no VAN viewer is taken.
    pub tokens: Option<&'a VanTokens>,
    /// Who takes new viewers, per stream, as the PNC last said.
    pub admission: &'a orders::Admission,
    /// For the logs.
    pub core: usize,
}

impl FrontDoor<'_> {
    /// Admits `req`; `leftover` are the body bytes read together with its head.
    pub fn admit(
        &self,
        req: Request,
        leftover: Vec<u8>,
        peer_is_loopback: impl FnOnce() -> bool,
    ) -> Admission {
        let core = self.core;
        match &req.route {
            Route::Publish { stream } => {
                let name = stream.clone();
                self.source(req, name, leftover, peer_is_loopback)
            }
            Route::Play { stream } => {
                if let Some(turned) = self.turn_away(&req, &format!("/live/{stream}")) {
                    return turned;
                }
                let Some(s) = self.streams.lookup(stream) else {
                    if let Some(wait) = self.standby(&req, None) {
                        return wait;
                    }
                    info!(core, stream = %stream, "viewer refused: no such stream (404)");
                    return refuse(Reject::NotFound, 404, "Not Found", &[]);
                };
                if req.head_only {
                    let reply = http::viewer_ok_response(&s.content_type());
                    return Admission::Head { reply };
                }
                Admission::Viewer {
                    stream: s,
                    van: None,
                    child: None,
                }
            }
            Route::PlayVan { stream, from } => {
                let ok = self.tokens.is_some_and(|t| t.allows(req.bearer.as_deref()));
                if !ok {
                    info!(core, stream = %stream, "VAN viewer refused: bad or missing token (401)");
                    return refuse(
                        Reject::Unauthorized,
                        401,
                        "Unauthorized",
                        &[("WWW-Authenticate", "Bearer realm=\"van\"")],
                    );
                }
                let path = match from {
                    Some(seq) => format!("/van/{stream}?from={seq}"),
                    None => format!("/van/{stream}"),
                };
                if let Some(turned) = self.turn_away(&req, &path) {
                    return turned;
                }
                let Some(s) = self.streams.lookup(stream) else {
                    if let Some(wait) = self.standby(&req, Some(*from)) {
                        return wait;
                    }
                    info!(core, stream = %stream, "VAN viewer refused: no such stream (404)");
                    return refuse(Reject::NotFound, 404, "Not Found", &[]);
                };
                if req.head_only {
                    let reply = http::viewer_ok_response(frame::CONTENT_TYPE);
                    return Admission::Head { reply };
                }
                Admission::Viewer {
                    stream: s,
                    van: Some(*from),
                    child: req.van_proxy,
                }
            }
        }
    }

    /// A viewer of a stream not here that the PNC activated here waits for it (its arrival
    /// makes the standby pull, [0054]); so does one at a relay under a PNC whose order may be on
    /// its way (the viewer resolved at the PNC may overtake the `Activate`). `None` for any other
    /// stream, and for `HEAD`.
    fn standby(&self, req: &Request, van: Option<Option<u64>>) -> Option<Admission> {
        let stream = req.route.stream();
        let activated = self.admission.is_activated(stream);
        if req.head_only || !(activated || self.admission.is_linked()) {
            return None;
        }
        if activated {
            info!(core = self.core, stream = %stream, "viewer waits: the stream is activated here and starts pulling [0054]");
        } else {
            info!(core = self.core, stream = %stream, "viewer waits: the PNC's activation may be on its way");
        }
        Some(Admission::Wait {
            stream: stream.to_owned(),
            van,
            child: if van.is_some() { req.van_proxy } else { None },
            activated,
        })
    }

    /// A new viewer of a stream this proxy does not take now goes to the proxy that does
    /// (`307` to `path` there), or gets `503` with the reason if the PNC named none. `None`:
    /// the viewer is taken here (a child proxy always is).
    fn turn_away(&self, req: &Request, path: &str) -> Option<Admission> {
        if req.van_proxy.is_some() {
            return None;
        }
        let stream = req.route.stream();
        match self.admission.of(stream) {
            Admit::Accept => None,
            Admit::Redirect(to) => Some(match to.first() {
                Some(addr) => {
                    info!(core = self.core, stream = %stream, to = %addr, "viewer sent on: not accepting here (307)");
                    Admission::Redirect {
                        reply: redirect_to(*addr, path),
                    }
                }
                None => {
                    info!(core = self.core, stream = %stream, "viewer refused: not accepting here, no other proxy named (503)");
                    refuse_because(
                        Reject::Other,
                        503,
                        "Service Unavailable",
                        "this proxy takes no new viewers for this stream now; ask the PNC where to go",
                    )
                }
            }),
        }
    }

    fn source(
        &self,
        req: Request,
        name: String,
        leftover: Vec<u8>,
        peer_is_loopback: impl FnOnce() -> bool,
    ) -> Admission {
        let core = self.core;
        let allowed = match self.creds {
            Some(creds) => creds.allows(
                req.basic_auth
                    .as_ref()
                    .map(|(u, p)| (u.as_str(), p.as_str())),
                &name,
            ),
            None => peer_is_loopback(),
        };
        if !allowed {
            info!(core, stream = %name, user = ?req.basic_auth.as_ref().map(|(u, _)| u), "source refused: bad or missing credentials (401)");
            return refuse(
                Reject::Unauthorized,
                401,
                "Unauthorized",
                &[("WWW-Authenticate", "Basic realm=\"van\"")],
            );
        }
        let ct = req
            .content_type
            .clone()
            .unwrap_or_else(|| "application/octet-stream".to_owned());
        // Who publishes: the account, or the loopback peer when no credentials are configured.
        let publisher = match (self.creds, &req.basic_auth) {
            (Some(_), Some((user, _))) => user.as_str(),
            _ => LOOPBACK,
        };
        let (stream, writer, resumed) = match self.streams.attach_source(&name, &ct, publisher) {
            Ok(x) => x,
            Err(AttachError::Busy) => {
                info!(core, stream = %name, "source refused: stream already has a live source (409)");
                return refuse(Reject::Conflict, 409, "Conflict", &[]);
            }
            Err(AttachError::TooManyStreams) => {
                info!(core, stream = %name, user = %publisher, "source refused: the relay holds --max-streams streams (503)");
                return refuse_because(
                    Reject::Other,
                    503,
                    "Service Unavailable",
                    "the relay holds as many streams as it takes (--max-streams)",
                );
            }
            Err(AttachError::TooManyForPublisher) => {
                info!(core, stream = %name, user = %publisher, "source refused: the account holds --max-streams-per-source streams (429)");
                return refuse_because(
                    Reject::Other,
                    429,
                    "Too Many Requests",
                    "this account publishes as many streams as it may (--max-streams-per-source)",
                );
            }
            Err(AttachError::NotPublisher) => {
                info!(core, stream = %name, user = %publisher, "source refused: the stream is in grace for its own publisher (409)");
                return refuse_because(
                    Reject::Conflict,
                    409,
                    "Conflict",
                    "the stream is in its grace period and only its publisher may continue it",
                );
            }
        };
        let ingest = Box::new(Ingest::new(stream, writer, &ct, req.body, leftover));
        let stream = ingest.stream();
        info!(
            core,
            stream = %name,
            content_type = %ct,
            resumed,
            next_seq = stream.window.next_seq(),
            user_agent = ?req.user_agent,
            "source connected"
        );
        let mut reply = Vec::new();
        if req.expect_continue {
            reply.extend_from_slice(http::CONTINUE_100);
        }
        reply.extend_from_slice(&http::source_ok_response());
        Admission::Source {
            ingest,
            reply,
            resumed,
        }
    }
}

/// `307 Temporary Redirect` to `path` at `addr` (the method and the request stay the same).
fn redirect_to(addr: SocketAddr, path: &str) -> Vec<u8> {
    let location = format!("http://{addr}{path}");
    http::error_response(307, "Temporary Redirect", &[("Location", &location)])
}

fn refuse(why: Reject, code: u16, reason: &str, extra: &[(&str, &str)]) -> Admission {
    Admission::Refuse {
        why,
        reply: http::error_response(code, reason, extra),
    }
}

fn refuse_because(why: Reject, code: u16, status: &str, reason: &str) -> Admission {
    Admission::Refuse {
        why,
        reply: http::error_response_because(code, status, reason),
    }
}

/// The answer to a request whose head could not be taken (malformed, too large, ...).
pub fn refusal(e: &HttpError, core: usize) -> Admission {
    let (code, _) = e.status();
    let why = match code {
        400 => Reject::Malformed,
        431 => Reject::HeadTooLarge,
        404 => Reject::NotFound,
        405 => Reject::MethodNotAllowed,
        _ => Reject::Other,
    };
    info!(core, status = code, "request refused: {e}");
    Admission::Refuse {
        why,
        reply: e.response(),
    }
}

/// The answer to a connection the relay cannot serve now (over `--max-connections`, or
/// handed to a core that is stopping).
pub fn unavailable() -> Vec<u8> {
    http::error_response(503, "Service Unavailable", &[("Retry-After", "5")])
}

/// What a new viewer is sent before stream data: the response head (a VAN child resuming
/// from a frame the window no longer holds is told the first one it gets, `X-Van-Gap`), then,
/// for a plain viewer of MPEG-TS, the cached PAT/PMT.
pub fn viewer_prefix(stream: &Stream, van: bool, gap: Option<u64>) -> Vec<u8> {
    if van {
        let mut head = http::viewer_ok_response(frame::CONTENT_TYPE);
        // What the frames carry, for a child proxy to give its own plain viewers.
        let mut lines = format!(
            "{}: {}\r\n",
            frame::PAYLOAD_TYPE_HEADER,
            stream.content_type()
        );
        if let Some(first) = gap {
            lines.push_str(&format!("X-Van-Gap: first={first}\r\n"));
        }
        // Insert before the blank line that ends the head.
        let at = head.len() - 2;
        head.splice(at..at, lines.into_bytes());
        return head;
    }
    let mut prefix = http::viewer_ok_response(&stream.content_type());
    if stream.is_ts.load(std::sync::atomic::Ordering::Relaxed)
        && let Some(psi) = stream.psi()
    {
        prefix.extend_from_slice(&psi);
    }
    prefix
}

/// The core a new viewer is served on (`--placement least-loaded`): the one serving the fewest
/// viewers (`load`) among those still running (`running`), unless core `me` is within a small
/// slack of it: SO_REUSEPORT already spreads a crowd about evenly, and without the slack every
/// second arrival on the same core would be moved for a difference of one.
pub fn least_loaded(
    me: usize,
    cores: usize,
    load: impl Fn(usize) -> usize,
    running: impl Fn(usize) -> bool,
) -> usize {
    let mine = load(me);
    let mut best = (mine, me);
    for c in 0..cores {
        if c != me && running(c) {
            best = best.min((load(c), c));
        }
    }
    let slack = 1 + mine / 64;
    if best.0 + slack < mine { best.1 } else { me }
}

/// Which reactor reads a source that reactor `here` reads now (asked after each read) or whose
/// request it just parsed. The fan-out cores are `0..cores`; the ingest thread, if any, is
/// reactor `cores`. `load` is a reactor's viewers; `running` whether its ring is up.
///
/// A source read on a fan-out core waits for the core's turn, which grows with its viewers; on
/// the ingest thread it waits for nothing, but every publish then wakes one thread more. So
/// with `auto` a source stays on a fan-out core until that core serves more than `busy`
/// viewers (a turn of `busy` sends is about 1.3 ms at the default), and leaves the ingest thread
/// for the least loaded fan-out core once that one serves at most a quarter of `busy`: the gap
/// keeps a source from going back and forth with the load.
pub fn source_reader(
    here: usize,
    mode: IngestThread,
    cores: usize,
    busy: usize,
    load: impl Fn(usize) -> usize,
    running: impl Fn(usize) -> bool,
) -> usize {
    let ingest = cores;
    match mode {
        IngestThread::Shared => here,
        IngestThread::Own if here != ingest && running(ingest) => ingest,
        IngestThread::Own => here,
        IngestThread::Auto if here != ingest => {
            if load(here) > busy && running(ingest) {
                ingest
            } else {
                here
            }
        }
        IngestThread::Auto => (0..cores)
            .filter(|&c| running(c))
            .map(|c| (load(c), c))
            .min()
            .filter(|&(least, _)| least <= busy / 4)
            .map_or(here, |(_, c)| c),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::window::WindowConfig;

    fn req(head: &str) -> Request {
        http::parse_request(head.as_bytes()).unwrap().unwrap()
    }

    fn registry() -> Registry {
        Registry::new(WindowConfig::default(), 1, 65536)
    }

    fn status(reply: &[u8]) -> &str {
        std::str::from_utf8(&reply[9..12]).unwrap()
    }

    fn refused(a: Admission) -> (Reject, String) {
        match a {
            Admission::Refuse { why, reply } => (why, status(&reply).to_owned()),
            _ => panic!("not refused"),
        }
    }

    #[test]
    fn sources_without_credentials_come_from_loopback_only() {
        let streams = registry();
        let door = FrontDoor {
            streams: &streams,
            creds: None,
            tokens: None,
            admission: &orders::Admission::default(),
            core: 0,
        };
        let put = "PUT /live/a HTTP/1.1\r\nContent-Type: video/mp2t\r\n\r\n";
        let a = door.admit(req(put), Vec::new(), || false);
        assert_eq!(refused(a), (Reject::Unauthorized, "401".into()));
        match door.admit(req(put), Vec::new(), || true) {
            Admission::Source { ingest, reply, .. } => {
                assert_eq!(reply, http::source_ok_response());
                assert!(
                    ingest
                        .stream()
                        .is_ts
                        .load(std::sync::atomic::Ordering::Relaxed)
                );
            }
            _ => panic!("a loopback source is taken"),
        }
        // A second source on a live stream.
        let a = door.admit(req(put), Vec::new(), || true);
        assert_eq!(refused(a), (Reject::Conflict, "409".into()));
    }

    #[test]
    fn sources_with_credentials_need_them_and_may_wait_for_100_continue() {
        let streams = registry();
        let creds = SourceCredentials::parse("ann:secret:cam").unwrap();
        let door = FrontDoor {
            streams: &streams,
            creds: Some(&creds),
            tokens: None,
            admission: &orders::Admission::default(),
            core: 0,
        };
        // ann:secret in Basic auth.
        let put = "PUT /live/cam1 HTTP/1.1\r\nAuthorization: Basic YW5uOnNlY3JldA==\r\n\
                   Expect: 100-continue\r\nContent-Length: 5\r\n\r\n";
        match door.admit(req(put), Vec::new(), || false) {
            Admission::Source { reply, .. } => {
                assert!(reply.starts_with(http::CONTINUE_100));
                assert!(reply.ends_with(&http::source_ok_response()));
            }
            _ => panic!("the right credentials are taken"),
        }
        let elsewhere = put.replace("cam1", "other");
        let a = door.admit(req(&elsewhere), Vec::new(), || true);
        assert_eq!(refused(a), (Reject::Unauthorized, "401".into()));
    }

    #[test]
    fn defect3_another_account_cannot_take_a_stream_over_in_grace() {
        let streams = registry();
        let creds = SourceCredentials::parse("ann:secret:cam\nbob:hunter2:cam").unwrap();
        let door = FrontDoor {
            streams: &streams,
            creds: Some(&creds),
            tokens: None,
            admission: &orders::Admission::default(),
            core: 0,
        };
        // ann:secret and bob:hunter2 in Basic auth.
        let ann = "PUT /live/cam1 HTTP/1.1\r\nAuthorization: Basic YW5uOnNlY3JldA==\r\n\r\n";
        let bob = "PUT /live/cam1 HTTP/1.1\r\nAuthorization: Basic Ym9iOmh1bnRlcjI=\r\n\r\n";
        let Admission::Source { ingest, .. } = door.admit(req(ann), Vec::new(), || false) else {
            panic!("ann publishes");
        };
        assert_eq!(ingest.stream().publisher, "ann");
        let (stream, writer) = ingest.into_parts();
        streams.detach_source(&stream, writer, u64::MAX);
        match door.admit(req(bob), Vec::new(), || false) {
            Admission::Refuse { why, reply } => {
                assert_eq!((why, status(&reply)), (Reject::Conflict, "409"));
                let text = String::from_utf8_lossy(&reply);
                assert!(text.contains("only its publisher"), "{text}");
            }
            _ => panic!("bob does not take ann's stream over"),
        }
        assert!(matches!(
            door.admit(req(ann), Vec::new(), || false),
            Admission::Source { .. }
        ));
    }

    #[test]
    fn viewers_find_live_streams_and_van_viewers_need_a_token() {
        let streams = registry();
        let tokens = VanTokens::parse("t0ken").unwrap();
        let door = FrontDoor {
            streams: &streams,
            creds: None,
            tokens: Some(&tokens),
            admission: &orders::Admission::default(),
            core: 0,
        };
        let a = door.admit(req("GET /live/a HTTP/1.1\r\n\r\n"), Vec::new(), || true);
        assert_eq!(refused(a), (Reject::NotFound, "404".into()));
        streams
            .attach_source("a", "audio/mpeg", crate::stream::LOOPBACK)
            .unwrap();
        match door.admit(req("GET /live/a HTTP/1.1\r\n\r\n"), Vec::new(), || true) {
            Admission::Viewer { stream, van, child } => {
                assert_eq!((stream.name.as_str(), van, child), ("a", None, None))
            }
            _ => panic!("a viewer of a live stream is taken"),
        }
        match door.admit(req("HEAD /live/a HTTP/1.1\r\n\r\n"), Vec::new(), || true) {
            Admission::Head { reply } => assert_eq!(reply, http::viewer_ok_response("audio/mpeg")),
            _ => panic!("HEAD gets the head"),
        }
        let van = "GET /van/a?from=7 HTTP/1.1\r\n\r\n";
        let a = door.admit(req(van), Vec::new(), || true);
        assert_eq!(refused(a), (Reject::Unauthorized, "401".into()));
        let van = "GET /van/a?from=7 HTTP/1.1\r\nAuthorization: Bearer t0ken\r\n\r\n";
        match door.admit(req(van), Vec::new(), || true) {
            Admission::Viewer { van, .. } => assert_eq!(van, Some(Some(7))),
            _ => panic!("a VAN viewer with the token is taken"),
        }
    }

    #[test]
    fn a_proxy_not_accepting_sends_viewers_on_but_never_a_child_proxy() {
        let streams = registry();
        let tokens = VanTokens::parse("t0ken").unwrap();
        let admission = orders::Admission::default();
        let door = FrontDoor {
            streams: &streams,
            creds: None,
            tokens: Some(&tokens),
            admission: &admission,
            core: 0,
        };
        streams
            .attach_source("a", "video/mp2t", crate::stream::LOOPBACK)
            .unwrap();
        let p22: SocketAddr = "127.0.0.1:9022".parse().unwrap();
        let p23: SocketAddr = "[::1]:9023".parse().unwrap();
        admission.set("a", Admit::Redirect(vec![p22, p23]));
        let location = |a: Admission| match a {
            Admission::Redirect { reply } => {
                assert_eq!(status(&reply), "307");
                let text = String::from_utf8(reply).unwrap();
                let line = text.lines().find(|l| l.starts_with("Location: ")).unwrap();
                line["Location: ".len()..].to_owned()
            }
            _ => panic!("not redirected"),
        };
        let plain = door.admit(req("GET /live/a?t=1 HTTP/1.1\r\n\r\n"), Vec::new(), || true);
        assert_eq!(location(plain), "http://127.0.0.1:9022/live/a");
        let van = "GET /van/a?from=7 HTTP/1.1\r\nAuthorization: Bearer t0ken\r\n\r\n";
        assert_eq!(
            location(door.admit(req(van), Vec::new(), || true)),
            "http://127.0.0.1:9022/van/a?from=7"
        );
        let van_live = "GET /van/a HTTP/1.1\r\nAuthorization: Bearer t0ken\r\n\r\n";
        assert_eq!(
            location(door.admit(req(van_live), Vec::new(), || true)),
            "http://127.0.0.1:9022/van/a"
        );
        // A VAN viewer still needs its token first.
        let no_token = "GET /van/a HTTP/1.1\r\n\r\n";
        let a = door.admit(req(no_token), Vec::new(), || true);
        assert_eq!(refused(a), (Reject::Unauthorized, "401".into()));
        // A child proxy is taken: the PNC moves it with orders.
        let child =
            "GET /van/a?from=7 HTTP/1.1\r\nAuthorization: Bearer t0ken\r\nX-Van-Proxy: 31\r\n\r\n";
        match door.admit(req(child), Vec::new(), || true) {
            Admission::Viewer { van, child, .. } => {
                assert_eq!((van, child), (Some(Some(7)), Some(31)))
            }
            _ => panic!("a child proxy is taken"),
        }
        // A stream the PNC names nowhere else: 503 with the reason, even before it exists here.
        admission.set("a", Admit::Redirect(Vec::new()));
        admission.set("b", Admit::Redirect(Vec::new()));
        for head in [
            "GET /live/a HTTP/1.1\r\n\r\n",
            "GET /live/b HTTP/1.1\r\n\r\n",
        ] {
            match door.admit(req(head), Vec::new(), || true) {
                Admission::Refuse { why, reply } => {
                    assert_eq!((why, status(&reply)), (Reject::Other, "503"));
                    assert!(String::from_utf8_lossy(&reply).contains("takes no new viewers"));
                }
                _ => panic!("refused with 503"),
            }
        }
        // Accepting again.
        admission.set("a", Admit::Accept);
        assert!(matches!(
            door.admit(req("GET /live/a HTTP/1.1\r\n\r\n"), Vec::new(), || true),
            Admission::Viewer { .. }
        ));
    }

    #[test]
    fn a_viewer_of_a_standby_waits_for_the_stream_and_others_get_404() {
        let streams = registry();
        let tokens = VanTokens::parse("t0ken").unwrap();
        let admission = orders::Admission::default();
        let door = FrontDoor {
            streams: &streams,
            creds: None,
            tokens: Some(&tokens),
            admission: &admission,
            core: 0,
        };
        admission.set_activated("demo", true);
        match door.admit(req("GET /live/demo HTTP/1.1\r\n\r\n"), Vec::new(), || true) {
            Admission::Wait {
                stream,
                van,
                child,
                activated,
            } => {
                assert_eq!((stream.as_str(), van, child), ("demo", None, None));
                assert!(activated);
            }
            _ => panic!("a viewer of a standby waits"),
        }
        let child = "GET /van/demo?from=9 HTTP/1.1\r\nAuthorization: Bearer t0ken\r\nX-Van-Proxy: 31\r\n\r\n";
        match door.admit(req(child), Vec::new(), || true) {
            Admission::Wait { van, child, .. } => {
                assert_eq!((van, child), (Some(Some(9)), Some(31)))
            }
            _ => panic!("a child proxy of a standby waits"),
        }
        // HEAD, and a stream not activated here: 404 as before.
        for head in [
            "HEAD /live/demo HTTP/1.1\r\n\r\n",
            "GET /live/other HTTP/1.1\r\n\r\n",
        ] {
            let a = door.admit(req(head), Vec::new(), || true);
            assert_eq!(refused(a), (Reject::NotFound, "404".into()), "{head}");
        }
        // Under a PNC, a viewer of a stream not activated yet waits for the order a while: the
        // PNC sent it here with a 302 that may overtake the Activate.
        admission.set_linked(true);
        match door.admit(req("GET /live/other HTTP/1.1\r\n\r\n"), Vec::new(), || true) {
            Admission::Wait {
                stream, activated, ..
            } => assert_eq!((stream.as_str(), activated), ("other", false)),
            _ => panic!("a viewer under a PNC waits for the activation"),
        }
        let a = door.admit(req("HEAD /live/other HTTP/1.1\r\n\r\n"), Vec::new(), || {
            true
        });
        assert_eq!(refused(a), (Reject::NotFound, "404".into()));
        admission.set_linked(false);
        // Once the stream flows, viewers are taken at once.
        streams
            .attach_source("demo", "video/mp2t", crate::stream::LOOPBACK)
            .unwrap();
        assert!(matches!(
            door.admit(req("GET /live/demo HTTP/1.1\r\n\r\n"), Vec::new(), || true),
            Admission::Viewer { .. }
        ));
    }

    #[test]
    fn malformed_heads_are_refused_with_their_status() {
        let (why, status_line) = refused(refusal(&HttpError::HeadTooLarge, 0));
        assert_eq!((why, status_line.as_str()), (Reject::HeadTooLarge, "431"));
        let e = http::parse_request(b"BREW /live/a HTTP/1.1\r\n\r\n").unwrap_err();
        assert_eq!(refused(refusal(&e, 0)).0, Reject::MethodNotAllowed);
        assert_eq!(status(&unavailable()), "503");
    }

    #[test]
    fn a_viewer_is_owed_the_head_then_the_psi_and_a_van_child_its_gap() {
        let streams = registry();
        let (s, _, _) = streams
            .attach_source("a", "video/mp2t", crate::stream::LOOPBACK)
            .unwrap();
        s.is_ts.store(true, std::sync::atomic::Ordering::Relaxed);
        s.set_psi(b"PATPMT");
        let plain = viewer_prefix(&s, false, None);
        assert!(plain.ends_with(b"\r\n\r\nPATPMT"));
        let van = viewer_prefix(&s, true, Some(42));
        let head = std::str::from_utf8(&van).unwrap();
        assert!(
            head.ends_with("\r\nX-Van-Content-Type: video/mp2t\r\nX-Van-Gap: first=42\r\n\r\n"),
            "{head}"
        );
        let van = viewer_prefix(&s, true, None);
        let h = crate::response_head::parse_response_head(&van)
            .unwrap()
            .unwrap();
        assert_eq!(h.content_type.as_deref(), Some(frame::CONTENT_TYPE));
        assert_eq!(h.payload_type.as_deref(), Some("video/mp2t"));
    }

    #[test]
    fn viewers_go_to_the_least_loaded_running_core_beyond_a_slack() {
        let loads = [10, 3, 0, 9];
        let load = |c: usize| loads[c];
        assert_eq!(least_loaded(0, 4, load, |_| true), 2);
        // A stopped core takes no one.
        assert_eq!(least_loaded(0, 4, load, |c| c != 2), 1);
        // Within the slack, the viewer stays.
        assert_eq!(least_loaded(0, 2, |c| [9, 7][c], |_| true), 1);
        assert_eq!(least_loaded(0, 2, |c| [9, 8][c], |_| true), 0);
        assert_eq!(least_loaded(0, 1, load, |_| true), 0);
    }

    #[test]
    fn a_source_is_read_by_a_fan_out_core_until_it_is_busy_and_comes_back_when_it_is_quiet() {
        use IngestThread::{Auto, Own, Shared};
        let all = |_| true;
        // Two fan-out cores (0, 1), the ingest thread 2; busy above 8 viewers, quiet at 2.
        let reader =
            |here, mode, loads: [usize; 3]| source_reader(here, mode, 2, 8, |c| loads[c], all);
        assert_eq!(reader(0, Auto, [8, 0, 0]), 0, "at the limit: stays");
        assert_eq!(
            reader(1, Auto, [0, 9, 0]),
            2,
            "above it: to the ingest thread"
        );
        assert_eq!(
            reader(2, Auto, [3, 5, 0]),
            2,
            "no fan-out core quiet yet: stays"
        );
        assert_eq!(
            reader(2, Auto, [3, 2, 0]),
            1,
            "back to the quietest fan-out core"
        );
        assert_eq!(reader(0, Own, [0, 0, 0]), 2);
        assert_eq!(reader(2, Own, [0, 0, 0]), 2);
        assert_eq!(reader(1, Shared, [100, 100, 0]), 1);
        // A reactor whose ring is down (stopped, or not started) is never chosen.
        let no_ingest = |c| c != 2;
        assert_eq!(source_reader(0, Auto, 2, 8, |_| 50, no_ingest), 0);
        assert_eq!(source_reader(0, Own, 2, 8, |_| 0, no_ingest), 0);
        let core_1_down = |c| c != 1;
        assert_eq!(
            source_reader(2, Auto, 2, 8, |c| [5, 0, 0][c], core_1_down),
            2
        );
        assert_eq!(
            source_reader(2, Auto, 2, 8, |c| [1, 0, 0][c], core_1_down),
            0
        );
    }
}
