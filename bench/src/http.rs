//! The small part of HTTP/1.x a load generator speaks: `http://` URLs and request heads.
//! Response heads are the dataplane's own parser (`dataplane::response_head`), the one a child
//! proxy uses on its parent.

use base64::Engine;
use std::net::{SocketAddr, ToSocketAddrs};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum HttpError {
    #[error("not an http:// URL: {0:?}")]
    BadUrl(String),
    #[error("cannot resolve {0}: {1}")]
    Resolve(String, std::io::Error),
}

/// An `http://host[:port]/path` URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpUrl {
    pub host: String,
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
}

impl HttpUrl {
    pub fn parse(s: &str) -> Result<Self, HttpError> {
        let bad = || HttpError::BadUrl(s.to_string());
        let rest = s.strip_prefix("http://").ok_or_else(bad)?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.is_empty() => (h, p.parse().map_err(|_| bad())?),
            None if !authority.is_empty() => (authority, 80),
            _ => return Err(bad()),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        Ok(Self {
            host: host.to_string(),
            port,
            path: path.to_string(),
        })
    }

    /// The first address the host resolves to.
    pub fn socket_addr(&self) -> Result<SocketAddr, HttpError> {
        let target = format!("{}:{}", self.host, self.port);
        let mut addrs = (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|e| HttpError::Resolve(target.clone(), e))?;
        addrs.next().ok_or_else(|| {
            HttpError::Resolve(
                target,
                std::io::Error::new(std::io::ErrorKind::NotFound, "no address"),
            )
        })
    }

    /// `host:port` for the Host header.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// This URL with another path.
    pub fn with_path(&self, path: &str) -> Self {
        Self {
            path: path.to_string(),
            ..self.clone()
        }
    }
}

/// `Authorization: Basic …` value.
pub fn basic_auth(user: &str, password: &str) -> String {
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {token}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use dataplane::response_head::parse_response_head;

    #[test]
    fn urls() {
        let u = HttpUrl::parse("http://127.0.0.1:8000/live/a?x=1").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("127.0.0.1", 8000, "/live/a?x=1")
        );
        assert_eq!(HttpUrl::parse("http://h").unwrap().port, 80);
        assert_eq!(HttpUrl::parse("http://h:1").unwrap().path, "/");
        assert!(HttpUrl::parse("https://h/").is_err());
        assert!(HttpUrl::parse("http://:80/").is_err());
        assert!(HttpUrl::parse("http://h:x/").is_err());
    }

    #[test]
    fn response_heads() {
        assert_eq!(parse_response_head(b"HTTP/1.1 200 OK\r\n").unwrap(), None);
        let h = parse_response_head(b"HTTP/1.0 200 OK\r\nContent-Type: a/b\r\n\r\nbody")
            .unwrap()
            .unwrap();
        assert_eq!((h.status, h.len, h.is_chunked()), (200, 38, false));
        let h = parse_response_head(b"HTTP/1.1 100 Continue\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(h.status, 100);
        assert!(parse_response_head(b"garbage\r\n\r\n").is_err());
        assert_eq!(basic_auth("source", "hackme"), "Basic c291cmNlOmhhY2ttZQ==");
    }
}
