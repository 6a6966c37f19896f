//! (g) Start-up failures, caused for the relay process alone: a locked-memory limit too small
//! for the block pool (and no CAP_IPC_LOCK), and io_uring refused by seccomp, each end the relay
//! with exit code 2 and one line naming the cause. SIGTERM ends a running relay with exit 0 and
//! every viewer's response ends cleanly.

use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};
use van_e2e::{
    RawSource, RawViewer, Relay, RelayOptions, SOURCE_PASSWORD, SOURCE_USER, VAN_TOKEN, VanViewer,
    bin, require_tools,
};

#[test]
fn memlock_too_small_for_the_pool_exits_2_naming_rlimit_memlock() {
    if !require_tools(
        "memlock_too_small_for_the_pool_exits_2_naming_rlimit_memlock",
        &["prlimit", "setpriv"],
    ) {
        return;
    }
    // 64 KiB of locked memory and CAP_IPC_LOCK dropped from the bounding set, so that even
    // root cannot lock the pool.
    let failure = Relay::expect_startup_failure(RelayOptions {
        args: Vec::new(),
        wrapper: [
            "prlimit",
            "--memlock=65536:65536",
            "setpriv",
            "--bounding-set",
            "-ipc_lock",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
    });
    assert_eq!(
        failure.status.and_then(|s| s.code()),
        Some(2),
        "{failure:?}"
    );
    assert!(!failure.stdout.contains("listening"), "{failure:?}");
    let lines: Vec<&str> = failure
        .stderr
        .lines()
        .filter(|l| l.contains("RLIMIT_MEMLOCK"))
        .collect();
    assert_eq!(
        lines.len(),
        1,
        "one line naming RLIMIT_MEMLOCK: {failure:?}"
    );
    assert!(
        lines[0].contains("ulimit -l") || lines[0].contains("LimitMEMLOCK"),
        "the line says the fix: {}",
        lines[0]
    );
}

#[test]
fn io_uring_refused_exits_2_naming_io_uring() {
    let deny = bin("deny_io_uring");
    let failure = Relay::expect_startup_failure(RelayOptions {
        args: Vec::new(),
        wrapper: vec![deny.display().to_string()],
    });
    assert_eq!(
        failure.status.and_then(|s| s.code()),
        Some(2),
        "{failure:?}"
    );
    assert!(!failure.stdout.contains("listening"), "{failure:?}");
    let lines = failure
        .stderr
        .lines()
        .filter(|l| l.contains("io_uring"))
        .count();
    assert_eq!(lines, 1, "one line naming io_uring: {failure:?}");
}

#[test]
fn sigterm_ends_viewers_cleanly_and_exits_0() {
    let mut relay = Relay::start();
    let mut source = RawSource::publish(relay.data, "term", Some((SOURCE_USER, SOURCE_PASSWORD)))
        .expect("source accepted");
    // Feed the stream from a thread, bounded in time; it stops when the relay goes away.
    let feeder = std::thread::spawn(move || {
        let start = Instant::now();
        let block = [0x5au8; 1024];
        while start.elapsed() < Duration::from_secs(30) {
            if source.stream.write_all(&block).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    });
    relay.wait_live("term", Duration::from_secs(20)).unwrap();
    let mut viewer = RawViewer::open(relay.data, "/live/term", "").unwrap();
    assert_eq!(viewer.head.status, 200);
    let mut van_viewer = VanViewer::open(relay.data, "term", VAN_TOKEN).unwrap();
    std::thread::sleep(Duration::from_millis(500));

    relay.proc.signal(libc::SIGTERM);
    let status = relay.proc.wait_timeout(Duration::from_secs(15));
    let status = status.expect("the relay exits within 15 s of SIGTERM");
    assert_eq!(
        status.code(),
        Some(0),
        "exit status {status:?} (signal {:?})",
        status.signal()
    );

    let bytes = viewer
        .read_to_end(Duration::from_secs(10))
        .expect("the plain viewer's response ends with a clean close");
    assert!(
        !bytes.is_empty(),
        "the viewer got stream bytes before the end"
    );
    let outcome = van_viewer.run(Duration::from_secs(10)).unwrap();
    assert!(outcome.end.is_some() && outcome.clean_eof, "{outcome:?}");
    feeder.join().unwrap();
}
