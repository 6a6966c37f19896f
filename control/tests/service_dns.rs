//! DNS of the real `pnc`: `{stream}.live.van.` answers with the accepting proxies' addresses
//! and a short TTL ([0026], [0033]). Every proxy has its own loopback address (127.0.0.N), so
//! the answers can be told apart.

mod service_util;

use std::net::Ipv4Addr;
use std::time::Duration;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{RData, RecordType};
use service_util::*;

fn a_records(m: &Message) -> Vec<(Ipv4Addr, u32)> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some((a.0, r.ttl)),
            _ => None,
        })
        .collect()
}

#[test]
fn dns_answers_with_the_accepting_proxies() {
    let pnc = Pnc::start("", "[dns]\nzone = \"live.van.\"\nttl_secs = 5\n");
    let mut script = figure_2_hellos();
    script += "P1 announce other source=www.ccrl.com\nwait-stream other 20000\n";
    // u1–u4: P31 fills and stops accepting, P32 takes u4 (figure 2(b), (c)).
    for _ in 1..=4 {
        script += "viewer demo sleep=300\n";
    }
    let run = pnc.script(&script, Duration::from_secs(120));
    run.assert_ok();
    assert_eq!(run.viewers(), vec![31, 31, 31, 32]);

    let m = dns_query(pnc.dns, "demo.live.van.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.metadata.authoritative);
    assert_eq!(a_records(&m), vec![(Ipv4Addr::new(127, 0, 0, 32), 5)]);

    // A stream with a source and no viewer yet: the query starts its first path ([0032]) and
    // names the proxy a first viewer would get: not P31, whose machine is full with demo's
    // three viewers (capacity is per machine across streams, [0047]), nor P32, which carries
    // demo's u4, but P33, the machine with the most free room (default placement).
    let m = dns_query(pnc.dns, "other.live.van.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_eq!(a_records(&m), vec![(Ipv4Addr::new(127, 0, 0, 33), 5)]);

    // No IPv6 addresses: an empty answer for AAAA.
    let m = dns_query(pnc.dns, "demo.live.van.", RecordType::AAAA);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty());

    // Unknown stream: NXDOMAIN; outside the zone: REFUSED.
    let m = dns_query(pnc.dns, "nothing.live.van.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert!(m.answers.is_empty());
    let m = dns_query(pnc.dns, "demo.example.com.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    // The zone is matched without regard to case.
    let m = dns_query(pnc.dns, "demo.LIVE.Van.", RecordType::A);
    assert_eq!(a_records(&m), vec![(Ipv4Addr::new(127, 0, 0, 32), 5)]);
}

#[test]
fn dns_answers_by_the_client_region() {
    // Queries from 127.0.0.2 come from R1, from 127.0.0.3 from R2.
    let pnc = Pnc::start(
        "",
        "[[regions]]\ncidr = \"127.0.0.2/32\"\nregion = \"R1\"\n\
         [[regions]]\ncidr = \"127.0.0.3/32\"\nregion = \"R2\"\n",
    );
    let run = pnc.script(
        "hello P1\nhello P11 region=R1 rtt=P1:11\nhello P21 region=R1 rtt=P1:31\n\
         hello P12 region=R2 rtt=P1:12\nhello P22 region=R2 rtt=P1:32\n\
         P1 expect Welcome 20000\nP11 expect Welcome 20000\nP21 expect Welcome 20000\n\
         P12 expect Welcome 20000\nP22 expect Welcome 20000\n\
         P1 announce solo\nwait-stream solo 20000\n",
        Duration::from_secs(60),
    );
    run.assert_ok();
    let r1 = [127, 0, 0, 2];
    let r2 = [127, 0, 0, 3];
    // Each region's first query starts that region's path and names its bottom tier.
    let m = dns_query_from(r1, pnc.dns, "solo.live.van.", RecordType::A);
    assert_eq!(a_records(&m), vec![(Ipv4Addr::new(127, 0, 0, 21), 5)]);
    let m = dns_query_from(r2, pnc.dns, "solo.live.van.", RecordType::A);
    assert_eq!(a_records(&m), vec![(Ipv4Addr::new(127, 0, 0, 22), 5)]);
    // Then each region sees only its own accepting proxy.
    let m = dns_query_from(r1, pnc.dns, "solo.live.van.", RecordType::A);
    assert_eq!(a_records(&m), vec![(Ipv4Addr::new(127, 0, 0, 21), 5)]);
    let m = dns_query_from(r2, pnc.dns, "solo.live.van.", RecordType::A);
    assert_eq!(a_records(&m), vec![(Ipv4Addr::new(127, 0, 0, 22), 5)]);
}
