//! The kernel's floor for fan-out on this machine: what one sending thread pays per GB to
//! push W-byte chunks round-robin into N loopback TCP sockets, with reader threads draining
//! them (epoll, one 64 KiB buffer per thread, like the bench harness). No io_uring, no window,
//! no parsing: whatever the relay spends above this figure at the same chunk size is ours.
//!
//! ```sh
//! cargo run --release -p dataplane --example send_floor -- [N] [SECONDS] [RATE_MBIT] [write|sendfile]
//! ```
//!
//! N sockets (default 1000), SECONDS per chunk size (default 3), RATE_MBIT per socket (default
//! 4; 0 = as fast as the sockets take it). Paced mode sends one chunk per socket per
//! W×8/rate interval, so at W = 1 KiB and 4 Mbit/s every socket gets 1 KiB every 2 ms — the
//! relay's send size and cadence at 4 Mbit/s. Prints, per W: sender CPU-s/GB (its thread's
//! CPU time over the bytes it wrote; on loopback this includes the receive-side softirq work
//! the kernel runs on the sender's CPU), whole-process CPU-s/GB, and the rate reached.
//!
//! `sendfile` sends the chunk from a memfd instead of from memory: the socket's buffers then
//! reference the file's pages rather than a copy of them (on loopback too: only user-memory
//! zerocopy sends are copied on delivery), so what the sender pays per byte shows how much of
//! the `write` figure is the copy into the socket.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

const READERS: usize = 2;

fn cpu_s(clock: libc::clockid_t) -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid out-pointer for the duration of the call.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

/// Drains its sockets until `stop`: epoll, one shared buffer.
fn reader(socks: Vec<TcpStream>, stop: Arc<AtomicBool>) {
    // SAFETY: plain syscall; the fd is closed when this function returns.
    let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    assert!(ep >= 0, "epoll_create1 failed");
    for (i, s) in socks.iter().enumerate() {
        s.set_nonblocking(true).expect("nonblocking");
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: i as u64,
        };
        // SAFETY: ep and the socket fd are open; ev is valid for the call.
        let r = unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, s.as_raw_fd(), &mut ev) };
        assert_eq!(r, 0, "epoll_ctl failed");
    }
    let mut buf = vec![0u8; 65536];
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
    while !stop.load(Ordering::Relaxed) {
        // SAFETY: events has room for 256 entries.
        let n = unsafe { libc::epoll_wait(ep, events.as_mut_ptr(), 256, 100) };
        for e in events.iter().take(n.max(0) as usize) {
            let fd = socks[e.u64 as usize].as_raw_fd();
            loop {
                // SAFETY: buf is a valid writable buffer of its length.
                let r = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
                if r <= 0 {
                    break;
                }
            }
        }
    }
    // SAFETY: ep is ours.
    unsafe { libc::close(ep) };
}

struct Figures {
    gb: f64,
    sender_cpu: f64,
    process_cpu: f64,
    wall: f64,
}

/// How a chunk goes into a socket.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Write,
    Sendfile,
}

/// A memfd holding `chunk`, for `Mode::Sendfile`.
fn memfd_with(chunk: &[u8]) -> std::fs::File {
    use std::os::fd::FromRawFd;
    // SAFETY: the name is a valid C string; the returned fd is owned by the File below.
    let fd = unsafe { libc::memfd_create(c"send_floor".as_ptr(), libc::MFD_CLOEXEC) };
    assert!(fd >= 0, "memfd_create failed");
    // SAFETY: fd is a fresh, owned descriptor.
    let mut f = unsafe { std::fs::File::from_raw_fd(fd) };
    f.write_all(chunk).expect("memfd write");
    f
}

fn send_chunk(s: &mut TcpStream, mode: Mode, chunk: &[u8], file: Option<&std::fs::File>) {
    match (mode, file) {
        (Mode::Sendfile, Some(f)) => {
            let mut off: libc::off_t = 0;
            while (off as usize) < chunk.len() {
                let left = chunk.len() - off as usize;
                // SAFETY: both fds are open; off is a valid in/out offset.
                let r = unsafe { libc::sendfile(s.as_raw_fd(), f.as_raw_fd(), &mut off, left) };
                assert!(
                    r > 0,
                    "sendfile failed: {}",
                    std::io::Error::last_os_error()
                );
            }
        }
        _ => s.write_all(chunk).expect("write"),
    }
}

fn run(n: usize, w: usize, secs: f64, rate_mbit: f64, mode: Mode) -> Figures {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let mut senders = Vec::with_capacity(n);
    let mut sides: Vec<Vec<TcpStream>> = (0..READERS).map(|_| Vec::new()).collect();
    for i in 0..n {
        let s = TcpStream::connect(addr).expect("connect");
        let (r, _) = listener.accept().expect("accept");
        s.set_nodelay(true).expect("nodelay");
        senders.push(s);
        sides[i % READERS].push(r);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = sides
        .into_iter()
        .map(|socks| {
            let stop = stop.clone();
            thread::spawn(move || reader(socks, stop))
        })
        .collect();
    let chunk = vec![0x47u8; w];
    let file = (mode == Mode::Sendfile).then(|| memfd_with(&chunk));
    // One pass (a chunk to every socket) per interval when paced.
    let interval =
        (rate_mbit > 0.0).then(|| Duration::from_secs_f64(w as f64 * 8.0 / (rate_mbit * 1e6)));
    // Warm-up pass: connections settle, buffers grow.
    for s in &mut senders {
        send_chunk(s, mode, &chunk, file.as_ref());
    }
    thread::sleep(Duration::from_millis(200));
    let t0 = Instant::now();
    let c0 = cpu_s(libc::CLOCK_THREAD_CPUTIME_ID);
    let p0 = cpu_s(libc::CLOCK_PROCESS_CPUTIME_ID);
    let mut bytes = 0u64;
    let mut next = Instant::now();
    while t0.elapsed().as_secs_f64() < secs {
        for s in &mut senders {
            send_chunk(s, mode, &chunk, file.as_ref());
        }
        bytes += (w * n) as u64;
        if let Some(iv) = interval {
            next += iv;
            let now = Instant::now();
            if next > now {
                thread::sleep(next - now);
            } else if now - next > Duration::from_millis(100) {
                // Cannot keep up: do not try to catch up a backlog.
                next = now;
            }
        }
    }
    let sender_cpu = cpu_s(libc::CLOCK_THREAD_CPUTIME_ID) - c0;
    let process_cpu = cpu_s(libc::CLOCK_PROCESS_CPUTIME_ID) - p0;
    let wall = t0.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    drop(senders);
    for r in readers {
        r.join().expect("reader");
    }
    Figures {
        gb: bytes as f64 / 1e9,
        sender_cpu,
        process_cpu,
        wall,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let secs: f64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(3.0);
    let rate: f64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(4.0);
    let mode = match args.get(3).map(String::as_str) {
        Some("sendfile") => Mode::Sendfile,
        _ => Mode::Write,
    };
    let mut load = String::new();
    if let Ok(l) = std::fs::read_to_string("/proc/loadavg") {
        load = l.split_whitespace().take(3).collect::<Vec<_>>().join(" ");
    }
    println!(
        "send_floor: {n} loopback sockets, {READERS} reader threads, {secs} s per size, {}, {} per socket; load {load}",
        if mode == Mode::Sendfile {
            "sendfile from a memfd"
        } else {
            "write from memory"
        },
        if rate > 0.0 {
            format!("{rate} Mbit/s")
        } else {
            "unlimited".to_owned()
        }
    );
    println!("| W | sender CPU-s/GB | process CPU-s/GB | Gbit/s | sends/s |");
    println!("|---|---|---|---|---|");
    for w in [1024usize, 4096, 16384, 65536] {
        let f = run(n, w, secs, rate, mode);
        let sends = f.gb * 1e9 / w as f64 / f.wall;
        println!(
            "| {} KiB | {:.3} | {:.3} | {:.2} | {:.0} |",
            w / 1024,
            f.sender_cpu / f.gb,
            f.process_cpu / f.gb,
            f.gb * 8.0 / f.wall,
            sends
        );
    }
}
