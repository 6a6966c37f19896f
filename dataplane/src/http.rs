//! HTTP/1.1 request heads of the data port and the relay's canned answers (DESIGN.md, "Wire
//! protocols", a contract).
//!
//! [`parse_request`] turns the bytes a connection has sent so far into a [`Request`]: which
//! route it asks for, its credentials, and how its body (if any) is framed. It uses `httparse`
//! underneath and adds what the relay needs on top:
//!
//! - routes: `PUT` or Icecast's `SOURCE` on `/live/{stream}` publishes; `GET`/`HEAD` on
//!   `/live/{stream}` plays the raw stream; `GET`/`HEAD` on `/van/{stream}?from=N` plays VAN
//!   frames. Stream names are `[A-Za-z0-9._~-]{1,128}` (no percent-decoding, no `/`).
//! - body framing of a source: chunked (ffmpeg `-method PUT`, `curl -T -`), a length
//!   (`curl -T file`) or, with neither, until the connection closes (ffmpeg `icecast://`).
//!   Both a length and chunking, or any transfer coding but `chunked`, are refused: a relay that
//!   guesses here is open to request smuggling.
//! - `Expect: 100-continue`: ffmpeg's `icecast://` and curl wait for `100 Continue` before
//!   sending the body.
//! - old Icecast source clients write `SOURCE /mount ICE/1.0`; it is read as HTTP/1.0.
//!
//! What it does not do: no I/O, no keep-alive or pipelining (every answer closes the
//! connection), no percent-decoding of paths. Errors map to one status each
//! ([`HttpError::status`]) and [`HttpError::response`] builds the whole answer.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use std::fmt;
use thiserror::Error;

/// The largest request head accepted. A connection that has sent this much without ending its
/// head gets 431, so a client cannot make the relay buffer without bound.
pub const MAX_HEAD: usize = 8 * 1024;

/// The most header lines accepted in one head; more is answered 431 like an oversized head.
pub const MAX_HEADERS: usize = 64;

/// The longest stream name, in bytes.
pub const MAX_STREAM_NAME: usize = 128;

/// `100 Continue`, sent to a source that asked for it before the relay reads its body.
pub const CONTINUE_100: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// What a request asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// `PUT /live/{stream}` or `SOURCE /live/{stream}`: a source publishes.
    Publish { stream: String },
    /// `GET` (or `HEAD`) `/live/{stream}`: a plain viewer.
    Play { stream: String },
    /// `GET` (or `HEAD`) `/van/{stream}?from=N`: a child proxy or VAN-aware client.
    PlayVan { stream: String, from: Option<u64> },
}

impl Route {
    /// The stream the request names.
    pub fn stream(&self) -> &str {
        match self {
            Route::Publish { stream } | Route::Play { stream } | Route::PlayVan { stream, .. } => {
                stream
            }
        }
    }
}

/// How the body that follows the head is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body (a viewer's `GET`).
    None,
    /// `Content-Length: n`.
    Length(u64),
    /// `Transfer-Encoding: chunked`: decode with [`crate::chunked::ChunkedDecoder`].
    Chunked,
    /// A `PUT`/`SOURCE` with neither: the body runs until the source closes (Icecast style).
    UntilClose,
}

/// A parsed request head.
#[derive(Clone, PartialEq, Eq)]
pub struct Request {
    pub route: Route,
    /// `HEAD`: answer the head only.
    pub head_only: bool,
    /// Bytes of the buffer the head used; body bytes, if any, follow.
    pub head_len: usize,
    /// Decoded `Authorization: Basic` (user, password).
    pub basic_auth: Option<(String, String)>,
    /// `Authorization: Bearer` token.
    pub bearer: Option<String>,
    pub content_type: Option<String>,
    pub body: BodyFraming,
    /// `Expect: 100-continue`: send [`CONTINUE_100`] before reading the body.
    pub expect_continue: bool,
    pub user_agent: Option<String>,
    /// `X-Van-Proxy: ID`: the request comes from the child proxy `ID` (its LOGIN, [0053]).
    /// `0` is a relay with no proxy id (`--proxy-id` unset): not a member of the VAN.
    pub van_proxy: Option<u32>,
}

// Written by hand so that a logged request never shows a password or token.
impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("route", &self.route)
            .field("head_only", &self.head_only)
            .field("head_len", &self.head_len)
            .field("basic_user", &self.basic_auth.as_ref().map(|(u, _)| u))
            .field("bearer", &self.bearer.as_ref().map(|_| "<redacted>"))
            .field("content_type", &self.content_type)
            .field("body", &self.body)
            .field("expect_continue", &self.expect_continue)
            .field("user_agent", &self.user_agent)
            .field("van_proxy", &self.van_proxy)
            .finish()
    }
}

/// Why a request head was refused. Each maps to one status code.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum HttpError {
    /// 400: not valid HTTP, a bad stream name, a bad `from`, bad credentials syntax, a body
    /// framed two ways.
    #[error("malformed request: {0}")]
    Malformed(String),
    /// 431: the head is longer than [`MAX_HEAD`] or has more than [`MAX_HEADERS`] lines.
    #[error("request head too large")]
    HeadTooLarge,
    /// 404: a path the relay does not serve.
    #[error("no such path")]
    NotFound,
    /// 405: a method the route does not take; `allow` lists those it does.
    #[error("method not allowed")]
    MethodNotAllowed { allow: &'static str },
    /// 417: an `Expect` other than `100-continue`.
    #[error("unsupported expectation")]
    ExpectationFailed,
    /// 501: a transfer coding other than `chunked`.
    #[error("unsupported transfer coding")]
    UnsupportedTransferCoding,
}

impl HttpError {
    /// Status code and reason phrase of the answer.
    pub fn status(&self) -> (u16, &'static str) {
        match self {
            HttpError::Malformed(_) => (400, "Bad Request"),
            HttpError::HeadTooLarge => (431, "Request Header Fields Too Large"),
            HttpError::NotFound => (404, "Not Found"),
            HttpError::MethodNotAllowed { .. } => (405, "Method Not Allowed"),
            HttpError::ExpectationFailed => (417, "Expectation Failed"),
            HttpError::UnsupportedTransferCoding => (501, "Not Implemented"),
        }
    }

    /// The whole answer to send before closing: status line, `Allow` for 405, and a one-line
    /// body saying what was wrong.
    pub fn response(&self) -> Vec<u8> {
        let (code, reason) = self.status();
        let detail = self.to_string();
        let mut extra: Vec<(&str, &str)> = Vec::new();
        if let HttpError::MethodNotAllowed { allow } = self {
            extra.push(("Allow", allow));
        }
        response_with_body(code, reason, &detail, &extra)
    }
}

/// Parses a request head from the start of `buf`.
///
/// `Ok(None)`: the head is not complete yet and `buf` is shorter than [`MAX_HEAD`]; read more.
/// Bytes after `head_len` are body bytes and are not looked at.
pub fn parse_request(buf: &[u8]) -> Result<Option<Request>, HttpError> {
    match ice_head(buf) {
        IceHead::NotIce => parse_http(buf),
        IceHead::Incomplete => Ok(None),
        // The rewritten head is one byte longer ("HTTP/1.0" for "ICE/1.0").
        IceHead::Rewritten(copy) => Ok(parse_http(&copy)?.map(|mut req| {
            req.head_len -= 1;
            req
        })),
    }
}

fn parse_http(buf: &[u8]) -> Result<Option<Request>, HttpError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            return if buf.len() >= MAX_HEAD {
                Err(HttpError::HeadTooLarge)
            } else {
                Ok(None)
            };
        }
        Err(httparse::Error::TooManyHeaders) => return Err(HttpError::HeadTooLarge),
        Err(e) => return Err(HttpError::Malformed(e.to_string())),
    };
    if head_len > MAX_HEAD {
        return Err(HttpError::HeadTooLarge);
    }
    let method = req.method.unwrap_or_default();
    let path = origin_form(req.path.unwrap_or_default());
    let (route, head_only) = route(method, path)?;

    let mut basic_auth = None;
    let mut bearer = None;
    let mut content_type = None;
    let mut user_agent = None;
    let mut length = LengthHeaders::default();
    let mut expect_continue = false;
    let mut van_proxy = None;
    for h in req.headers.iter() {
        let name = h.name;
        let value = trim(h.value);
        if length.read(name, value)? {
            continue;
        }
        if name.eq_ignore_ascii_case("authorization") {
            if basic_auth.is_some() || bearer.is_some() {
                return Err(malformed("more than one Authorization header"));
            }
            parse_authorization(value, &mut basic_auth, &mut bearer)?;
        } else if name.eq_ignore_ascii_case("content-type") {
            content_type = Some(String::from_utf8_lossy(value).into_owned());
        } else if name.eq_ignore_ascii_case("user-agent") {
            user_agent = Some(String::from_utf8_lossy(value).into_owned());
        } else if name.eq_ignore_ascii_case("expect") {
            if !value.eq_ignore_ascii_case(b"100-continue") {
                return Err(HttpError::ExpectationFailed);
            }
            expect_continue = true;
        } else if name.eq_ignore_ascii_case("x-van-proxy") {
            if van_proxy.is_some() {
                return Err(malformed("more than one X-Van-Proxy header"));
            }
            van_proxy = Some(parse_proxy_id(value)?);
        }
    }

    let body = match length.finish()? {
        BodyFraming::UntilClose if !matches!(route, Route::Publish { .. }) => BodyFraming::None,
        framing => framing,
    };

    Ok(Some(Request {
        route,
        head_only,
        head_len,
        basic_auth,
        bearer,
        content_type,
        body,
        expect_continue,
        user_agent,
        van_proxy: van_proxy.filter(|&id| id != 0),
    }))
}

/// A proxy id: decimal digits, at most `u32::MAX`.
fn parse_proxy_id(value: &[u8]) -> Result<u32, HttpError> {
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return Err(malformed("X-Van-Proxy must be a proxy id (decimal digits)"));
    }
    std::str::from_utf8(value)
        .ok()
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| malformed("X-Van-Proxy is beyond the largest proxy id"))
}

/// Icecast 1.x source clients (ices, older liquidsoap and butt) send `SOURCE /m ICE/1.0`,
/// which httparse rejects. Such a head is parsed from a copy with `HTTP/1.0` in its place.
enum IceHead {
    NotIce,
    /// The request line is still arriving and may end in `ICE/1.0`.
    Incomplete,
    Rewritten(Vec<u8>),
}

fn ice_head(buf: &[u8]) -> IceHead {
    const ICE: &[u8] = b" ICE/1.0\r\n";
    if !buf.starts_with(b"SOURCE ") {
        return IceHead::NotIce;
    }
    let Some(newline) = buf.iter().take(MAX_HEAD).position(|&b| b == b'\n') else {
        let last_word = buf.rsplit(|&b| b == b' ').next().unwrap_or_default();
        let spaces = buf.iter().filter(|&&b| b == b' ').count();
        return if spaces >= 2
            && !last_word.is_empty()
            && ICE[1..ICE.len() - 1].starts_with(last_word)
            && buf.len() < MAX_HEAD
        {
            IceHead::Incomplete
        } else {
            IceHead::NotIce
        };
    };
    let line_end = newline + 1;
    if !buf[..line_end].ends_with(ICE) {
        return IceHead::NotIce;
    }
    let cut = line_end - ICE.len();
    // Only the head matters; body bytes beyond MAX_HEAD need not be copied.
    let rest = &buf[line_end..buf.len().min(MAX_HEAD + 1).max(line_end)];
    let mut out = Vec::with_capacity(cut + 11 + rest.len());
    out.extend_from_slice(&buf[..cut]);
    out.extend_from_slice(b" HTTP/1.0\r\n");
    out.extend_from_slice(rest);
    IceHead::Rewritten(out)
}

/// The path and query of a request target. RFC 9112 §3.2.2: a server must accept the
/// absolute form (`GET http://relay:8080/live/a HTTP/1.1`, as proxies and some players send
/// it); its scheme and authority are dropped (the relay serves every host name alike).
fn origin_form(target: &str) -> &str {
    let rest = ["http://", "https://"].iter().find_map(|scheme| {
        target
            .get(..scheme.len())
            .filter(|s| s.eq_ignore_ascii_case(scheme))
            .map(|_| &target[scheme.len()..])
    });
    match rest {
        None => target,
        // `http://host` and `http://host?q` have the empty path, which is `/`.
        Some(r) => match r.find(['/', '?']) {
            Some(i) if r.as_bytes()[i] == b'/' => &r[i..],
            _ => "/",
        },
    }
}

fn route(method: &str, target: &str) -> Result<(Route, bool), HttpError> {
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    if let Some(name) = path.strip_prefix("/live/") {
        let head_only = match method {
            "GET" => false,
            "HEAD" => true,
            "PUT" | "SOURCE" => {
                let stream = stream_name(name)?;
                return Ok((Route::Publish { stream }, false));
            }
            _ => {
                return Err(HttpError::MethodNotAllowed {
                    allow: "GET, HEAD, PUT, SOURCE",
                });
            }
        };
        // The query of a plain viewer (e.g. a player's cache-buster) is ignored.
        let stream = stream_name(name)?;
        return Ok((Route::Play { stream }, head_only));
    }
    if let Some(name) = path.strip_prefix("/van/") {
        let head_only = match method {
            "GET" => false,
            "HEAD" => true,
            _ => return Err(HttpError::MethodNotAllowed { allow: "GET, HEAD" }),
        };
        let stream = stream_name(name)?;
        let from = van_from(query.unwrap_or(""))?;
        return Ok((Route::PlayVan { stream, from }, head_only));
    }
    Err(HttpError::NotFound)
}

/// `[A-Za-z0-9._~-]{1,128}`, but not `.` or `..` (they read as path segments to proxies and
/// players in front of the relay).
/// True if `name` is a stream name a request may carry (what a request line is checked for): the
/// relay checks the names it is told to pull before it puts them in a request.
pub fn is_stream_name(name: &str) -> bool {
    stream_name(name).is_ok()
}

fn stream_name(name: &str) -> Result<String, HttpError> {
    if name.is_empty() || name.len() > MAX_STREAM_NAME {
        return Err(malformed("stream name must be 1 to 128 characters"));
    }
    if !name.bytes().all(is_stream_name_byte) {
        return Err(malformed("stream name may hold only A-Z a-z 0-9 . _ ~ -"));
    }
    if name == "." || name == ".." {
        return Err(malformed("stream name may not be . or .."));
    }
    Ok(name.to_owned())
}

/// True for the bytes a stream name may hold.
pub fn is_stream_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'-')
}

/// `from=N` from a VAN query string; other parameters are ignored so that clients can add
/// their own.
fn van_from(query: &str) -> Result<Option<u64>, HttpError> {
    let mut from = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if key == "from" {
            if from.is_some() {
                return Err(malformed("more than one from= parameter"));
            }
            if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
                return Err(malformed("from= must be a decimal sequence number"));
            }
            let n = value
                .parse::<u64>()
                .map_err(|_| malformed("from= is out of range"))?;
            from = Some(n);
        }
    }
    Ok(from)
}

/// The `Content-Length` and `Transfer-Encoding` lines of one head, a request's or a response's
/// ([`crate::response_head`]), read the strict way: a relay that guesses where a body ends is
/// open to request smuggling.
#[derive(Debug, Default)]
pub(crate) struct LengthHeaders {
    content_length: Option<u64>,
    chunked: bool,
}

impl LengthHeaders {
    /// Takes one header line (`value` trimmed); false if it is neither of the two.
    pub(crate) fn read(&mut self, name: &str, value: &[u8]) -> Result<bool, HttpError> {
        if name.eq_ignore_ascii_case("content-length") {
            let n = parse_content_length(value)?;
            // Repeated lengths must agree (RFC 9112, 6.3), or the body's end is ambiguous.
            if self.content_length.is_some_and(|m| m != n) {
                return Err(malformed("conflicting Content-Length headers"));
            }
            self.content_length = Some(n);
            Ok(true)
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            // Only a lone `chunked` is understood; `gzip, chunked` and the like are not.
            if self.chunked || !value.eq_ignore_ascii_case(b"chunked") {
                return Err(HttpError::UnsupportedTransferCoding);
            }
            self.chunked = true;
            Ok(true)
        } else {
            Ok(false)
        }
    }

    /// How the body is delimited: a length, chunks, or (with neither) until the connection
    /// closes. Both at once are refused.
    pub(crate) fn finish(&self) -> Result<BodyFraming, HttpError> {
        match (self.content_length, self.chunked) {
            (Some(_), true) => Err(malformed("both Content-Length and Transfer-Encoding")),
            (Some(n), false) => Ok(BodyFraming::Length(n)),
            (None, true) => Ok(BodyFraming::Chunked),
            (None, false) => Ok(BodyFraming::UntilClose),
        }
    }
}

fn parse_content_length(value: &[u8]) -> Result<u64, HttpError> {
    // Digits only: "+5", "0x10" or "5, 5" must not be read leniently.
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return Err(malformed("Content-Length must be decimal digits"));
    }
    std::str::from_utf8(value)
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or_else(|| malformed("Content-Length is out of range"))
}

fn parse_authorization(
    value: &[u8],
    basic: &mut Option<(String, String)>,
    bearer: &mut Option<String>,
) -> Result<(), HttpError> {
    let split = value
        .iter()
        .position(|&b| b == b' ' || b == b'\t')
        .unwrap_or(value.len());
    let (scheme, rest) = value.split_at(split);
    let credentials = trim(rest);
    if scheme.eq_ignore_ascii_case(b"basic") {
        let decoded = BASE64
            .decode(credentials)
            .map_err(|_| malformed("Authorization: Basic is not valid base64"))?;
        let text = String::from_utf8(decoded)
            .map_err(|_| malformed("Authorization: Basic is not UTF-8"))?;
        let (user, password) = text
            .split_once(':')
            .ok_or_else(|| malformed("Authorization: Basic lacks user:password"))?;
        *basic = Some((user.to_owned(), password.to_owned()));
    } else if scheme.eq_ignore_ascii_case(b"bearer") {
        if credentials.is_empty() {
            return Err(malformed("Authorization: Bearer without a token"));
        }
        let token = std::str::from_utf8(credentials)
            .map_err(|_| malformed("Authorization: Bearer token is not UTF-8"))?;
        *bearer = Some(token.to_owned());
    }
    // Other schemes carry no credentials the relay knows: treated as none (then 401 if needed).
    Ok(())
}

pub(crate) fn trim(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

fn malformed(why: &str) -> HttpError {
    HttpError::Malformed(why.to_owned())
}

/// A whole error answer: `HTTP/1.1 {status} {reason}`, a plain-text body `{reason}\n`, and
/// `extra_headers` (e.g. `WWW-Authenticate: Basic realm="van"` on 401, `Location` on 307).
/// The connection is closed after it.
pub fn error_response(status: u16, reason: &str, extra_headers: &[(&str, &str)]) -> Vec<u8> {
    response_with_body(status, reason, reason, extra_headers)
}

/// An error response whose body says why (`reason`), for a refusal the client cannot guess.
pub fn error_response_because(status: u16, status_text: &str, reason: &str) -> Vec<u8> {
    response_with_body(status, status_text, reason, &[])
}

fn response_with_body(
    status: u16,
    reason: &str,
    body: &str,
    extra_headers: &[(&str, &str)],
) -> Vec<u8> {
    let body_len = body.len() + 1;
    let mut out = Vec::with_capacity(160 + body_len);
    out.extend_from_slice(format!("HTTP/1.1 {status} ").as_bytes());
    push_clean(&mut out, reason);
    out.extend_from_slice(b"\r\nServer: van\r\nContent-Type: text/plain; charset=utf-8\r\n");
    out.extend_from_slice(format!("Content-Length: {body_len}\r\n").as_bytes());
    out.extend_from_slice(b"Connection: close\r\n");
    push_headers(&mut out, extra_headers);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body.as_bytes());
    out.push(b'\n');
    out
}

/// The answer to an accepted source, sent before the relay reads the stream body: Icecast
/// clients wait for it. No body; the connection is the source's until it closes.
pub fn source_ok_response() -> Vec<u8> {
    b"HTTP/1.1 200 OK\r\nServer: van\r\nConnection: close\r\n\r\n".to_vec()
}

/// The answer to a viewer: the source's content type, a close-delimited body (no length, no
/// chunking, so any player reads raw stream bytes), no caching, and CORS open so browser
/// players may fetch it.
pub fn viewer_ok_response(content_type: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"HTTP/1.1 200 OK\r\nServer: van\r\nContent-Type: ");
    push_clean(&mut out, content_type);
    out.extend_from_slice(
        b"\r\nCache-Control: no-cache, no-store\r\nPragma: no-cache\r\n\
          Access-Control-Allow-Origin: *\r\nicy-pub: 0\r\nConnection: close\r\n\r\n",
    );
    out
}

fn push_headers(out: &mut Vec<u8>, headers: &[(&str, &str)]) {
    for (name, value) in headers {
        push_clean(out, name);
        out.extend_from_slice(b": ");
        push_clean(out, value);
        out.extend_from_slice(b"\r\n");
    }
}

/// Appends `text` with control characters replaced by spaces, so no caller's string (a source's
/// content type, an error detail) can split a header line or inject one.
fn push_clean(out: &mut Vec<u8>, text: &str) {
    out.extend(
        text.bytes()
            .map(|b| if b.is_ascii_control() { b' ' } else { b }),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The exact head ffmpeg 5.1 (Lavf 59.27) sends for `-f mpegts icecast://source:pw@…/live/x`.
    /// Note the `audio/mpeg` content type although the payload is MPEG-TS: ffmpeg's icecast
    /// protocol defaults to it, so the relay must not trust the type alone.
    const FFMPEG_ICECAST: &[u8] = b"PUT /live/x HTTP/1.1\r\nUser-Agent: Lavf/59.27.100\r\n\
Accept: */*\r\nExpect: 100-continue\r\nConnection: close\r\nHost: 127.0.0.1:18001\r\n\
Content-Type: audio/mpeg\r\nIcy-MetaData: 1\r\nIce-Public: 0\r\n\
Authorization: Basic c291cmNlOnB3\r\n\r\n";

    /// ffmpeg `-legacy_icecast 1 -content_type video/mp2t … icecast://…`.
    const FFMPEG_LEGACY_ICECAST: &[u8] = b"SOURCE /live/x HTTP/1.1\r\n\
User-Agent: Lavf/59.27.100\r\nAccept: */*\r\nConnection: close\r\nHost: 127.0.0.1:18006\r\n\
Content-Type: video/mp2t\r\nIcy-MetaData: 1\r\nIce-Public: 0\r\n\
Authorization: Basic c291cmNlOnB3\r\n\r\n";

    /// ffmpeg `-method PUT -f mpegts http://…/live/x`.
    const FFMPEG_PUT: &[u8] = b"PUT /live/x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\
User-Agent: Lavf/59.27.100\r\nAccept: */*\r\nConnection: close\r\nHost: 127.0.0.1:18002\r\n\
Icy-MetaData: 1\r\n\r\n";

    /// ffmpeg `-method PUT -auth_type basic -f mpegts http://source:pw@…/live/x`: without
    /// `-auth_type basic` ffmpeg sends no credentials until challenged, and a chunked live body
    /// cannot be replayed after a 401.
    const FFMPEG_PUT_AUTH: &[u8] = b"PUT /live/x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\
User-Agent: Lavf/59.27.100\r\nAccept: */*\r\nConnection: close\r\nHost: 127.0.0.1:18010\r\n\
Icy-MetaData: 1\r\nAuthorization: Basic c291cmNlOnB3\r\n\r\n";

    /// `curl -u src:pw -T file http://…/live/y`.
    const CURL_FILE: &[u8] = b"PUT /live/y HTTP/1.1\r\nHost: 127.0.0.1:18003\r\n\
Authorization: Basic c3JjOnB3\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n\
Content-Length: 5000\r\nExpect: 100-continue\r\n\r\n";

    /// `curl -u src:pw -T - http://…/live/y` (stdin: chunked).
    const CURL_STDIN: &[u8] = b"PUT /live/y HTTP/1.1\r\nHost: 127.0.0.1:18004\r\n\
Authorization: Basic c3JjOnB3\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n\
Transfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n";

    fn parse(buf: &[u8]) -> Request {
        parse_request(buf).unwrap().expect("complete head")
    }

    fn creds(u: &str, p: &str) -> Option<(String, String)> {
        Some((u.to_owned(), p.to_owned()))
    }

    #[test]
    fn ffmpeg_icecast_source_parses() {
        let mut buf = FFMPEG_ICECAST.to_vec();
        buf.extend_from_slice(&[0x47, 0x40, 0x11, 0x10]);
        let req = parse(&buf);
        assert_eq!(req.route, Route::Publish { stream: "x".into() });
        assert_eq!(req.head_len, FFMPEG_ICECAST.len());
        assert_eq!(req.basic_auth, creds("source", "pw"));
        assert!(req.expect_continue);
        assert_eq!(req.body, BodyFraming::UntilClose);
        assert_eq!(req.content_type.as_deref(), Some("audio/mpeg"));
        assert_eq!(req.user_agent.as_deref(), Some("Lavf/59.27.100"));
        assert!(!req.head_only);
    }

    #[test]
    fn ffmpeg_legacy_icecast_source_parses() {
        let req = parse(FFMPEG_LEGACY_ICECAST);
        assert_eq!(req.route, Route::Publish { stream: "x".into() });
        assert!(!req.expect_continue);
        assert_eq!(req.body, BodyFraming::UntilClose);
        assert_eq!(req.content_type.as_deref(), Some("video/mp2t"));
    }

    #[test]
    fn ice_1_0_request_line_is_read_as_http_1_0() {
        let head = b"SOURCE /live/old ICE/1.0\r\nAuthorization: Basic c291cmNlOnB3\r\n\
content-type: video/mp2t\r\n\r\n";
        let mut buf = head.to_vec();
        buf.extend_from_slice(b"GPAYLOAD");
        let req = parse(&buf);
        assert_eq!(req.head_len, head.len());
        assert_eq!(&buf[req.head_len..], b"GPAYLOAD");
        assert_eq!(req.route.stream(), "old");
        assert_eq!(req.basic_auth, creds("source", "pw"));
        assert_eq!(parse_request(&head[..20]), Ok(None));
    }

    #[test]
    fn ffmpeg_put_is_chunked_without_credentials() {
        let req = parse(FFMPEG_PUT);
        assert_eq!(req.body, BodyFraming::Chunked);
        assert_eq!(req.basic_auth, None);
        assert!(!req.expect_continue);
        assert_eq!(req.content_type, None);
    }

    #[test]
    fn ffmpeg_put_with_basic_auth_parses() {
        let req = parse(FFMPEG_PUT_AUTH);
        assert_eq!(req.body, BodyFraming::Chunked);
        assert_eq!(req.basic_auth, creds("source", "pw"));
        assert_eq!(req.route.stream(), "x");
    }

    #[test]
    fn curl_uploads_parse() {
        let req = parse(CURL_FILE);
        assert_eq!(req.body, BodyFraming::Length(5000));
        assert_eq!(req.basic_auth, creds("src", "pw"));
        assert!(req.expect_continue);
        let req = parse(CURL_STDIN);
        assert_eq!(req.body, BodyFraming::Chunked);
        assert_eq!(req.route.stream(), "y");
    }

    #[test]
    fn viewers_parse() {
        let req = parse(b"GET /live/cam-1.hd_~x?t=123 HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(
            req.route,
            Route::Play {
                stream: "cam-1.hd_~x".into()
            }
        );
        assert_eq!(req.body, BodyFraming::None);
        assert!(!req.head_only);
        let req = parse(b"HEAD /live/a HTTP/1.0\r\n\r\n");
        assert!(req.head_only);
        let req = parse(b"GET /van/a?from=42 HTTP/1.1\r\nAuthorization: Bearer s3cr3t\r\n\r\n");
        assert_eq!(
            req.route,
            Route::PlayVan {
                stream: "a".into(),
                from: Some(42)
            }
        );
        assert_eq!(req.bearer.as_deref(), Some("s3cr3t"));
        let req = parse(b"GET /van/a?x=1&from=18446744073709551615 HTTP/1.1\r\n\r\n");
        assert_eq!(
            req.route,
            Route::PlayVan {
                stream: "a".into(),
                from: Some(u64::MAX)
            }
        );
        let req = parse(b"GET /van/a HTTP/1.1\r\nauthorization: bearer  t \r\n\r\n");
        assert_eq!(
            req.route,
            Route::PlayVan {
                stream: "a".into(),
                from: None
            }
        );
        assert_eq!(req.bearer.as_deref(), Some("t"));
    }

    #[test]
    fn a_child_proxy_names_itself_and_a_bad_name_is_a_400() {
        let req = parse(b"GET /van/a?from=3 HTTP/1.1\r\nX-Van-Proxy: 21\r\n\r\n");
        assert_eq!(req.van_proxy, Some(21));
        assert_eq!(parse(b"GET /van/a HTTP/1.1\r\n\r\n").van_proxy, None);
        let no_id = parse(b"GET /van/a HTTP/1.1\r\nX-Van-Proxy: 0\r\n\r\n");
        assert_eq!(no_id.van_proxy, None);
        for bad in [
            &b"GET /van/a HTTP/1.1\r\nX-Van-Proxy: P21\r\n\r\n"[..],
            b"GET /van/a HTTP/1.1\r\nX-Van-Proxy: -1\r\n\r\n",
            b"GET /van/a HTTP/1.1\r\nX-Van-Proxy:\r\n\r\n",
            b"GET /van/a HTTP/1.1\r\nX-Van-Proxy: 4294967296\r\n\r\n",
            b"GET /van/a HTTP/1.1\r\nX-Van-Proxy: 1\r\nx-van-proxy: 2\r\n\r\n",
        ] {
            let e = parse_request(bad).unwrap_err();
            assert_eq!(e.status().0, 400, "{}", String::from_utf8_lossy(bad));
            assert!(String::from_utf8_lossy(&e.response()).contains("X-Van-Proxy"));
        }
    }

    #[test]
    fn partial_heads_ask_for_more() {
        for cut in 0..FFMPEG_ICECAST.len() {
            assert_eq!(parse_request(&FFMPEG_ICECAST[..cut]), Ok(None), "cut {cut}");
        }
    }

    #[test]
    fn oversized_heads_are_431() {
        let mut buf = b"GET /live/a HTTP/1.1\r\nX-Pad: ".to_vec();
        buf.resize(MAX_HEAD, b'a');
        assert_eq!(parse_request(&buf), Err(HttpError::HeadTooLarge));
        assert_eq!(parse_request(&buf[..MAX_HEAD - 1]), Ok(None));
        // Complete, but longer than the limit.
        buf.extend_from_slice(b"\r\n\r\n");
        assert_eq!(parse_request(&buf), Err(HttpError::HeadTooLarge));
        let mut many = b"GET /live/a HTTP/1.1\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            many.extend_from_slice(format!("X-{i}: 1\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(parse_request(&many), Err(HttpError::HeadTooLarge));
        assert_eq!(HttpError::HeadTooLarge.status().0, 431);
    }

    #[test]
    fn bad_requests_are_400() {
        let cases: &[&[u8]] = &[
            b"GARBAGE\r\n\r\n",
            b"GET /live/a HTTP/9.9\r\n\r\n",
            b"GET /live/ HTTP/1.1\r\n\r\n",
            b"GET /live/a/b HTTP/1.1\r\n\r\n",
            b"GET /live/a%20b HTTP/1.1\r\n\r\n",
            b"GET /live/.. HTTP/1.1\r\n\r\n",
            b"GET /van/a?from=x HTTP/1.1\r\n\r\n",
            b"GET /van/a?from=-1 HTTP/1.1\r\n\r\n",
            b"GET /van/a?from=18446744073709551616 HTTP/1.1\r\n\r\n",
            b"GET /van/a?from=1&from=2 HTTP/1.1\r\n\r\n",
            b"PUT /live/a HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"PUT /live/a HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            b"PUT /live/a HTTP/1.1\r\nContent-Length: +5\r\n\r\n",
            b"PUT /live/a HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n",
            b"PUT /live/a HTTP/1.1\r\nAuthorization: Basic !!!\r\n\r\n",
            b"PUT /live/a HTTP/1.1\r\nAuthorization: Basic bm9jb2xvbg==\r\n\r\n",
            b"PUT /live/a HTTP/1.1\r\nAuthorization: Basic c3JjOnB3\r\nAuthorization: Basic c3JjOnB3\r\n\r\n",
            b"GET /van/a HTTP/1.1\r\nAuthorization: Bearer\r\n\r\n",
        ];
        for case in cases {
            let got = parse_request(case);
            assert!(
                matches!(got, Err(HttpError::Malformed(_))),
                "{:?} -> {got:?}",
                String::from_utf8_lossy(case)
            );
        }
        let long = format!("GET /live/{} HTTP/1.1\r\n\r\n", "a".repeat(129));
        assert!(matches!(
            parse_request(long.as_bytes()),
            Err(HttpError::Malformed(_))
        ));
        let ok = format!("GET /live/{} HTTP/1.1\r\n\r\n", "a".repeat(128));
        assert!(parse_request(ok.as_bytes()).unwrap().is_some());
    }

    #[test]
    fn repeated_equal_lengths_are_accepted() {
        let req = parse(b"PUT /live/a HTTP/1.1\r\nContent-Length: 5\r\ncontent-length: 5\r\n\r\n");
        assert_eq!(req.body, BodyFraming::Length(5));
    }

    #[test]
    fn absolute_form_targets_are_served_like_origin_form() {
        for target in [
            "http://relay:8080/live/a",
            "HTTP://relay/live/a?cache=1",
            "https://relay.example/live/a",
        ] {
            let req = parse(format!("GET {target} HTTP/1.1\r\nHost: relay\r\n\r\n").as_bytes());
            assert_eq!(req.route.stream(), "a", "{target}");
        }
        let req = parse(b"GET http://relay/van/a?from=7 HTTP/1.1\r\n\r\n");
        assert_eq!(
            req.route,
            Route::PlayVan {
                stream: "a".into(),
                from: Some(7)
            }
        );
        for target in ["http://relay", "http://relay?x=1", "http://relay/"] {
            let raw = format!("GET {target} HTTP/1.1\r\n\r\n");
            assert_eq!(
                parse_request(raw.as_bytes()),
                Err(HttpError::NotFound),
                "{target}"
            );
        }
        // Only http(s) is an absolute form we serve; anything else is a path we do not have.
        assert_eq!(
            parse_request(b"GET ftp://relay/live/a HTTP/1.1\r\n\r\n"),
            Err(HttpError::NotFound)
        );
    }

    #[test]
    fn unknown_paths_404_and_methods_405() {
        assert_eq!(
            parse_request(b"GET / HTTP/1.1\r\n\r\n"),
            Err(HttpError::NotFound)
        );
        assert_eq!(
            parse_request(b"GET /live HTTP/1.1\r\n\r\n"),
            Err(HttpError::NotFound)
        );
        assert_eq!(
            parse_request(b"GET /metrics HTTP/1.1\r\n\r\n"),
            Err(HttpError::NotFound)
        );
        let err = parse_request(b"POST /live/a HTTP/1.1\r\n\r\n").unwrap_err();
        assert_eq!(err.status(), (405, "Method Not Allowed"));
        let answer = String::from_utf8(err.response()).unwrap();
        assert!(answer.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"));
        assert!(answer.contains("\r\nAllow: GET, HEAD, PUT, SOURCE\r\n"));
        assert_eq!(
            parse_request(b"PUT /van/a HTTP/1.1\r\n\r\n"),
            Err(HttpError::MethodNotAllowed { allow: "GET, HEAD" })
        );
    }

    #[test]
    fn transfer_codings_and_expectations() {
        assert_eq!(
            parse_request(b"PUT /live/a HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
            Err(HttpError::UnsupportedTransferCoding)
        );
        assert_eq!(
            parse_request(
                b"PUT /live/a HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"
            ),
            Err(HttpError::UnsupportedTransferCoding)
        );
        assert_eq!(
            parse(b"PUT /live/a HTTP/1.1\r\nTransfer-Encoding:  Chunked \r\n\r\n").body,
            BodyFraming::Chunked
        );
        assert_eq!(
            parse_request(b"PUT /live/a HTTP/1.1\r\nExpect: 200-ok\r\n\r\n"),
            Err(HttpError::ExpectationFailed)
        );
        assert!(parse(b"PUT /live/a HTTP/1.1\r\nexpect: 100-Continue\r\n\r\n").expect_continue);
    }

    #[test]
    fn other_auth_schemes_carry_no_credentials() {
        let req = parse(b"PUT /live/a HTTP/1.1\r\nAuthorization: Digest x=y\r\n\r\n");
        assert_eq!(req.basic_auth, None);
        assert_eq!(req.bearer, None);
        let req = parse(b"PUT /live/a HTTP/1.1\r\nAuthorization: Basic OnB3Og==\r\n\r\n");
        assert_eq!(req.basic_auth, creds("", "pw:"));
    }

    #[test]
    fn debug_output_hides_secrets() {
        let req = parse(b"GET /van/a HTTP/1.1\r\nAuthorization: Bearer topsecret\r\n\r\n");
        assert!(!format!("{req:?}").contains("topsecret"));
        let req = parse(FFMPEG_ICECAST);
        let shown = format!("{req:?}");
        assert!(shown.contains("source") && !shown.contains("\"pw\""));
    }

    #[test]
    fn canned_answers_are_well_formed() {
        let answer = error_response(
            401,
            "Unauthorized",
            &[("WWW-Authenticate", "Basic realm=\"van\"")],
        );
        assert_eq!(
            answer,
            b"HTTP/1.1 401 Unauthorized\r\nServer: van\r\nContent-Type: text/plain; charset=utf-8\r\n\
Content-Length: 13\r\nConnection: close\r\nWWW-Authenticate: Basic realm=\"van\"\r\n\r\nUnauthorized\n"
        );
        assert_eq!(
            source_ok_response(),
            b"HTTP/1.1 200 OK\r\nServer: van\r\nConnection: close\r\n\r\n"
        );
        let viewer = String::from_utf8(viewer_ok_response("video/mp2t\r\nX-Evil: 1")).unwrap();
        assert!(viewer.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(viewer.contains("\r\nContent-Type: video/mp2t  X-Evil: 1\r\n"));
        assert!(viewer.ends_with("\r\nConnection: close\r\n\r\n"));
        assert!(!viewer.to_ascii_lowercase().contains("content-length"));
        // Every answer must itself parse as an HTTP response whose body length is right.
        for err in [
            HttpError::Malformed("bad\r\nX: y".into()),
            HttpError::HeadTooLarge,
            HttpError::NotFound,
            HttpError::MethodNotAllowed { allow: "GET" },
            HttpError::ExpectationFailed,
            HttpError::UnsupportedTransferCoding,
        ] {
            let bytes = err.response();
            let mut headers = [httparse::EMPTY_HEADER; 16];
            let mut resp = httparse::Response::new(&mut headers);
            let n = match resp.parse(&bytes).unwrap() {
                httparse::Status::Complete(n) => n,
                httparse::Status::Partial => panic!("incomplete answer"),
            };
            assert_eq!(resp.code, Some(err.status().0));
            let len: usize = resp
                .headers
                .iter()
                .find(|h| h.name == "Content-Length")
                .map(|h| std::str::from_utf8(h.value).unwrap().parse().unwrap())
                .unwrap();
            assert_eq!(bytes.len() - n, len);
            assert_eq!(resp.headers.len(), 4 + usize::from(err.status().0 == 405));
        }
    }

    fn heads() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            Just(FFMPEG_ICECAST.to_vec()),
            Just(FFMPEG_LEGACY_ICECAST.to_vec()),
            Just(FFMPEG_PUT.to_vec()),
            Just(FFMPEG_PUT_AUTH.to_vec()),
            Just(CURL_FILE.to_vec()),
            Just(CURL_STDIN.to_vec()),
            Just(b"GET /van/s?from=7 HTTP/1.1\r\nAuthorization: Bearer tok\r\n\r\n".to_vec()),
            Just(b"SOURCE /live/old ICE/1.0\r\nAuthorization: Basic c291cmNlOnB3\r\n\r\n".to_vec()),
        ]
    }

    proptest! {
        /// A head received in any number of pieces parses, once complete, to exactly what it
        /// parses to in one piece, and every earlier prefix asks for more.
        #[test]
        fn head_split_anywhere_parses_the_same(
            head in heads(),
            body in proptest::collection::vec(any::<u8>(), 0..64),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..6),
        ) {
            let mut whole = head.clone();
            whole.extend_from_slice(&body);
            let expected = parse_request(&whole).unwrap().unwrap();
            prop_assert_eq!(expected.head_len, head.len());
            let mut ends: Vec<usize> = cuts.iter().map(|i| i.index(whole.len() + 1)).collect();
            ends.push(whole.len());
            ends.sort_unstable();
            for end in ends {
                let got = parse_request(&whole[..end]).unwrap();
                if end < head.len() {
                    prop_assert_eq!(got, None);
                } else {
                    prop_assert_eq!(got.as_ref(), Some(&expected));
                }
            }
        }

        /// Arbitrary bytes never panic, and an accepted head is within the limits and within
        /// the buffer.
        #[test]
        fn arbitrary_bytes_are_answered(buf in proptest::collection::vec(any::<u8>(), 0..2048)) {
            match parse_request(&buf) {
                Ok(Some(req)) => {
                    prop_assert!(req.head_len <= buf.len() && req.head_len <= MAX_HEAD);
                    prop_assert!(req.route.stream().bytes().all(is_stream_name_byte));
                }
                Ok(None) => prop_assert!(buf.len() < MAX_HEAD),
                Err(e) => prop_assert!(e.status().0 >= 400),
            }
        }

        /// Credentials survive encoding and parsing whatever they hold (but ':' in the user).
        #[test]
        fn basic_credentials_round_trip(user in "[^:\r\n]{0,20}", password in "\\PC{0,30}") {
            let token = BASE64.encode(format!("{user}:{password}"));
            let head = format!("PUT /live/s HTTP/1.1\r\nAuthorization: Basic {token}\r\n\r\n");
            let req = parse_request(head.as_bytes()).unwrap().unwrap();
            prop_assert_eq!(req.basic_auth, Some((user, password)));
        }
    }
}
