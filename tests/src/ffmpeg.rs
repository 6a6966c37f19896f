//! ffmpeg as an outside source and ffprobe/ffmpeg as outside players, for the tests that check
//! what real players get from a relay.

use crate::{Proc, Relay, run_to_end};
use std::process::{Command, Stdio};
use std::time::Duration;

/// ffmpeg encoding a live test pattern (bounded to 60 s) to `url` with extra output options.
pub fn publish(url: &str, output_options: &[&str]) -> Proc {
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

/// ffprobe finds H.264 video and AAC audio in `/live/{stream}` of `relay`, and a 3-second
/// decode of it reports no error.
pub fn probe_and_decode(relay: &Relay, stream: &str) {
    probe_and_decode_url(&relay.url(&format!("/live/{stream}")));
}

/// [`probe_and_decode`] of any URL (ffmpeg follows a redirect, e.g. a PNC's `/resolve`).
pub fn probe_and_decode_url(url: &str) {
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
            .arg(url),
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
            .arg(url)
            .args(["-t", "3", "-f", "null", "-"]),
        Duration::from_secs(60),
    );
    assert!(
        ok && err.trim().is_empty(),
        "decoding {url} reported errors:\n{err}"
    );
}
