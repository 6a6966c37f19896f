//! (f) A source that drops and comes back within the grace period continues the same stream:
//! no viewer's response ends, and every viewer, plain or VAN, gets the records of both runs of
//! the source, past the first run's last one, without a gap or a damaged byte. Past the grace
//! period the stream ends: every viewer's response ends cleanly, not before the grace period is
//! over (a VAN viewer gets an end frame numbered after the last data frame), and the name is
//! free again.

use std::time::{Duration, Instant};
use van_e2e::checked::{
    CheckedViewers, Ending, GeneratedSource, Kind, ViewerReport, assert_every_byte_right,
};
use van_e2e::{
    RawSource, Relay, RelayOptions, SOURCE_PASSWORD, SOURCE_USER, VAN_TOKEN, VanViewer,
    consecutive, poll, status_of,
};

const GRACE: Duration = Duration::from_secs(4);
const BITRATE: u64 = 2_000_000;
/// Records the viewers must get from the second run: about 2 s at 2 Mbit/s.
const PAST_THE_FIRST_RUN: u64 = 500;

fn open_viewers(relay: &Relay, kind: Kind) -> CheckedViewers {
    CheckedViewers::open(relay.data, kind, "re", 5, Duration::from_secs(60))
}

/// Every viewer watched across the reconnect: it had records of the first run, and records of
/// the second up to `last` arrived whole, in order, with nothing missing in between.
fn assert_watched_across(reports: &[ViewerReport], last_of_first: u64, last: u64) {
    assert_every_byte_right(reports);
    for r in reports {
        let (first, newest) = (r.first_seq.unwrap(), r.last_seq.unwrap());
        assert!(
            first <= last_of_first,
            "viewer {} ({:?}): its first record {first} is after the first run's last {last_of_first}",
            r.index,
            r.kind
        );
        assert_eq!(
            newest, last,
            "viewer {} ({:?}): the records stop at {newest}, not at the source's last {last}",
            r.index, r.kind
        );
    }
}

#[test]
fn reconnect_within_grace_continues_and_past_grace_ends_the_stream() {
    let relay = Relay::start_with(RelayOptions::args(&[
        "--grace",
        &GRACE.as_secs().to_string(),
    ]));
    let first = GeneratedSource::start(&relay, "re", BITRATE, 0);
    relay.wait_live("re", Duration::from_secs(20)).unwrap();
    let plain = open_viewers(&relay, Kind::Plain);
    let van = open_viewers(&relay, Kind::Van);
    for viewers in [&plain, &van] {
        poll(Duration::from_secs(20), Duration::from_millis(20), || {
            viewers.newest_common_seq()
        })
        .expect("every viewer gets records of the first run");
    }

    // The source drops; once the relay has seen it go, it comes back continuing its numbers.
    let first = first.stop().unwrap();
    let last_of_first = first.next_seq - 1;
    let noticed = poll(Duration::from_secs(20), Duration::from_millis(20), || {
        match relay.stream_status("re") {
            Some(s) if s["in_grace"] == true => Some(()),
            Some(_) => None,
            None => Some(()), // ended at once: no grace at all, the viewers' checks say so
        }
    });
    assert!(noticed.is_some(), "the relay never saw the first source go");
    let second = GeneratedSource::start(&relay, "re", BITRATE, first.next_seq);
    let goal = last_of_first + PAST_THE_FIRST_RUN;
    let (plain_past, van_past) = (
        plain.wait_until_all_have(goal, Duration::from_secs(30)),
        van.wait_until_all_have(goal, Duration::from_secs(30)),
    );
    for (kind, viewers) in [("plain", &plain), ("VAN", &van)] {
        assert_eq!(
            viewers.ended(),
            0,
            "{kind} responses ended during the reconnect, within the grace period"
        );
    }
    plain_past.unwrap();
    van_past.unwrap();

    // Now the source goes for good: past the grace period every response ends.
    let mut van_viewer = VanViewer::open(relay.data, "re", VAN_TOKEN).unwrap();
    // Taken before the source closes its connection: no response may end sooner than the
    // grace period after this (give or take the relay's timer tick).
    let stopped = Instant::now();
    let second = second.stop().unwrap();
    let last = second.next_seq - 1;
    let limit = GRACE + Duration::from_secs(15);
    let (plain_ended, van_ended) = (
        plain.wait_until_all_ended(limit),
        van.wait_until_all_ended(limit),
    );
    let outcome = van_viewer.run(limit).unwrap();
    let (plain, van) = (plain.stop(), van.stop());
    assert_watched_across(&plain, last_of_first, last);
    assert_watched_across(&van, last_of_first, last);
    plain_ended.unwrap();
    van_ended.unwrap();
    for r in plain.iter().chain(&van) {
        let want = match r.kind {
            Kind::Plain => Ending::Eof,
            Kind::Van => Ending::EndFrame,
        };
        assert_eq!(r.ending, want, "viewer {} ({:?})", r.index, r.kind);
        let after = r.ended_at.expect("ended") - stopped;
        assert!(
            after + Duration::from_millis(500) >= GRACE,
            "viewer {} ({:?}) ended {after:?} after the source left, within the grace period",
            r.index,
            r.kind
        );
    }
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
