//! Sources other than ffmpeg and vanbench: Icecast's `SOURCE` method (HTTP/1.0, and the old
//! `ICE/1.0` request line of ices/butt) and `curl -T -` (a chunked PUT). Viewers get exactly the
//! bytes sent, from their join point on.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use van_e2e::{
    Proc, RawViewer, Relay, SOURCE_PASSWORD, SOURCE_USER, basic, connect, read_head, require_tools,
};

const LINE: usize = 16;

/// Line `n` of the test stream: fixed width, so a viewer can check order from any join point.
fn line(n: u64) -> String {
    format!("line {n:010}\n")
}

/// Writes numbered lines to `out` for `duration`, a few hundred per 10 ms.
fn feed(mut out: impl Write, duration: Duration) {
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < duration {
        let batch: String = (n..n + 200).map(line).collect();
        n += 200;
        if out.write_all(batch.as_bytes()).is_err() || out.flush().is_err() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Reads from a viewer for `duration` and checks the bytes are consecutive lines of the feed.
fn check_viewer(relay: &Relay, stream: &str, duration: Duration) {
    let mut viewer = RawViewer::open(relay.data, &format!("/live/{stream}"), "").unwrap();
    assert_eq!(viewer.head.status, 200, "{:?}", viewer.head);
    let mut bytes = std::mem::take(&mut viewer.head.body);
    viewer
        .stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let start = Instant::now();
    let mut chunk = [0u8; 16 * 1024];
    while start.elapsed() < duration && bytes.len() < 4 << 20 {
        match viewer.stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => bytes.extend_from_slice(&chunk[..n]),
            Err(_) => {}
        }
    }
    // Skip to the first whole line, then every line must follow the one before.
    let first = bytes
        .iter()
        .position(|&b| b == b'\n')
        .expect("some bytes arrived")
        + 1;
    let lines: Vec<&[u8]> = bytes[first..].chunks_exact(LINE).collect();
    assert!(lines.len() > 100, "only {} lines arrived", lines.len());
    let number = |l: &[u8]| -> u64 {
        let text = std::str::from_utf8(l).expect("UTF-8 line");
        assert!(
            text.starts_with("line ") && text.ends_with('\n'),
            "corrupt line {text:?}"
        );
        text[5..15].parse().expect("line number")
    };
    let first_number = number(lines[0]);
    for (expected, l) in (first_number..).zip(lines) {
        assert_eq!(number(l), expected, "lines out of order or lost");
    }
}

fn source_head(request_line: &str) -> String {
    format!(
        "{request_line}\r\nAuthorization: {}\r\nContent-Type: text/plain\r\nIce-Public: 0\r\n\r\n",
        basic(SOURCE_USER, SOURCE_PASSWORD)
    )
}

fn publish_with_source_method(relay: &Relay, request_line: &str) -> TcpStream {
    let mut stream = connect(relay.data, Duration::from_secs(10)).unwrap();
    stream
        .write_all(source_head(request_line).as_bytes())
        .unwrap();
    let answer = read_head(&mut stream).unwrap();
    assert_eq!(answer.status, 200, "SOURCE answered {answer:?}");
    stream
}

#[test]
fn icecast_source_method_over_http_1_0_and_ice_1_0() {
    let relay = Relay::start();
    for (stream, request_line) in [
        ("src10", "SOURCE /live/src10 HTTP/1.0"),
        ("ice10", "SOURCE /live/ice10 ICE/1.0"),
    ] {
        let source = publish_with_source_method(&relay, request_line);
        let feeder = std::thread::spawn(move || feed(source, Duration::from_secs(4)));
        relay.wait_live(stream, Duration::from_secs(10)).unwrap();
        check_viewer(&relay, stream, Duration::from_secs(2));
        feeder.join().unwrap();
    }
}

#[test]
fn curl_chunked_upload_from_stdin() {
    if !require_tools("curl_chunked_upload_from_stdin", &["curl"]) {
        return;
    }
    let relay = Relay::start();
    let mut curl = Proc::spawn(
        "curl",
        Command::new("curl")
            .args(["-sS", "--max-time", "30", "-T", "-", "-u"])
            .arg(format!("{SOURCE_USER}:{SOURCE_PASSWORD}"))
            .arg(relay.url("/live/curl"))
            .stdin(Stdio::piped())
            .stdout(Stdio::null()),
    )
    .unwrap();
    let stdin = curl.child_mut().stdin.take().expect("piped stdin");
    let feeder = std::thread::spawn(move || feed(stdin, Duration::from_secs(4)));
    relay.wait_live("curl", Duration::from_secs(10)).unwrap();
    check_viewer(&relay, "curl", Duration::from_secs(2));
    feeder.join().unwrap();
}
