//! vanbench against a tiny in-test relay: one tokio task per connection, one broadcast channel
//! per stream. It takes a PUT (chunked or close-delimited, answering `Expect: 100-continue`) and
//! serves `GET /live/S` (raw bytes) and `GET /van/S` (each source read as one VAN data frame,
//! Bearer token required). Small on purpose: it exists to test the load generator, not to relay.

use bytes::Bytes;
use dataplane::frame::{FrameHeader, FrameKind, encode_frame};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;
use vanbench::fanout::{FanoutConfig, run_fanout};
use vanbench::http::HttpUrl;
use vanbench::source::{Framing, Method, SourceConfig, SourceProgress, run_source};
use vanbench::summary::Summary;
use vanbench::viewers::{ClientKind, ViewerMode, ViewersConfig};

const TOKEN: &str = "test-token";
/// Each piece: its sequence number, when it was read from the source (wall µs), its bytes.
type Piece = (u64, u64, Bytes);
type Streams = Arc<Mutex<HashMap<String, broadcast::Sender<Piece>>>>;

/// Starts the relay on its own thread; returns its address. It lives as long as the test binary.
fn start_relay() -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            let streams: Streams = Arc::default();
            loop {
                let (sock, _) = listener.accept().await.unwrap();
                tokio::spawn(serve(sock, streams.clone()));
            }
        });
    });
    rx.recv().unwrap()
}

async fn serve(mut sock: TcpStream, streams: Streams) {
    let mut buf = Vec::new();
    let mut piece = [0u8; 4096];
    let (method, path, headers, head_len) = loop {
        let Ok(n) = sock.read(&mut piece).await else {
            return;
        };
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&piece[..n]);
        let mut hs = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut hs);
        if let Ok(httparse::Status::Complete(len)) = req.parse(&buf) {
            let headers: HashMap<String, String> = req
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_ascii_lowercase(),
                        String::from_utf8_lossy(h.value).into_owned(),
                    )
                })
                .collect();
            break (
                req.method.unwrap().to_string(),
                req.path.unwrap().to_string(),
                headers,
                len,
            );
        }
    };
    let body = buf.split_off(head_len);
    let stream = path.rsplit('/').next().unwrap_or("").to_string();
    match method.as_str() {
        "PUT" | "SOURCE" => {
            if headers.get("authorization").map(String::as_str)
                != Some(&vanbench::http::basic_auth("source", "pw"))
            {
                let _ = sock.write_all(b"HTTP/1.1 401 Unauthorized\r\n\r\n").await;
                return;
            }
            if method == "SOURCE" {
                // Icecast answers a SOURCE with a final status before the body.
                let _ = sock.write_all(b"HTTP/1.0 200 OK\r\n\r\n").await;
            } else if headers.contains_key("expect") {
                let _ = sock.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await;
            }
            let tx = broadcast::channel(4096).0;
            streams.lock().unwrap().insert(stream, tx.clone());
            let chunked = headers
                .get("transfer-encoding")
                .is_some_and(|v| v.contains("chunked"));
            ingest(sock, body, chunked, tx).await;
        }
        "GET" => {
            let van = path.starts_with("/van/");
            if van && headers.get("authorization") != Some(&format!("Bearer {TOKEN}")) {
                let _ = sock.write_all(b"HTTP/1.1 401 Unauthorized\r\n\r\n").await;
                return;
            }
            let Some(mut rx) = streams.lock().unwrap().get(&stream).map(|t| t.subscribe()) else {
                let _ = sock.write_all(b"HTTP/1.1 404 Not Found\r\n\r\n").await;
                return;
            };
            let _ = sock.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await;
            loop {
                let (seq, read_us, data) = match rx.recv().await {
                    Ok(x) => x,
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(_) => {
                        if van {
                            let end = encode_frame(FrameKind::End, 0, 0, b"done");
                            let _ = sock.write_all(&end).await;
                        }
                        return;
                    }
                };
                let r = if van {
                    let h = FrameHeader::data(seq, read_us, data.len() as u32, 0).encode();
                    match sock.write_all(&h).await {
                        Ok(()) => sock.write_all(&data).await,
                        Err(e) => Err(e),
                    }
                } else {
                    sock.write_all(&data).await
                };
                if r.is_err() {
                    return;
                }
            }
        }
        _ => {
            let _ = sock.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
        }
    }
}

/// Reads the source's body and publishes each read (dechunked) as one piece.
async fn ingest(
    mut sock: TcpStream,
    mut pending: Vec<u8>,
    chunked: bool,
    tx: broadcast::Sender<Piece>,
) {
    let mut seq = 0u64;
    let mut piece = vec![0u8; 64 * 1024];
    // Chunked state: bytes left in the current chunk's data, then its CRLF.
    let mut left = 0usize;
    let mut crlf = 0usize;
    loop {
        let mut out = Vec::new();
        if !chunked {
            out = std::mem::take(&mut pending);
        } else {
            let mut at = 0;
            loop {
                if crlf > 0 {
                    let k = crlf.min(pending.len() - at);
                    at += k;
                    crlf -= k;
                    if crlf > 0 {
                        break;
                    }
                } else if left > 0 {
                    let k = left.min(pending.len() - at);
                    out.extend_from_slice(&pending[at..at + k]);
                    at += k;
                    left -= k;
                    if left > 0 {
                        break;
                    }
                    crlf = 2;
                } else {
                    let Some(nl) = pending[at..].iter().position(|&b| b == b'\n') else {
                        break;
                    };
                    let line = String::from_utf8_lossy(&pending[at..at + nl]);
                    let size = usize::from_str_radix(line.trim(), 16).unwrap();
                    at += nl + 1;
                    if size == 0 {
                        return;
                    }
                    left = size;
                }
            }
            pending.drain(..at);
        }
        if !out.is_empty() {
            let _ = tx.send((seq, vanbench::sys::now_us(), Bytes::from(out)));
            seq += 1;
        }
        match sock.read(&mut piece).await {
            Ok(0) | Err(_) => return,
            Ok(n) => pending.extend_from_slice(&piece[..n]),
        }
    }
}

/// The checks below hold however loaded the machine is: loss, duplication and corruption stay
/// zero, the summary's arithmetic is exact, and the amounts received are compared with what the
/// source actually sent (the source, the relay and the viewers all slow down together), with a
/// wide margin, never with a rate an idle machine would reach.
///
/// At least a quarter of the source's records per connected, reading viewer: viewers join after
/// the source's warm-up and leave before it stops.
fn assert_a_fair_share(s: &Summary, readers: usize, source_records: u64) {
    assert!(source_records > 0);
    assert!(
        s.records * 4 >= readers as u64 * source_records,
        "{} records over {readers} viewers of {source_records} sent",
        s.records
    );
}

fn viewers(n: usize, duration: Duration) -> ViewersConfig {
    ViewersConfig {
        client: ClientKind::Shards,
        url: HttpUrl::parse("http://127.0.0.1:1/").unwrap(),
        mode: ViewerMode::Plain,
        n,
        duration: Some(duration),
        connect_rate: None,
        stall: 0,
        threads: 2,
        huge_pages: false,
        connect_timeout: Duration::from_secs(10),
        bitrate: None,
        relay_pid: None,
        progress: None,
    }
}

fn fanout(addr: SocketAddr, stream: &str, framing: Framing, v: ViewersConfig) -> FanoutConfig {
    FanoutConfig {
        stream: stream.into(),
        source: SourceConfig {
            url: HttpUrl::parse(&format!("http://{addr}")).unwrap(),
            user: "source".into(),
            password: "pw".into(),
            method: Method::Put,
            framing,
            bitrate: Some(4_000_000),
            record_size: 1024,
            duration: None,
            start_seq: 0,
            raw: None,
            content_type: "application/octet-stream".into(),
            pace: Duration::from_millis(2),
        },
        van_token: None,
        viewers: v,
        warmup: Duration::from_millis(200),
    }
}

#[test]
fn plain_viewers_get_every_record_through_a_chunked_put() {
    let addr = start_relay();
    let s = run_fanout(fanout(
        addr,
        "plain",
        Framing::Chunked,
        viewers(20, Duration::from_secs(2)),
    ))
    .unwrap();
    assert_eq!(s.connected, 20);
    assert_eq!(
        (s.lost, s.duplicated, s.corrupt, s.out_of_order),
        (0, 0, 0, 0)
    );
    let src = s.source.clone().unwrap();
    assert_eq!(src.ended_by, "stopped");
    assert_a_fair_share(&s, 20, src.records);
    // The rate figures: expected is the nominal rate times the readers, delivered is what the
    // window saw, the ratio is the one over the other; nobody receives more than was sent.
    let expected = 4e6 * 20.0;
    assert_eq!(s.expected_bps, Some(expected));
    let delivered = s.window_bytes as f64 * 8.0 / s.window_s;
    assert!((s.delivered_bps - delivered).abs() <= 1e-9 * delivered.max(1.0));
    let ratio = s.delivered_ratio.unwrap();
    assert!(
        (ratio - s.delivered_bps / expected).abs() < 1e-12,
        "ratio {ratio}"
    );
    assert!(ratio > 0.0 && s.bytes <= 20 * src.bytes, "ratio {ratio}");
    assert!(s.latency_us.p50 > 0 && s.latency_us.max >= s.latency_us.p99);
    // Plain viewers cannot tell when the relay read the bytes.
    assert!(s.ingest_us.is_none());
}

#[test]
fn van_viewers_check_frames_and_records_through_a_close_delimited_put() {
    let addr = start_relay();
    let mut cfg = fanout(
        addr,
        "van",
        Framing::Close,
        viewers(10, Duration::from_secs(2)),
    );
    cfg.van_token = Some(TOKEN.into());
    let s = run_fanout(cfg).unwrap();
    assert_eq!(s.connected, 10);
    assert_eq!(s.seq_gaps, 0);
    assert_eq!((s.lost, s.corrupt), (0, 0));
    let src = s.source.clone().unwrap();
    assert_a_fair_share(&s, 10, src.records);
    // A frame is one read of the tiny relay (at most 64 KiB), so at most 64 records end in it.
    assert!(
        s.frames * 64 >= s.records,
        "frames {} for {} records",
        s.frames,
        s.records
    );
    // The frames carry when the relay read their bytes: a record waits at least that long before
    // a viewer has it, so ingest is at most the latency, quantile for quantile.
    let ingest = s.ingest_us.clone().expect("VAN viewers measure ingest");
    assert!(ingest.p50 >= 1 && ingest.max >= ingest.p99, "{ingest:?}");
    assert!(
        ingest.p50 <= s.latency_us.p50 && ingest.max <= s.latency_us.max,
        "ingest {ingest:?} latency {:?}",
        s.latency_us
    );
}

#[test]
fn an_icecast_source_request_is_answered_and_streams() {
    let addr = start_relay();
    let mut cfg = fanout(
        addr,
        "icy",
        Framing::Close,
        viewers(4, Duration::from_secs(1)),
    );
    cfg.source.method = Method::Source;
    let s = run_fanout(cfg).unwrap();
    assert_eq!(s.connected, 4);
    assert_eq!((s.lost, s.corrupt), (0, 0));
    assert_a_fair_share(&s, 4, s.source.as_ref().unwrap().records);
}

#[test]
fn a_stalled_viewer_is_counted_and_others_are_checked() {
    let addr = start_relay();
    let mut v = viewers(6, Duration::from_secs(1));
    v.stall = 2;
    let s = run_fanout(fanout(addr, "stall", Framing::Chunked, v)).unwrap();
    assert_eq!((s.connected, s.stalled), (6, 2));
    assert_eq!((s.lost, s.corrupt), (0, 0));
    assert_a_fair_share(&s, 4, s.source.as_ref().unwrap().records);
}

#[test]
fn wrong_token_and_unknown_stream_are_failures_not_crashes() {
    let addr = start_relay();
    let mut cfg = fanout(
        addr,
        "tok",
        Framing::Chunked,
        viewers(3, Duration::from_millis(300)),
    );
    cfg.van_token = Some("wrong".into());
    let s = run_fanout(cfg).unwrap();
    assert_eq!((s.connected, s.failed), (0, 3));
    assert_eq!(s.failures.get("HTTP 401 Unauthorized"), Some(&3));
}

#[test]
fn a_refused_source_is_a_setup_error() {
    let addr = start_relay();
    let cfg = SourceConfig {
        url: HttpUrl::parse(&format!("http://{addr}/live/x")).unwrap(),
        user: "source".into(),
        password: "wrong".into(),
        method: Method::Put,
        framing: Framing::Chunked,
        bitrate: Some(1_000_000),
        record_size: 1024,
        duration: Some(Duration::from_secs(1)),
        start_seq: 0,
        raw: None,
        content_type: "application/octet-stream".into(),
        pace: Duration::from_millis(2),
    };
    let err = run_source(&cfg, &AtomicBool::new(false), &SourceProgress::default()).unwrap_err();
    assert!(err.to_string().contains("401"), "{err}");
}

/// Kills the child on drop, so a failing assertion never leaves a process behind.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_cli_prints_every_contract_field() {
    let addr = start_relay();
    let child = Command::new(env!("CARGO_BIN_EXE_vanbench"))
        .args([
            "fanout",
            "--relay",
            &format!("http://{addr}"),
            "--stream",
            "cli",
        ])
        .args([
            "-n",
            "5",
            "--bitrate",
            "2M",
            "--duration",
            "1s",
            "--password",
            "pw",
        ])
        .args(["--json", "-"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut guard = ChildGuard(child);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = guard.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "vanbench did not finish"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut out = String::new();
    std::io::Read::read_to_string(guard.0.stdout.as_mut().unwrap(), &mut out).unwrap();
    assert!(status.success());
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    for field in [
        "viewers",
        "connected",
        "connect_ms",
        "all_connected_ms",
        "bytes",
        "delivered_bps",
        "expected_bps",
        "delivered_ratio",
        "records",
        "lost",
        "duplicated",
        "out_of_order",
        "corrupt",
        "frames",
        "seq_gaps",
        "latency_us",
        "self_cpu_s",
        "relay_cpu_s",
        "relay_cpu_s_per_gb",
        "relay_rss_kib",
        "stalled",
    ] {
        assert!(v.get(field).is_some(), "missing {field}");
    }
    for q in ["p50", "p99", "max"] {
        assert!(v["connect_ms"].get(q).is_some());
    }
    for q in ["p50", "p99", "p999", "max"] {
        assert!(v["latency_us"].get(q).is_some());
    }
    assert_eq!(v["connected"], 5);
    assert_eq!(v["lost"], 0);
}

#[test]
fn raw_bytes_from_a_file_are_paced_and_pass_through_unchanged() {
    let addr = start_relay();
    // A file of records, sent as raw bytes: the viewers must find them intact.
    let mut data = Vec::new();
    for seq in 0..400u64 {
        vanbench::record::encode_record(seq, vanbench::sys::now_us(), 1024, &mut data);
    }
    let path = std::env::temp_dir().join(format!("vanbench-raw-{}.bin", std::process::id()));
    std::fs::write(&path, &data).unwrap();
    let cfg = SourceConfig {
        url: HttpUrl::parse(&format!("http://{addr}/live/raw")).unwrap(),
        user: "source".into(),
        password: "pw".into(),
        method: Method::Put,
        framing: Framing::Chunked,
        bitrate: Some(1_000_000),
        record_size: 1024,
        duration: Some(Duration::from_secs(20)),
        start_seq: 0,
        raw: Some(vanbench::source::RawInput::File(path.clone())),
        content_type: "application/octet-stream".into(),
        pace: Duration::from_millis(2),
    };
    let progress = Arc::new(SourceProgress::default());
    let stop = Arc::new(AtomicBool::new(false));
    let source = {
        let (progress, stop) = (progress.clone(), stop.clone());
        std::thread::spawn(move || run_source(&cfg, &stop, &progress))
    };
    while !progress.started.load(std::sync::atomic::Ordering::Relaxed) {
        assert!(!source.is_finished(), "the source stopped early");
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut v = viewers(3, Duration::from_millis(1500));
    v.url = HttpUrl::parse(&format!("http://{addr}/live/raw")).unwrap();
    let s = vanbench::viewers::run_viewers(v, None, &AtomicBool::new(false)).unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let report = source.join().unwrap().unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(s.connected, 3);
    assert_eq!((s.lost, s.corrupt, s.duplicated), (0, 0, 0));
    assert_a_fair_share(&s, 3, report.bytes / 1024);
    // Paced at 1 Mbit/s: 400 KiB takes over 3 s, so the source was still sending when stopped.
    assert_eq!(report.ended_by, "stopped");
    assert!(report.rate_bps < 1_500_000.0, "rate {}", report.rate_bps);
}

#[test]
fn viewers_join_at_the_connect_rate() {
    let addr = start_relay();
    let mut v = viewers(6, Duration::from_millis(300));
    v.connect_rate = Some(20.0); // the last of 6 starts 250 ms after the first
    let s = run_fanout(fanout(addr, "rate", Framing::Chunked, v)).unwrap();
    assert_eq!(s.connected, 6);
    assert!(
        s.all_connected_ms >= 250.0,
        "all connected after {} ms",
        s.all_connected_ms
    );
}

#[test]
fn crowd_viewers_check_every_record_plain_and_van_and_count_a_stall() {
    let addr = start_relay();
    let mut v = viewers(40, Duration::from_secs(2));
    v.client = ClientKind::Crowd;
    v.stall = 3;
    let s = run_fanout(fanout(addr, "crowd", Framing::Chunked, v.clone())).unwrap();
    assert_eq!(s.client, ClientKind::Crowd);
    // Like a client on the system allocator: no transparent huge pages for its buffers.
    assert!(!s.client_huge_pages);
    assert_eq!((s.connected, s.stalled, s.failed), (40, 3, 0));
    assert_eq!(
        (s.lost, s.duplicated, s.corrupt, s.out_of_order),
        (0, 0, 0, 0)
    );
    // 4 Mbit/s for 2 s is ~980 records per reading viewer; wide margins for a loaded machine.
    assert!(s.records > 37 * 300, "records {}", s.records);
    assert!(s.latency_us.p50 > 0 && s.latency_us.max >= s.latency_us.p99);

    let mut cfg = fanout(addr, "crowd-van", Framing::Close, v);
    cfg.viewers.stall = 0;
    cfg.van_token = Some(TOKEN.into());
    let s = run_fanout(cfg).unwrap();
    assert_eq!((s.connected, s.failed), (40, 0));
    assert!(s.frames > 40 * 50, "frames {}", s.frames);
    assert_eq!(s.seq_gaps, 0);
    assert_eq!((s.lost, s.corrupt), (0, 0));
}

#[test]
fn crowd_viewers_that_cannot_connect_are_failures() {
    // Nothing listens on port 1: every viewer fails fast and the run still summarises.
    let mut v = viewers(5, Duration::from_millis(200));
    v.client = ClientKind::Crowd;
    v.url = HttpUrl::parse("http://127.0.0.1:1/live/x").unwrap();
    let s = vanbench::viewers::run_viewers(v, None, &AtomicBool::new(false)).unwrap();
    assert_eq!((s.connected, s.failed), (0, 5));
    assert!(
        s.failures.keys().all(|k| k.starts_with("connect")),
        "{:?}",
        s.failures
    );
}
