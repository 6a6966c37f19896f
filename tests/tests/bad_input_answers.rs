//! (e) Each bad input gets its clear answer — 400, 431, 401, 409, 404, 405, a slowloris closed
//! after the header timeout, 503 over the connection limit — and a stream that flows meanwhile
//! loses nothing.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::process::Stdio;
use std::time::{Duration, Instant};
use van_e2e::{
    RawSource, Relay, RelayOptions, SOURCE_PASSWORD, SOURCE_USER, VAN_TOKEN, basic, connect, field,
    request, source_args, status_of, vanbench, vanbench_json,
};

const T: Duration = Duration::from_secs(10);
const HEADER_TIMEOUT_S: u64 = 2;
const MAX_CONNECTIONS: usize = 32;

fn status(relay: &Relay, raw: &[u8]) -> u16 {
    status_of(relay.data, raw, T)
        .unwrap_or_else(|e| panic!("{:?}: {e:#}", String::from_utf8_lossy(raw)))
}

fn check_bad_requests(relay: &Relay) {
    // 400: not HTTP; a bad stream name; a bad from=.
    assert_eq!(status(relay, b"GARBAGE\r\n\r\n"), 400);
    assert_eq!(
        status(relay, b"GET /live/a%20b HTTP/1.1\r\nHost: t\r\n\r\n"),
        400
    );
    let van_bad_from =
        format!("GET /van/steady?from=x HTTP/1.1\r\nAuthorization: Bearer {VAN_TOKEN}\r\n\r\n");
    assert_eq!(status(relay, van_bad_from.as_bytes()), 400);

    // 431: a head larger than 8 KiB.
    let mut big = b"GET /live/steady HTTP/1.1\r\nX-Pad: ".to_vec();
    big.resize(9 * 1024, b'a');
    big.extend_from_slice(b"\r\n\r\n");
    assert_eq!(status(relay, &big), 431);

    // 401: a source with a wrong password or none; VAN without a token or with a wrong one.
    let wrong = format!(
        "PUT /live/intruder HTTP/1.1\r\nAuthorization: {}\r\nExpect: 100-continue\r\n\r\n",
        basic(SOURCE_USER, "wrong")
    );
    let answer = request(relay.data, wrong.as_bytes(), T).unwrap();
    assert_eq!(answer.status, 401);
    assert!(
        answer
            .header("www-authenticate")
            .is_some_and(|v| v.starts_with("Basic")),
        "{answer:?}"
    );
    assert_eq!(
        status(
            relay,
            b"PUT /live/intruder HTTP/1.1\r\nExpect: 100-continue\r\n\r\n"
        ),
        401
    );
    assert_eq!(
        status(relay, b"SOURCE /live/intruder HTTP/1.0\r\n\r\n"),
        401
    );
    assert_eq!(status(relay, b"GET /van/steady HTTP/1.1\r\n\r\n"), 401);
    assert_eq!(
        status(
            relay,
            b"GET /van/steady HTTP/1.1\r\nAuthorization: Bearer nope\r\n\r\n"
        ),
        401
    );

    // 409: a second source on a live stream.
    assert_eq!(
        RawSource::publish(relay.data, "steady", Some((SOURCE_USER, SOURCE_PASSWORD))).err(),
        Some(409)
    );

    // 404: an unknown stream, an unknown path.
    assert_eq!(status(relay, b"GET /live/nosuch HTTP/1.1\r\n\r\n"), 404);
    assert_eq!(status(relay, b"GET /index.html HTTP/1.1\r\n\r\n"), 404);

    // 405: a method the route does not take.
    let answer = request(relay.data, b"DELETE /live/steady HTTP/1.1\r\n\r\n", T).unwrap();
    assert_eq!(answer.status, 405);
}

/// A client that sends a header line every 400 ms and never ends its head is closed once the
/// header timeout passes (not at once, and not never).
fn check_slowloris(relay: &Relay) {
    let mut stream = connect(relay.data, T).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let start = Instant::now();
    stream.write_all(b"GET /live/steady HTTP/1.1\r\n").unwrap();
    let mut buf = [0u8; 1024];
    let closed_after = loop {
        assert!(
            start.elapsed() < Duration::from_secs(HEADER_TIMEOUT_S + 10),
            "a slowloris client was not closed"
        );
        if stream.write_all(b"X-Slow: 1\r\n").is_err() {
            break start.elapsed();
        }
        match stream.read(&mut buf) {
            Ok(0) => break start.elapsed(),
            // An answer (e.g. 408) before the close: the close comes next.
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break start.elapsed(),
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    assert!(
        closed_after >= Duration::from_millis(HEADER_TIMEOUT_S * 1000 / 2),
        "closed after {closed_after:?}, before the header timeout"
    );
}

/// Connections beyond the limit get 503; once the extra ones are gone, new ones are served.
fn check_connection_limit(relay: &Relay) {
    // Open them all at once, well within the header timeout, then look at the answers.
    let held: Vec<TcpStream> = (0..MAX_CONNECTIONS + 8)
        .map(|_| connect(relay.data, T).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let mut refused = 0;
    for mut stream in held.iter() {
        stream.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 256];
        if let Ok(n) = stream.read(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]);
            assert!(
                text.starts_with("HTTP/1.1 503"),
                "unexpected answer {text:?}"
            );
            refused += 1;
        }
    }
    assert!(
        refused >= 1,
        "no 503 among {} connections (limit {MAX_CONNECTIONS})",
        held.len()
    );
    drop(held);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(status(relay, b"GET /live/nosuch HTTP/1.1\r\n\r\n"), 404);
}

#[test]
fn bad_inputs_get_clear_answers_while_another_stream_flows() {
    let relay = Relay::start_with(RelayOptions::args(&[
        "--header-timeout",
        &HEADER_TIMEOUT_S.to_string(),
        "--max-connections",
        &MAX_CONNECTIONS.to_string(),
    ]));
    let _source = vanbench(&source_args(&relay, "steady", "2M", "90s"), Stdio::null()).unwrap();
    relay.wait_live("steady", Duration::from_secs(20)).unwrap();
    let args: Vec<String> = [
        "viewers",
        "--url",
        &relay.url("/live/steady"),
        "-n",
        "2",
        "--duration",
        "15s",
        "--bitrate",
        "2M",
        "--json",
        "-",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let viewers = std::thread::spawn(move || vanbench_json(&args, Duration::from_secs(90)));
    std::thread::sleep(Duration::from_secs(1));

    check_bad_requests(&relay);
    check_slowloris(&relay);
    check_connection_limit(&relay);

    let summary = viewers.join().unwrap().unwrap();
    eprintln!("vanbench summary: {summary}");
    assert_eq!(field(&summary, "connected"), 2.0, "{summary}");
    for counter in ["lost", "corrupt", "duplicated", "out_of_order"] {
        assert_eq!(field(&summary, counter), 0.0, "{counter}: {summary}");
    }
    assert!(
        field(&summary, "delivered_ratio") >= 0.8,
        "the steady stream slowed: {summary}"
    );
}
