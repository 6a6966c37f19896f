//! (a) ffmpeg publishes an H.264/AAC MPEG-TS test pattern, as it is (icecast:// and
//! -method PUT); ffprobe reads /live/ from the relay and finds both streams; a 3-second decode
//! of /live/ reports no error.

use std::process::{Command, Stdio};
use std::time::Duration;
use van_e2e::{Proc, Relay, require_tools, run_to_end};

/// ffmpeg encoding a live test pattern (bounded to 60 s) to `url` with extra output options.
fn publish(url: &str, output_options: &[&str]) -> Proc {
    Proc::spawn(
        "ffmpeg source",
        Command::new("ffmpeg")
            .args(["-nostdin", "-hide_banner", "-loglevel", "error", "-re"])
            .args(["-f", "lavfi", "-i", "testsrc=size=320x240:rate=25"])
            .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
            .args([
                "-t",
                "60",
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-g",
                "25",
            ])
            .args(["-pix_fmt", "yuv420p", "-c:a", "aac", "-f", "mpegts"])
            .args(output_options)
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::null()),
    )
    .expect("start ffmpeg")
}

fn probe_and_decode(relay: &Relay, stream: &str) {
    let url = relay.url(&format!("/live/{stream}"));
    let (ok, out, err) = run_to_end(
        "ffprobe",
        Command::new("ffprobe")
            .args([
                "-v",
                "error",
                "-show_entries",
                "stream=codec_type,codec_name",
            ])
            .args(["-of", "csv=p=0", "-rw_timeout", "15000000"])
            .arg(&url),
        Duration::from_secs(60),
    );
    assert!(ok, "ffprobe {url} failed: {err}");
    assert!(
        out.contains("h264,video"),
        "no H.264 video stream in {out:?}"
    );
    assert!(out.contains("aac,audio"), "no AAC audio stream in {out:?}");

    let (ok, _, err) = run_to_end(
        "ffmpeg decode",
        Command::new("ffmpeg")
            .args(["-nostdin", "-v", "error", "-rw_timeout", "15000000", "-i"])
            .arg(&url)
            .args(["-t", "3", "-f", "null", "-"]),
        Duration::from_secs(60),
    );
    assert!(
        ok && err.trim().is_empty(),
        "decoding {url} reported errors:\n{err}"
    );
}

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
