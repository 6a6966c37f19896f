//! DNS answers for stream names (hickory-server) ([0026], [0033]).
//!
//! `A` queries for `{stream}.{zone}` are answered with the IPv4 addresses of the proxies that
//! take new viewers of the stream in the region of the querying address (the CIDR table,
//! [0049]), with a short TTL so viewers follow the tree as it changes. When none accepts there
//! yet, the name is resolved as `/resolve` would (which may start the stream's first path in
//! that region, [0032], or fall back to another region) and the chosen proxy is the answer. `AAAA` is answered the same way with
//! IPv6 addresses. Other types in the zone get an empty answer; an unknown stream NXDOMAIN; a
//! name outside the zone REFUSED. A stream name must be one DNS label here (no dots); names are
//! matched as the client wrote them (case kept, as stream names are case-sensitive).

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use hickory_proto::op::{Header, HeaderCounts, MessageType, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_server::net::runtime::Time;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use tokio::net::{TcpListener, UdpSocket};
use tracing::{debug, warn};

use super::control::CoordinatorHandle;
use super::http::valid_stream_name;

/// Answers queries under one zone.
pub struct StreamDns {
    handle: CoordinatorHandle,
    /// Lowercase, fully qualified, with its leading dot: ".live.van.".
    suffix: String,
    ttl: u32,
}

impl StreamDns {
    pub fn new(handle: CoordinatorHandle, zone: &str, ttl: u32) -> Self {
        let zone = zone.trim_start_matches('.').to_ascii_lowercase();
        StreamDns {
            handle,
            suffix: format!(".{zone}"),
            ttl,
        }
    }

    /// The stream a name asks for, if it is in our zone.
    pub fn stream_of(&self, name: &str) -> Option<String> {
        stream_in_zone(&self.suffix, name)
    }

    /// Addresses for `stream`: `Err(())` if no source publishes it.
    async fn addresses(&self, stream: &str, client: IpAddr) -> Result<Vec<IpAddr>, ()> {
        match self.handle.accepting(stream.to_string(), client).await {
            Some((false, _)) => return Err(()),
            Some((true, peers)) if !peers.is_empty() => {
                // Proxies sharing a host share an address: DNS carries no port.
                let mut ips: Vec<IpAddr> = peers.iter().map(|p| p.addr.ip()).collect();
                ips.sort();
                ips.dedup();
                return Ok(ips);
            }
            _ => {}
        }
        match self
            .handle
            .resolve(stream.to_string(), None, Some(client))
            .await
        {
            Some(a) => match a.resolution.target {
                Some(peer) => Ok(vec![peer.addr.ip()]),
                None if !a.stream_known => Err(()),
                None => Ok(Vec::new()),
            },
            None => Ok(Vec::new()),
        }
    }
}

#[async_trait::async_trait]
impl RequestHandler for StreamDns {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response: R,
    ) -> ResponseInfo {
        self.handle
            .stats
            .dns_queries
            .fetch_add(1, Ordering::Relaxed);
        let builder = MessageResponseBuilder::from_message_request(request);
        let fail_info = |code: ResponseCode| {
            let mut metadata = Metadata::response_from_request(&request.metadata);
            metadata.response_code = code;
            ResponseInfo::from(Header {
                metadata,
                counts: HeaderCounts::default(),
            })
        };
        if request.metadata.message_type != MessageType::Query
            || request.metadata.op_code != OpCode::Query
        {
            let msg = builder.error_msg(&request.metadata, ResponseCode::NotImp);
            return response
                .send_response(msg)
                .await
                .unwrap_or_else(|_| fail_info(ResponseCode::NotImp));
        }
        let info = match request.request_info() {
            Ok(i) => i,
            Err(_) => {
                let msg = builder.error_msg(&request.metadata, ResponseCode::FormErr);
                return response
                    .send_response(msg)
                    .await
                    .unwrap_or_else(|_| fail_info(ResponseCode::FormErr));
            }
        };
        let qname: Name = info.query.original().name().clone();
        let qtype = info.query.query_type();
        let stream = self.stream_of(&qname.to_ascii());
        let (code, records) = match stream {
            None => (ResponseCode::Refused, Vec::new()),
            Some(s) if !valid_stream_name(&s) || s.contains('.') => {
                (ResponseCode::NXDomain, Vec::new())
            }
            Some(s) => match self.addresses(&s, request.src().ip()).await {
                Err(()) => (ResponseCode::NXDomain, Vec::new()),
                Ok(ips) => {
                    let records: Vec<Record> = ips
                        .into_iter()
                        .filter_map(|ip| match (ip, qtype) {
                            (IpAddr::V4(v4), RecordType::A) => Some(RData::A(A(v4))),
                            (IpAddr::V6(v6), RecordType::AAAA) => Some(RData::AAAA(AAAA(v6))),
                            _ => None,
                        })
                        .map(|rd| Record::from_rdata(qname.clone(), self.ttl, rd))
                        .collect();
                    debug!(stream = %s, ?qtype, answers = records.len(), "dns answer");
                    (ResponseCode::NoError, records)
                }
            },
        };
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.authoritative = code != ResponseCode::Refused;
        metadata.response_code = code;
        let msg = builder.build(
            metadata,
            records.iter(),
            std::iter::empty(),
            std::iter::empty(),
            std::iter::empty(),
        );
        match response.send_response(msg).await {
            Ok(info) => info,
            Err(e) => {
                warn!(error = %e, "cannot send DNS response");
                fail_info(ResponseCode::ServFail)
            }
        }
    }
}

/// The label before `suffix` (".zone.", lowercase) in `name` (trailing dot optional), the zone
/// matched without regard to ASCII case; `None` outside the zone or for the zone itself.
pub fn stream_in_zone(suffix: &str, name: &str) -> Option<String> {
    let fqdn = if name.ends_with('.') {
        name.to_string()
    } else {
        format!("{name}.")
    };
    if fqdn.len() <= suffix.len() {
        return None;
    }
    let split = fqdn.len() - suffix.len();
    if !fqdn.is_char_boundary(split) || !fqdn[split..].eq_ignore_ascii_case(suffix) {
        return None;
    }
    Some(fqdn[..split].to_string())
}

/// Serve DNS on `udp` and `tcp` until the process ends.
pub async fn serve_dns(handler: StreamDns, udp: UdpSocket, tcp: TcpListener) {
    let mut server = hickory_server::Server::new(handler);
    server.register_socket(udp);
    server.register_listener(tcp, Duration::from_secs(5), 4096);
    if let Err(e) = server.block_until_done().await {
        warn!(error = %e, "DNS server stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::stream_in_zone;

    #[test]
    fn names_in_the_zone() {
        let z = ".live.van.";
        assert_eq!(stream_in_zone(z, "demo.live.van."), Some("demo".into()));
        assert_eq!(stream_in_zone(z, "Demo.LIVE.van"), Some("Demo".into()));
        assert_eq!(stream_in_zone(z, "a.b.live.van."), Some("a.b".into()));
        assert_eq!(stream_in_zone(z, "live.van."), None);
        assert_eq!(stream_in_zone(z, ".live.van."), None);
        assert_eq!(stream_in_zone(z, "demo.example.com."), None);
        assert_eq!(stream_in_zone(z, "xlive.van."), None);
        assert_eq!(stream_in_zone(z, "é.live.van."), Some("é".into()));
    }
}
