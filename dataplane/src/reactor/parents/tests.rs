//! The orders on real sockets: one reactor core in this process, fake parents that speak VAN
//! frames (each frame's payload a function of its sequence number, the same at every parent),
//! and a VAN viewer that checks what it gets.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use clap::Parser;

use super::*;
use crate::auth::VanTokens;
use crate::config::Args;
use crate::frame::{CONTENT_TYPE, FrameDecoder, encode_frame};
use crate::window::WindowConfig;

const TOKEN: &str = "tok";
/// A fake parent's frames come one every this long.
const FRAME_EVERY: Duration = Duration::from_millis(5);

/// The sequence number at the parents' live edge now: the same clock for every fake parent.
fn live_edge() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    1000 + (epoch.elapsed().as_micros() / FRAME_EVERY.as_micros()) as u64
}

fn payload(seq: u64) -> Vec<u8> {
    vec![(seq % 251) as u8; 100 + (seq % 7) as usize]
}

/// A parent relay that serves `GET /van/...` from `from` (or its live edge), one frame per
/// [`FRAME_EVERY`], to any number of children.
struct FakeParent {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<String>>>,
    open: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl FakeParent {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let parent = Self {
            addr: listener.local_addr().unwrap(),
            requests: Arc::default(),
            open: Arc::default(),
            stop: Arc::default(),
        };
        let (requests, open, stop) = (
            parent.requests.clone(),
            parent.open.clone(),
            parent.stop.clone(),
        );
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let (requests, open, stop) = (requests.clone(), open.clone(), stop.clone());
                        std::thread::spawn(move || serve(conn, &requests, &open, &stop));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        parent
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for FakeParent {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn read_head(conn: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if conn.read(&mut byte).unwrap_or(0) == 0 {
            break;
        }
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

fn serve(
    mut conn: TcpStream,
    requests: &Mutex<Vec<String>>,
    open: &AtomicUsize,
    stop: &AtomicBool,
) {
    let head = read_head(&mut conn);
    requests.lock().unwrap().push(head.clone());
    let from = head
        .split_once("from=")
        .and_then(|(_, rest)| rest.split(' ').next())
        .and_then(|n| n.parse::<u64>().ok());
    let answer = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: {CONTENT_TYPE}\r\n{}: application/octet-stream\r\n\r\n",
        crate::frame::PAYLOAD_TYPE_HEADER
    );
    if conn.write_all(answer.as_bytes()).is_err() {
        return;
    }
    open.fetch_add(1, Ordering::SeqCst);
    let mut seq = from.unwrap_or_else(live_edge);
    while !stop.load(Ordering::Relaxed) {
        let mut out = Vec::new();
        while seq < live_edge() {
            out.extend(encode_frame(FrameKind::Data, seq, seq, &payload(seq)));
            seq += 1;
        }
        if conn.write_all(&out).is_err() {
            break;
        }
        std::thread::sleep(FRAME_EVERY);
    }
    open.fetch_sub(1, Ordering::SeqCst);
}

/// One reactor core with its own listener, run on a thread until dropped.
struct OneCore {
    shared: &'static Shared,
    data: SocketAddr,
    thread: Option<std::thread::JoinHandle<()>>,
    _listener: Socket,
}

impl OneCore {
    fn start() -> Self {
        let cfg = Config::load(
            // One core that both pulls and serves, as a relay with --cores 1 and no ingest
            // thread of its own.
            Args::parse_from([
                "dataplane",
                "--proxy-id",
                "9",
                "--grace",
                "2",
                "--ingest-thread",
                "shared",
            ]),
            1,
        )
        .unwrap();
        let pool = crate::pool::BlockPool::new(65536, 64).unwrap();
        let window = WindowConfig {
            max_blocks: 8,
            ..WindowConfig::default()
        };
        let shared: &'static Shared = Box::leak(Box::new(Shared::new(
            cfg,
            pool,
            Registry::new(window, 1, 65536),
            1000,
            None,
            Some(VanTokens::parse(TOKEN).unwrap()),
        )));
        let listener = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).unwrap();
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        listener.bind(&any.into()).unwrap();
        listener.listen(64).unwrap();
        let data = listener.local_addr().unwrap().as_socket().unwrap();
        let fd = listener.as_raw_fd();
        let thread = std::thread::spawn(move || {
            Core::new(0, shared, fd, None)
                .unwrap_or_else(|e| panic!("no io_uring for the test core: {e:?}"))
                .run()
        });
        Self {
            shared,
            data,
            thread: Some(thread),
            _listener: listener,
        }
    }

    fn wait_for_stream(&self, name: &str) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.shared.streams.lookup(name).is_none() {
            assert!(Instant::now() < deadline, "stream {name} never came");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn metric(&self, f: impl Fn(&CoreMetrics) -> &std::sync::atomic::AtomicU64) -> u64 {
        f(&self.shared.metrics[0]).load(Ordering::Relaxed)
    }
}

impl Drop for OneCore {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A VAN viewer of the core: every frame it gets, until the connection ends.
fn van_viewer(
    addr: SocketAddr,
    stream: &str,
) -> std::thread::JoinHandle<Vec<(FrameKind, u64, Vec<u8>)>> {
    let mut conn = TcpStream::connect(addr).unwrap();
    let req = format!("GET /van/{stream} HTTP/1.1\r\nAuthorization: Bearer {TOKEN}\r\n\r\n");
    conn.write_all(req.as_bytes()).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    std::thread::spawn(move || {
        let head = read_head(&mut conn);
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        let mut dec = FrameDecoder::new();
        let mut frames = Vec::new();
        let mut buf = [0u8; 65536];
        loop {
            let n = conn.read(&mut buf).unwrap_or(0);
            if n == 0 {
                return frames;
            }
            dec.push(&buf[..n]);
            while let Some((h, p)) = dec.next_frame().unwrap() {
                frames.push((h.kind, h.seq, p.to_vec()));
            }
        }
    })
}

/// The data frames are consecutive, each once, each with its parent's bytes; returns the last.
fn assert_whole(frames: &[(FrameKind, u64, Vec<u8>)]) -> u64 {
    let data: Vec<_> = frames.iter().filter(|f| f.0 == FrameKind::Data).collect();
    assert!(data.len() > 20, "only {} data frames", data.len());
    for w in data.windows(2) {
        assert_eq!(w[1].1, w[0].1 + 1, "a gap or a repeat after {}", w[0].1);
    }
    for (_, seq, p) in &data {
        assert_eq!(p, &payload(*seq), "frame {seq}'s bytes");
    }
    data.last().unwrap().1
}

fn parent(id: u32, p: &FakeParent) -> ParentAddr {
    ParentAddr { id, addr: p.addr }
}

#[test]
fn switch_parents_is_make_before_break_and_deactivate_ends_the_stream() {
    let (p1, p2) = (FakeParent::start(), FakeParent::start());
    let core = OneCore::start();
    core.shared.send_order(Order::Pull {
        stream: "s".into(),
        parents: vec![parent(1, &p1)],
    });
    core.wait_for_stream("s");
    let viewer = van_viewer(core.data, "s");
    std::thread::sleep(Duration::from_millis(300));
    let asked = &p1.requests()[0];
    assert!(asked.starts_with("GET /van/s HTTP/1.1\r\n"), "{asked}");
    assert!(asked.contains("Authorization: Bearer tok\r\n"), "{asked}");
    assert!(asked.contains("X-Van-Proxy: 9\r\n"), "{asked}");

    core.shared.send_order(Order::SwitchParents {
        stream: "s".into(),
        parents: vec![parent(2, &p2)],
    });
    let deadline = Instant::now() + Duration::from_secs(3);
    while p1.open.load(Ordering::SeqCst) > 0 {
        assert!(
            Instant::now() < deadline,
            "the old parent was never dropped"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(p2.open.load(Ordering::SeqCst), 1, "the new parent delivers");
    let asked = &p2.requests()[0];
    assert!(
        asked.starts_with("GET /van/s?from="),
        "resumes from the next: {asked}"
    );
    std::thread::sleep(Duration::from_millis(300));

    core.shared
        .send_order(Order::Deactivate { stream: "s".into() });
    let frames = viewer.join().unwrap();
    let last = assert_whole(&frames);
    let end = frames.last().unwrap();
    assert_eq!(
        (end.0, end.1),
        (FrameKind::End, last + 1),
        "ended after its last frame"
    );
    assert!(core.shared.streams.lookup("s").is_none());
    assert_eq!(
        core.metric(|m| &m.parents_lost),
        0,
        "a switch loses no parent"
    );
    assert_eq!(core.metric(|m| &m.parent_jumps), 0);
}

#[test]
fn redirected_van_children_get_where_and_from_which_sequence() {
    let p1 = FakeParent::start();
    let core = OneCore::start();
    core.shared.send_order(Order::Pull {
        stream: "r".into(),
        parents: vec![parent(1, &p1)],
    });
    core.wait_for_stream("r");
    let viewer = van_viewer(core.data, "r");
    std::thread::sleep(Duration::from_millis(300));
    let to: SocketAddr = "10.1.2.3:8080".parse().unwrap();
    core.shared.send_order(Order::RedirectChildren {
        stream: "r".into(),
        to,
    });
    let frames = viewer.join().unwrap();
    let last = assert_whole(&frames);
    let (kind, seq, where_to) = frames.last().unwrap();
    assert_eq!((*kind, *seq), (FrameKind::Redirect, last + 1));
    assert_eq!(where_to.as_slice(), b"10.1.2.3:8080");
    // The stream itself goes on: a new viewer is served.
    assert!(core.shared.streams.lookup("r").is_some());
}

#[test]
fn stop_pulling_puts_the_stream_in_grace_and_a_bad_name_is_never_asked_for() {
    let p1 = FakeParent::start();
    let core = OneCore::start();
    core.shared.send_order(Order::Pull {
        stream: "bad name\r\nX: y".into(),
        parents: vec![parent(1, &p1)],
    });
    core.shared.send_order(Order::Pull {
        stream: "g".into(),
        parents: vec![parent(1, &p1)],
    });
    core.wait_for_stream("g");
    core.shared
        .send_order(Order::StopPulling { stream: "g".into() });
    let deadline = Instant::now() + Duration::from_secs(3);
    while p1.open.load(Ordering::SeqCst) > 0 {
        assert!(Instant::now() < deadline, "the parent was never dropped");
        std::thread::sleep(Duration::from_millis(10));
    }
    let s = core.shared.streams.lookup("g").unwrap();
    assert_eq!(s.state(), StreamState::Grace);
    assert_eq!(p1.requests().len(), 1, "only g was asked for");
    assert_eq!(core.metric(|m| &m.parents_lost), 0);
    // Ordered again within the grace: the same stream goes on from where it stopped.
    let next = s.window.next_seq();
    core.shared.send_order(Order::Pull {
        stream: "g".into(),
        parents: vec![parent(1, &p1)],
    });
    let deadline = Instant::now() + Duration::from_secs(3);
    while s.state() != StreamState::Live {
        assert!(Instant::now() < deadline, "the stream was not continued");
        std::thread::sleep(Duration::from_millis(10));
    }
    let asked = p1.requests()[1].clone();
    assert!(
        asked.starts_with(&format!("GET /van/g?from={next} ")),
        "{asked}"
    );
    assert_eq!(core.metric(|m| &m.parent_jumps), 0);
}

#[test]
fn fifty_consecutive_switches_lose_and_repeat_nothing() {
    let parents = [FakeParent::start(), FakeParent::start()];
    let core = OneCore::start();
    core.shared.send_order(Order::Pull {
        stream: "m".into(),
        parents: vec![parent(0, &parents[0])],
    });
    core.wait_for_stream("m");
    let viewer = van_viewer(core.data, "m");
    for i in 1..=50 {
        let (new, old) = (&parents[i % 2], &parents[(i + 1) % 2]);
        core.shared.send_order(Order::SwitchParents {
            stream: "m".into(),
            parents: vec![parent((i % 2) as u32, new)],
        });
        let deadline = Instant::now() + Duration::from_secs(3);
        while old.open.load(Ordering::SeqCst) > 0 || new.open.load(Ordering::SeqCst) != 1 {
            assert!(Instant::now() < deadline, "switch {i} did not complete");
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    core.shared
        .send_order(Order::Deactivate { stream: "m".into() });
    let frames = viewer.join().unwrap();
    let last = assert_whole(&frames);
    assert_eq!(
        frames.last().map(|f| (f.0, f.1)),
        Some((FrameKind::End, last + 1))
    );
    assert_eq!(core.metric(|m| &m.parents_lost), 0);
    assert_eq!(core.metric(|m| &m.parent_jumps), 0);
    let asked: usize = parents.iter().map(|p| p.requests().len()).sum();
    assert_eq!(asked, 51, "one connection per switch");
}

/// A broken parent: every connection gets `answer` (after the request head), then is closed.
/// Returns its address and how many connections it took.
fn broken_parent(answer: Vec<u8>) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let taken = Arc::new(AtomicUsize::new(0));
    let count = taken.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            count.fetch_add(1, Ordering::SeqCst);
            read_head(&mut conn);
            let _ = conn.write_all(&answer);
        }
    });
    (addr, taken)
}

#[test]
fn broken_parents_are_retried_with_back_off_and_break_nothing() {
    let ok_head = format!("HTTP/1.1 200 OK\r\nContent-Type: {CONTENT_TYPE}\r\n\r\n");
    let mut huge = ok_head.clone().into_bytes();
    huge.extend(crate::frame::FrameHeader::data(1, 0, 1 << 20, 0).encode());
    let mut garbage = ok_head.into_bytes();
    garbage.extend([0xffu8; 64]);
    let answers = [
        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec(),
        b"SSH-2.0-OpenSSH\r\n\r\n".to_vec(),
        garbage,
        huge,
    ];
    let core = OneCore::start();
    let mut counts = Vec::new();
    for (i, answer) in answers.into_iter().enumerate() {
        let (addr, taken) = broken_parent(answer);
        counts.push(taken);
        core.shared.send_order(Order::Pull {
            stream: format!("broken{i}"),
            parents: vec![ParentAddr { id: 1, addr }],
        });
    }
    std::thread::sleep(Duration::from_millis(1600));
    for (i, taken) in counts.iter().enumerate() {
        // Asked at 0, then after 0.1, 0.2, 0.4 and 0.8 s (each on the 100 ms tick): 4 to 5
        // times in 1.6 s, never in a tight loop.
        let n = taken.load(Ordering::SeqCst);
        assert!(
            (3..=6).contains(&n),
            "broken parent {i} was asked {n} times"
        );
        assert!(core.shared.streams.lookup(&format!("broken{i}")).is_none());
    }
    // Each outage is reported once, however often the retries fail.
    assert_eq!(core.metric(|m| &m.parents_lost), 4);
    // The core still serves: a good parent's stream comes.
    let good = FakeParent::start();
    core.shared.send_order(Order::Pull {
        stream: "good".into(),
        parents: vec![parent(1, &good)],
    });
    core.wait_for_stream("good");
}
