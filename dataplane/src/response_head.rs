//! HTTP/1.1 response heads, as a client of the data port reads them: a child proxy pulling
//! `GET /van/{stream}` from its parent, and vanbench's sources and viewers (DESIGN.md, "Wire
//! protocols").
//!
//! [`parse_response_head`] turns the bytes received so far into a [`ResponseHead`]: the status,
//! where the body starts, how the body is delimited, and the two headers a client acts on
//! (`Content-Type`, and `Location` of a `307`). It uses `httparse` and reads `Content-Length` and
//! `Transfer-Encoding` with the same strict rules as a request head ([`crate::http`]).
//!
//! What it does not do: no I/O, no decoding of the body (a chunked body goes to
//! [`crate::chunked`], VAN frames to [`crate::frame_reader`]), no following of redirects, and no
//! knowledge of the request: the answer to a `HEAD` has no body whatever its head says, and the
//! caller knows that. A `1xx` head (`100 Continue`) is returned like any other: the final head
//! follows it, from [`ResponseHead::len`] on.

use thiserror::Error;

use crate::http::{BodyFraming, HttpError, LengthHeaders, MAX_HEADERS, trim};

/// The longest response head accepted. Longer means the peer is not a relay this client
/// understands; a client never buffers more than this before it gives up.
pub const MAX_RESPONSE_HEAD: usize = 16 * 1024;

/// A parsed response head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResponseHead {
    pub status: u16,
    pub reason: String,
    /// Length of the head in bytes, including the blank line: body bytes start there.
    pub len: usize,
    /// How the body is delimited. [`BodyFraming::None`] for `1xx`, `204` and `304` (they have
    /// no body, RFC 9112 6.3); otherwise a length, chunks or [`BodyFraming::UntilClose`].
    pub body: BodyFraming,
    pub content_type: Option<String>,
    /// Where a redirect (`307`) points.
    pub location: Option<String>,
    /// The content type of a VAN frame stream's payload ([`crate::frame::PAYLOAD_TYPE_HEADER`]).
    pub payload_type: Option<String>,
}

impl ResponseHead {
    pub fn is_chunked(&self) -> bool {
        self.body == BodyFraming::Chunked
    }
}

#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum ResponseError {
    #[error("malformed response head: {0}")]
    Malformed(String),
    #[error("response head larger than {MAX_RESPONSE_HEAD} bytes or {MAX_HEADERS} lines")]
    HeadTooLarge,
    #[error("response uses a transfer coding other than chunked")]
    UnsupportedTransferCoding,
}

impl From<HttpError> for ResponseError {
    fn from(e: HttpError) -> Self {
        match e {
            HttpError::UnsupportedTransferCoding => Self::UnsupportedTransferCoding,
            HttpError::HeadTooLarge => Self::HeadTooLarge,
            HttpError::Malformed(why) => Self::Malformed(why),
            other => Self::Malformed(other.to_string()),
        }
    }
}

/// Parses a response head from the start of `buf`: `Ok(None)` while it is incomplete and
/// shorter than [`MAX_RESPONSE_HEAD`]. Bytes after the head are not looked at.
pub fn parse_response_head(buf: &[u8]) -> Result<Option<ResponseHead>, ResponseError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_RESPONSE_HEAD => {
            return Err(ResponseError::HeadTooLarge);
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(ResponseError::HeadTooLarge),
        Err(e) => return Err(ResponseError::Malformed(e.to_string())),
    };
    if len > MAX_RESPONSE_HEAD {
        return Err(ResponseError::HeadTooLarge);
    }
    let status = resp.code.unwrap_or_default();
    let mut length = LengthHeaders::default();
    let mut content_type = None;
    let mut location = None;
    let mut payload_type = None;
    for h in resp.headers.iter() {
        let value = trim(h.value);
        if length.read(h.name, value)? {
            continue;
        }
        if h.name.eq_ignore_ascii_case("content-type") {
            content_type = Some(String::from_utf8_lossy(value).into_owned());
        } else if h.name.eq_ignore_ascii_case("location") {
            location = Some(String::from_utf8_lossy(value).into_owned());
        } else if h
            .name
            .eq_ignore_ascii_case(crate::frame::PAYLOAD_TYPE_HEADER)
        {
            payload_type = Some(String::from_utf8_lossy(value).into_owned());
        }
    }
    let body = length.finish()?;
    let body = if (100..200).contains(&status) || status == 204 || status == 304 {
        BodyFraming::None
    } else {
        body
    };
    Ok(Some(ResponseHead {
        status,
        reason: resp.reason.unwrap_or_default().to_owned(),
        len,
        body,
        content_type,
        location,
        payload_type,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{error_response, source_ok_response, viewer_ok_response};
    use proptest::prelude::*;

    #[test]
    fn the_relays_own_answers_parse() {
        let ok = viewer_ok_response("video/mp2t");
        let h = parse_response_head(&ok).unwrap().unwrap();
        assert_eq!((h.status, h.len), (200, ok.len()));
        assert_eq!(h.body, BodyFraming::UntilClose);
        assert_eq!(h.content_type.as_deref(), Some("video/mp2t"));
        let h = parse_response_head(&source_ok_response()).unwrap().unwrap();
        assert_eq!(h.status, 200);
        let moved = error_response(307, "Temporary Redirect", &[("Location", "http://b:1/x")]);
        let h = parse_response_head(&moved).unwrap().unwrap();
        assert_eq!((h.status, h.reason.as_str()), (307, "Temporary Redirect"));
        assert_eq!(h.location.as_deref(), Some("http://b:1/x"));
        assert!(matches!(h.body, BodyFraming::Length(n) if n as usize == moved.len() - h.len));
    }

    #[test]
    fn informational_heads_have_no_body() {
        let both = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc";
        let first = parse_response_head(both).unwrap().unwrap();
        assert_eq!((first.status, first.body), (100, BodyFraming::None));
        let second = parse_response_head(&both[first.len..]).unwrap().unwrap();
        assert_eq!((second.status, second.body), (200, BodyFraming::Length(3)));
    }

    #[test]
    fn ambiguous_bodies_are_refused() {
        let both = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert!(matches!(
            parse_response_head(both),
            Err(ResponseError::Malformed(_))
        ));
        let gzip = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n";
        assert_eq!(
            parse_response_head(gzip),
            Err(ResponseError::UnsupportedTransferCoding)
        );
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\n";
        assert!(parse_response_head(chunked).unwrap().unwrap().is_chunked());
    }

    #[test]
    fn oversized_heads_are_refused() {
        let mut long = b"HTTP/1.1 200 OK\r\n".to_vec();
        while long.len() < MAX_RESPONSE_HEAD {
            long.extend_from_slice(b"X-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
        }
        assert_eq!(parse_response_head(&long), Err(ResponseError::HeadTooLarge));
    }

    proptest! {
        /// A complete head is found whatever follows it, and every shorter prefix asks for more.
        #[test]
        fn prefixes_ask_for_more_and_the_body_is_not_read(
            status in 200u16..600,
            ct in "[a-z]{1,8}/[a-z0-9.+-]{1,12}",
            body in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let mut wire = format!("HTTP/1.1 {status} Whatever\r\nContent-Type: {ct}\r\n\r\n")
                .into_bytes();
            let len = wire.len();
            wire.extend_from_slice(&body);
            let h = parse_response_head(&wire).unwrap().unwrap();
            prop_assert_eq!(h.len, len);
            prop_assert_eq!(h.status, status);
            prop_assert_eq!(h.content_type.as_deref(), Some(ct.as_str()));
            for cut in 0..len {
                prop_assert_eq!(parse_response_head(&wire[..cut]), Ok(None));
            }
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            if let Ok(Some(h)) = parse_response_head(&bytes) {
                prop_assert!(h.len <= bytes.len());
            }
        }
    }
}
