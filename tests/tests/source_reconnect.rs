//! (f) A source that drops and comes back within the grace period continues the same stream:
//! viewers stay connected and sequence numbers continue. Past the grace period the stream ends:
//! every viewer's response ends cleanly (a VAN viewer gets an end frame) and the name is free.

use std::process::Stdio;
use std::time::Duration;
use van_e2e::{
    RawSource, RawViewer, Relay, RelayOptions, SOURCE_PASSWORD, SOURCE_USER, VAN_TOKEN, VanViewer,
    consecutive, field, source_args, status_of, vanbench, vanbench_json,
};

const GRACE_S: u64 = 4;

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

#[test]
fn reconnect_within_grace_continues_and_past_grace_ends_the_stream() {
    let relay = Relay::start_with(RelayOptions::args(&["--grace", &GRACE_S.to_string()]));

    // First source run: 3 s of records, its summary says how many.
    let mut first = source_args(&relay, "re", "2M", "3s");
    first.extend(strings(&["--json", "-"]));
    let first = std::thread::spawn(move || vanbench_json(&first, Duration::from_secs(60)));
    relay.wait_live("re", Duration::from_secs(20)).unwrap();

    // Viewers that watch across the reconnect.
    let plain = strings(&[
        "viewers",
        "--url",
        &relay.url("/live/re"),
        "-n",
        "5",
        "--duration",
        "7s",
        "--json",
        "-",
    ]);
    let plain = std::thread::spawn(move || vanbench_json(&plain, Duration::from_secs(60)));
    let van = strings(&[
        "viewers",
        "--van-url",
        &relay.url("/van/re"),
        "--token",
        VAN_TOKEN,
        "-n",
        "5",
        "--duration",
        "7s",
        "--json",
        "-",
    ]);
    let van = std::thread::spawn(move || vanbench_json(&van, Duration::from_secs(60)));

    // The source drops; it comes back at once, continuing its record numbers.
    let records = field(&first.join().unwrap().unwrap(), "records");
    assert!(records > 0.0);
    let mut second = source_args(&relay, "re", "2M", "30s");
    second.extend(strings(&["--start-seq", &format!("{records}")]));
    let mut second = vanbench(&second, Stdio::null()).unwrap();

    let plain = plain.join().unwrap().unwrap();
    let van = van.join().unwrap().unwrap();
    eprintln!("plain viewers: {plain}\nVAN viewers: {van}");
    assert_eq!(field(&plain, "connected"), 5.0, "{plain}");
    for counter in ["lost", "corrupt", "duplicated", "out_of_order"] {
        assert_eq!(field(&plain, counter), 0.0, "plain {counter}: {plain}");
    }
    assert_eq!(field(&van, "connected"), 5.0, "{van}");
    for counter in ["seq_gaps", "duplicated", "out_of_order"] {
        assert_eq!(field(&van, counter), 0.0, "VAN {counter}: {van}");
    }
    assert!(field(&van, "frames") > 0.0, "{van}");

    // Now the source goes for good: past the grace period every response ends.
    let mut viewer = RawViewer::open(relay.data, "/live/re", "").unwrap();
    assert_eq!(viewer.head.status, 200);
    let mut van_viewer = VanViewer::open(relay.data, "re", VAN_TOKEN).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    second.terminate(Duration::from_secs(5));
    let limit = Duration::from_secs(GRACE_S + 15);
    viewer
        .read_to_end(limit)
        .expect("the plain viewer's response ends cleanly after the grace period");
    let outcome = van_viewer.run(limit).unwrap();
    assert!(outcome.end.is_some(), "no end frame: {outcome:?}");
    assert!(
        outcome.clean_eof,
        "VAN response did not end cleanly: {outcome:?}"
    );
    assert!(
        consecutive(&outcome.data_seqs),
        "VAN data frames not consecutive"
    );
    if let (Some(&last), Some(end)) = (outcome.data_seqs.last(), outcome.end) {
        assert_eq!(
            end,
            last + 1,
            "the end frame carries the next sequence number"
        );
    }

    // The name is free again.
    assert_eq!(
        status_of(
            relay.data,
            b"GET /live/re HTTP/1.1\r\n\r\n",
            Duration::from_secs(10)
        )
        .unwrap(),
        404
    );
    let again = RawSource::publish(relay.data, "re", Some((SOURCE_USER, SOURCE_PASSWORD)));
    assert!(
        again.is_ok(),
        "a new source could not take the name: {:?}",
        again.err()
    );
}
