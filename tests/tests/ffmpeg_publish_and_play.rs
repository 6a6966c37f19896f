//! (a) ffmpeg publishes an H.264/AAC MPEG-TS test pattern, as it is (icecast:// and
//! -method PUT); ffprobe reads /live/ from the relay and finds both streams; a 3-second decode
//! of /live/ reports no error.

use std::time::Duration;
use van_e2e::ffmpeg::{probe_and_decode, publish};
use van_e2e::{Relay, require_tools};

#[test]
fn ffmpeg_icecast_source_plays_without_decode_errors() {
    if !require_tools(
        "ffmpeg_icecast_source_plays_without_decode_errors",
        &["ffmpeg", "ffprobe"],
    ) {
        return;
    }
    let relay = Relay::start();
    // As ffmpeg sends it: PUT with Expect: 100-continue, Content-Type audio/mpeg, no framing.
    let _source = publish(&relay.source_url("icecast", "ice"), &[]);
    relay.wait_live("ice", Duration::from_secs(30)).unwrap();
    probe_and_decode(&relay, "ice");
}

#[test]
fn ffmpeg_put_source_plays_without_decode_errors() {
    if !require_tools(
        "ffmpeg_put_source_plays_without_decode_errors",
        &["ffmpeg", "ffprobe"],
    ) {
        return;
    }
    let relay = Relay::start();
    // -auth_type basic: send the URL's credentials up front (a chunked body cannot be replayed
    // after a 401 challenge).
    let _source = publish(
        &relay.source_url("http", "put"),
        &[
            "-method",
            "PUT",
            "-auth_type",
            "basic",
            "-content_type",
            "video/mp2t",
        ],
    );
    relay.wait_live("put", Duration::from_secs(30)).unwrap();
    probe_and_decode(&relay, "put");
}
