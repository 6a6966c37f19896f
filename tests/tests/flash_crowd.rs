//! A flash crowd as the relay sees it (`join_rate`): hundreds of viewers joining a core within a
//! second put it in crowd mode, where small sends wait out their spacing (`--coalesce-ms`)
//! whatever their size (here on any host: `--crowd-host-busy 0`), and the mode ends once the
//! joins stop. Viewers already watching get
//! every byte through it; a handful of joins never starts it.

use std::io::{ErrorKind, Read};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use van_e2e::checked::{CheckedViewers, GeneratedSource, Kind, stop_and_check_every_byte};
use van_e2e::{Relay, RelayOptions, join_plain};

/// How long checked viewers get to receive the source's last record.
const T: Duration = Duration::from_secs(30);

/// Reads everything that arrives on `viewers` until `stop`, so that none of them fills up.
fn drain(viewers: Vec<TcpStream>, stop: Arc<AtomicBool>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut viewers = viewers;
        for v in &viewers {
            v.set_nonblocking(true).expect("non-blocking");
        }
        let mut buf = vec![0u8; 64 * 1024];
        while !stop.load(Ordering::Relaxed) {
            for v in &mut viewers {
                loop {
                    match v.read(&mut buf) {
                        Ok(n) if n > 0 => continue,
                        Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                        _ => break,
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    })
}

fn crowd_ticks(relay: &Relay) -> f64 {
    relay.metric_total("flash_crowd_ticks_total")
}

/// Bytes per send to plain viewers over the next `window`.
fn bytes_per_send(relay: &Relay, window: Duration) -> f64 {
    let sample = || {
        (
            relay.metric_total("bytes_out_total"),
            relay.metric_total("sends_plain_total"),
        )
    };
    let (bytes, sends) = sample();
    std::thread::sleep(window);
    let (bytes_after, sends_after) = sample();
    (bytes_after - bytes) / (sends_after - sends).max(1.0)
}

#[test]
fn a_crowd_of_joins_holds_small_sends_until_it_is_over_and_loses_nothing() {
    // One fan-out core, so that every join counts on it; sends go at once from 2 KiB, so that
    // holding them for their spacing (500 viewers at 25,000 sends/s: 20 ms, 5 KB of a 2 Mbit/s
    // stream) shows in the bytes per send; a crowd holds them whatever the host's CPUs do (by
    // default only on a busy host, which this test cannot count on either way).
    let relay = Relay::start_with(RelayOptions::args(&[
        "--cores",
        "1",
        "--coalesce-bytes",
        "2048",
        "--crowd-host-busy",
        "0",
    ]));
    let source = GeneratedSource::start(&relay, "crowd", 2_000_000, 0);
    relay.wait_live("crowd", Duration::from_secs(20)).unwrap();
    let watching = CheckedViewers::open(relay.data, Kind::Plain, "crowd", 2, T);
    let van = CheckedViewers::open(relay.data, Kind::Van, "crowd", 1, T);
    let stop = Arc::new(AtomicBool::new(false));

    // 100 joins: ordinary, even all at once.
    let few = drain(join_plain(&relay, "crowd", 100), stop.clone());
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(crowd_ticks(&relay), 0.0, "100 joins are no crowd");

    // 400 more within a second: a crowd (at least 256 joins, a quarter of the audience).
    let started = Instant::now();
    let crowd = join_plain(&relay, "crowd", 400);
    assert!(
        started.elapsed() < Duration::from_millis(800),
        "the joins took {:?}: too slow to make a crowd here",
        started.elapsed()
    );
    let crowd = drain(crowd, stop.clone());
    let deadline = Instant::now() + Duration::from_secs(5);
    while crowd_ticks(&relay) == 0.0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(crowd_ticks(&relay) > 0.0, "400 joins at once are a crowd");
    let in_crowd = bytes_per_send(&relay, Duration::from_millis(400));

    // No more joins: the crowd is over within a second (the window) and a tick.
    std::thread::sleep(Duration::from_millis(1_100));
    let after = crowd_ticks(&relay);
    assert!(
        after <= 12.0,
        "{after} ticks in a crowd: it outlived its joins"
    );
    let normal = bytes_per_send(&relay, Duration::from_millis(400));
    assert_eq!(crowd_ticks(&relay), after, "over once the joins stopped");
    assert!(
        in_crowd > 1.5 * normal,
        "bytes per send: {in_crowd:.0} in the crowd, {normal:.0} after it"
    );

    stop.store(true, Ordering::Relaxed);
    crowd.join().unwrap();
    few.join().unwrap();
    stop_and_check_every_byte(source, vec![watching, van], T);
}
