//! The admin port cannot be used to take the relay down (issue 8, defect 7): idle admin
//! connections beyond `--admin-max-connections` get `503` with the reason at once and are logged;
//! the data port keeps answering throughout; idle admin connections are closed after the header
//! timeout, after which `/metrics` answers again.

use std::io::{ErrorKind, Read};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use van_e2e::{Relay, RelayOptions, connect, read_head, request};

const T: Duration = Duration::from_secs(10);
const LIMIT: usize = 8;
const HEADER_TIMEOUT_S: u64 = 1;

/// Waits (bounded) until the relay closes `s`; true if it did.
fn closed_by_relay(s: &mut TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let deadline = Instant::now() + within;
    let mut buf = [0u8; 256];
    while Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return true, // reset
        }
    }
    false
}

#[test]
fn idle_admin_connections_are_capped_answered_and_timed_out_without_touching_the_data_port() {
    let relay = Relay::start_with(RelayOptions::args(&[
        "--admin-max-connections",
        &LIMIT.to_string(),
        "--header-timeout",
        &HEADER_TIMEOUT_S.to_string(),
    ]));
    let metrics = b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    assert_eq!(request(relay.admin, metrics, T).unwrap().status, 200);

    // Fill every admin slot with a connection that never sends a byte.
    let mut idle: Vec<TcpStream> = (0..LIMIT)
        .map(|_| connect(relay.admin, T).unwrap())
        .collect();
    // Accepting is asynchronous: give the relay a bounded moment to take them all.
    let deadline = Instant::now() + T;
    let mut refused = None;
    while Instant::now() < deadline {
        let mut extra = connect(relay.admin, T).unwrap();
        match read_head(&mut extra) {
            Ok(r) if r.status == 503 => {
                refused = Some(r);
                break;
            }
            _ => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    let refused = refused.expect("a connection beyond the limit is answered 503");
    let body = String::from_utf8_lossy(&refused.body).into_owned();
    assert!(
        body.contains(&format!("limit ({LIMIT})")),
        "the 503 says why: {body:?}"
    );
    // Many more are refused just as fast and hold nothing.
    for _ in 0..100 {
        let mut extra = connect(relay.admin, T).unwrap();
        assert_eq!(read_head(&mut extra).unwrap().status, 503);
    }
    // The data port answers meanwhile.
    let unknown = b"GET /live/nothing HTTP/1.1\r\nHost: t\r\n\r\n";
    assert_eq!(request(relay.data, unknown, T).unwrap().status, 404);

    // The idle ones are closed once the header timeout passes (bounded wait: timeout + slack).
    let within = Duration::from_secs(HEADER_TIMEOUT_S + 5);
    for s in &mut idle {
        assert!(
            closed_by_relay(s, within),
            "an idle admin connection outlived the header timeout"
        );
    }
    // And the port serves again.
    let deadline = Instant::now() + T;
    let mut status = 0;
    while Instant::now() < deadline {
        status = request(relay.admin, metrics, T)
            .map(|r| r.status)
            .unwrap_or(0);
        if status == 200 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        status, 200,
        "/metrics after the idle connections were closed"
    );
    let log = relay.log();
    assert!(
        log.contains("admin port: refused") && log.contains("--admin-max-connections"),
        "each refusal is logged (the first ones one by one): {log}"
    );
}
