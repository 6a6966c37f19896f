//! (e) Each bad input gets its clear answer — 400, 431, 401, 409, 404, 405, a slowloris closed
//! after the header timeout, 503 over the connection limit — and each is logged (one line of
//! the relay's log per refusal), while a stream that flows meanwhile loses nothing.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use van_e2e::checked::{
    CheckedViewers, GeneratedSource, Kind, assert_every_byte_right, assert_every_ratio_at_least,
    delivered_ratios,
};
use van_e2e::{
    RawSource, Relay, RelayOptions, SOURCE_PASSWORD, SOURCE_USER, VAN_TOKEN, basic, connect, poll,
    request,
};

const T: Duration = Duration::from_secs(10);
const HEADER_TIMEOUT_S: u64 = 2;
const MAX_CONNECTIONS: usize = 32;

/// Lines of the relay's log that contain every one of `parts`.
fn logged(relay: &Relay, parts: &[&str]) -> usize {
    relay
        .log()
        .lines()
        .filter(|l| parts.iter().all(|p| l.contains(p)))
        .count()
}

/// Waits (bounded) until the relay's log holds `before + n` lines with every one of `parts`, and
/// checks it holds no more: each refusal is logged once.
fn assert_logged(relay: &Relay, parts: &[&str], before: usize, n: usize, what: &str) {
    let reached = poll(Duration::from_secs(10), Duration::from_millis(20), || {
        (logged(relay, parts) >= before + n).then_some(())
    });
    let count = logged(relay, parts) - before;
    assert!(
        reached.is_some() && count == n,
        "{what}: {count} log lines with {parts:?}, want {n}; relay log:\n{}",
        relay.log()
    );
}

/// Sends `raw`, checks the answer's status and that the refusal was logged once.
fn answered_and_logged(relay: &Relay, raw: &[u8], status: u16, log: &[&str]) {
    let what = String::from_utf8_lossy(&raw[..raw.len().min(60)]).into_owned();
    let before = logged(relay, log);
    let answer = request(relay.data, raw, T).unwrap_or_else(|e| panic!("{what:?}: {e:#}"));
    assert_eq!(answer.status, status, "{what:?}: {answer:?}");
    if status == 401 {
        assert!(
            answer.header("www-authenticate").is_some(),
            "{what:?}: a 401 names its scheme: {answer:?}"
        );
    }
    assert_logged(relay, log, before, 1, &what);
}

fn check_bad_requests(relay: &Relay) {
    // 400: not HTTP; a bad stream name; a bad from=.
    answered_and_logged(relay, b"GARBAGE\r\n\r\n", 400, &["status=400"]);
    answered_and_logged(
        relay,
        b"GET /live/a%20b HTTP/1.1\r\nHost: t\r\n\r\n",
        400,
        &["status=400"],
    );
    let van_bad_from =
        format!("GET /van/steady?from=x HTTP/1.1\r\nAuthorization: Bearer {VAN_TOKEN}\r\n\r\n");
    answered_and_logged(relay, van_bad_from.as_bytes(), 400, &["status=400"]);

    // 431: a head larger than 8 KiB.
    let mut big = b"GET /live/steady HTTP/1.1\r\nX-Pad: ".to_vec();
    big.resize(9 * 1024, b'a');
    big.extend_from_slice(b"\r\n\r\n");
    answered_and_logged(relay, &big, 431, &["status=431"]);

    // 401: a source with a wrong password or none; VAN without a token or with a wrong one.
    let source_refused = ["source refused", "(401)"];
    let wrong = format!(
        "PUT /live/intruder HTTP/1.1\r\nAuthorization: {}\r\nExpect: 100-continue\r\n\r\n",
        basic(SOURCE_USER, "wrong")
    );
    answered_and_logged(relay, wrong.as_bytes(), 401, &source_refused);
    answered_and_logged(
        relay,
        b"PUT /live/intruder HTTP/1.1\r\nExpect: 100-continue\r\n\r\n",
        401,
        &source_refused,
    );
    answered_and_logged(
        relay,
        b"SOURCE /live/intruder HTTP/1.0\r\n\r\n",
        401,
        &source_refused,
    );
    let van_refused = ["VAN viewer refused", "(401)"];
    answered_and_logged(
        relay,
        b"GET /van/steady HTTP/1.1\r\n\r\n",
        401,
        &van_refused,
    );
    answered_and_logged(
        relay,
        b"GET /van/steady HTTP/1.1\r\nAuthorization: Bearer nope\r\n\r\n",
        401,
        &van_refused,
    );

    // 409: a second source on a live stream.
    let conflict = ["source refused", "(409)"];
    let before = logged(relay, &conflict);
    assert_eq!(
        RawSource::publish(relay.data, "steady", Some((SOURCE_USER, SOURCE_PASSWORD))).err(),
        Some(409)
    );
    assert_logged(relay, &conflict, before, 1, "a second source");

    // 404: an unknown stream, an unknown path.
    answered_and_logged(
        relay,
        b"GET /live/nosuch HTTP/1.1\r\n\r\n",
        404,
        &["viewer refused", "(404)"],
    );
    answered_and_logged(
        relay,
        b"GET /index.html HTTP/1.1\r\n\r\n",
        404,
        &["status=404"],
    );

    // 405: a method the route does not take.
    answered_and_logged(
        relay,
        b"DELETE /live/steady HTTP/1.1\r\n\r\n",
        405,
        &["status=405"],
    );
}

const HEADER_TIMEOUT_LOG: &[&str] = &["--header-timeout"];
const OVER_LIMIT_LOG: &[&str] = &["--max-connections"];

/// A client that sends a header line every 300 ms and never ends its head is closed once the
/// header timeout passes (not at once, and not never), and that is logged.
fn check_slowloris(relay: &Relay) {
    let before = logged(relay, HEADER_TIMEOUT_LOG);
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
    assert_logged(relay, HEADER_TIMEOUT_LOG, before, 1, "the slowloris client");
}

/// How one of many connections that send nothing was answered.
#[derive(Debug, PartialEq, Eq)]
enum Answer {
    /// `503` and a close: over the connection limit.
    Refused,
    /// Accepted, then closed without a byte once the header timeout passed.
    TimedOut,
}

/// Reads what the relay sends on `stream` until it closes, up to `deadline`.
fn answer_of(mut stream: TcpStream, deadline: Instant) -> Result<Answer, String> {
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!("no close by the deadline, got {got:?}"));
        }
        stream
            .set_read_timeout(Some(left))
            .map_err(|e| e.to_string())?;
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => return Err(format!("{e} after {:?}", String::from_utf8_lossy(&got))),
        }
    }
    let text = String::from_utf8_lossy(&got);
    if got.is_empty() {
        Ok(Answer::TimedOut)
    } else if text.starts_with("HTTP/1.1 503 ") {
        Ok(Answer::Refused)
    } else {
        Err(format!("unexpected answer {text:?}"))
    }
}

/// 40 connections that send nothing, with room for 29 more under the limit (32 minus the
/// source and the two viewers): the 11 beyond it get 503 at once, the others are closed when
/// the header timeout passes; each of the 40 gets its answer and each is logged. Afterwards new
/// connections are served.
fn check_connection_limit(relay: &Relay) {
    const OPENED: usize = MAX_CONNECTIONS + 8;
    // The connections of the checks before are closed; the relay must have seen them go.
    let open = poll(Duration::from_secs(10), Duration::from_millis(20), || {
        let n = relay.metric_total("connections") as usize;
        (n == STEADY_CONNECTIONS).then_some(n)
    });
    assert!(
        open.is_some(),
        "the relay counts {} open connections, want the source and the viewers ({STEADY_CONNECTIONS})",
        relay.metric_total("connections")
    );
    let refused_before = logged(relay, OVER_LIMIT_LOG);
    let timed_out_before = logged(relay, HEADER_TIMEOUT_LOG);
    let held: Vec<TcpStream> = (0..OPENED)
        .map(|_| connect(relay.data, T).unwrap())
        .collect();
    let deadline = Instant::now() + Duration::from_secs(HEADER_TIMEOUT_S + 20);
    let answers: Vec<Result<Answer, String>> =
        held.into_iter().map(|s| answer_of(s, deadline)).collect();
    let unanswered: Vec<String> = answers
        .iter()
        .enumerate()
        .filter_map(|(i, a)| a.as_ref().err().map(|e| format!("connection {i}: {e}")))
        .collect();
    assert!(
        unanswered.is_empty(),
        "connections without their answer:\n{}",
        unanswered.join("\n")
    );
    let refused = answers
        .iter()
        .filter(|a| a.as_ref() == Ok(&Answer::Refused))
        .count();
    let room = MAX_CONNECTIONS - STEADY_CONNECTIONS;
    assert_eq!(
        refused,
        OPENED - room,
        "503s among {OPENED} connections with room for {room}"
    );
    assert_logged(
        relay,
        OVER_LIMIT_LOG,
        refused_before,
        refused,
        "refused connections",
    );
    assert_logged(
        relay,
        HEADER_TIMEOUT_LOG,
        timed_out_before,
        room,
        "connections closed by the header timeout",
    );
    // Every one of them is gone now: new connections are served.
    answered_and_logged(
        relay,
        b"GET /live/nosuch HTTP/1.1\r\n\r\n",
        404,
        &["viewer refused", "(404)"],
    );
}

/// The connections of the flowing stream: its source and its two viewers.
const STEADY_CONNECTIONS: usize = 3;

#[test]
fn bad_inputs_get_clear_answers_while_another_stream_flows() {
    let relay = Relay::start_with(RelayOptions::args(&[
        "--header-timeout",
        &HEADER_TIMEOUT_S.to_string(),
        "--max-connections",
        &MAX_CONNECTIONS.to_string(),
    ]));
    let source = GeneratedSource::start(&relay, "steady", 2_000_000, 0);
    relay.wait_live("steady", Duration::from_secs(20)).unwrap();
    let viewers = CheckedViewers::open(relay.data, Kind::Plain, "steady", 2, T);
    let (viewers_before, source_before) = (viewers.payload_bytes(), source.bytes());

    check_bad_requests(&relay);
    check_slowloris(&relay);
    check_connection_limit(&relay);

    let (viewers_after, source_after) = (viewers.payload_bytes(), source.bytes());
    let report = source.stop().unwrap();
    let caught_up = viewers.wait_until_all_have(report.next_seq - 1, Duration::from_secs(30));
    let reports = viewers.stop();
    assert_every_byte_right(&reports);
    caught_up.unwrap();
    let ratios = delivered_ratios(
        &viewers_before,
        &viewers_after,
        source_after - source_before,
    );
    eprintln!("per-viewer share of the source's bytes meanwhile: {ratios:.3?}");
    assert_every_ratio_at_least(&ratios, 0.8, "the steady stream");
}
