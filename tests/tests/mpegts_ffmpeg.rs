//! The MPEG-TS scanner against real encoder output: ffmpeg makes a few seconds of H.264 (also
//! HEVC and MPEG-2) with AAC in MPEG-TS; the random-access points found must be ffprobe's
//! keyframes, whatever the read sizes, and the stream cut at any of them with the PSI in front
//! must decode without one error. Skipped only outside CI where ffmpeg or the encoder is not
//! installed (the skip is listed in the test run's summary); under CI that is a failure.

use dataplane::mpegts::{TS_PACKET, TsScanner, looks_like_ts};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use van_e2e::{TempDir, require_tools, skip};

/// Runs `cmd` to completion, killing it (by PID) if it outlives `limit`.
fn run(cmd: &mut Command, limit: Duration) -> Output {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let pid = child.id();
    let deadline = Instant::now() + limit;
    let (tx, rx) = std::sync::mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(out) => {
                waiter.join().expect("waiter");
                return out.expect("wait");
            }
            Err(_) if Instant::now() > deadline => {
                // SAFETY: kill(2) on the PID of a child we spawned and have not reaped yet
                // (the waiter thread reaps it only after it exits).
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
                panic!("{cmd:?} did not finish within {limit:?}");
            }
            Err(_) => {}
        }
    }
}

fn encode(dir: &Path, video: &[&str]) -> Vec<u8> {
    let out = dir.join("out.ts");
    let res = run(
        Command::new("ffmpeg")
            .args(["-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i"])
            .args([
                "testsrc=size=320x240:rate=25",
                "-f",
                "lavfi",
                "-i",
                "sine",
                "-t",
                "4",
            ])
            .args(video)
            .args(["-c:a", "aac", "-f", "mpegts"])
            .arg(&out),
        Duration::from_secs(120),
    );
    assert!(
        res.status.success(),
        "ffmpeg: {}",
        String::from_utf8_lossy(&res.stderr)
    );
    std::fs::read(&out).unwrap()
}

/// True if this ffmpeg has the encoder.
fn have_encoder(name: &str) -> bool {
    let res = run(
        Command::new("ffmpeg").args(["-hide_banner", "-encoders"]),
        Duration::from_secs(30),
    );
    String::from_utf8_lossy(&res.stdout)
        .lines()
        .any(|l| l.split_whitespace().nth(1) == Some(name))
}

/// Byte positions of the video keyframes, as ffprobe reports them.
fn ffprobe_keyframes(path: &Path) -> Vec<u64> {
    let res = run(
        Command::new("ffprobe")
            .args([
                "-v",
                "error",
                "-select_streams",
                "v",
                "-show_packets",
                "-show_entries",
                "packet=pos,flags",
                "-of",
                "csv=p=0",
            ])
            .arg(path),
        Duration::from_secs(60),
    );
    assert!(
        res.status.success(),
        "ffprobe: {}",
        String::from_utf8_lossy(&res.stderr)
    );
    String::from_utf8(res.stdout)
        .unwrap()
        .lines()
        .filter_map(|line| {
            let mut fields = line.split(',');
            let pos = fields.next()?.parse().ok()?;
            fields.next()?.contains('K').then_some(pos)
        })
        .collect()
}

fn scan_in_pieces(ts: &[u8], mut seed: u64, max_piece: u64) -> (Vec<u64>, TsScanner) {
    let mut scanner = TsScanner::new();
    let mut raps = Vec::new();
    let mut at = 0;
    while at < ts.len() {
        // xorshift: reproducible piece sizes from 1 to max_piece.
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let n = (1 + seed % max_piece) as usize;
        let end = (at + n).min(ts.len());
        scanner.scan(at as u64, &ts[at..end], &mut raps);
        at = end;
    }
    (raps, scanner)
}

/// Encodes with `video` options, then checks the scanner against ffprobe and the decoder.
fn check_keyframes(test: &str, encoder: &str, video: &[&str]) {
    if !require_tools(test, &["ffmpeg", "ffprobe"]) {
        return;
    }
    if !have_encoder(encoder) {
        skip(test, &format!("this ffmpeg lacks the {encoder} encoder"));
        return;
    }
    let dir = TempDir::new("mpegts");
    let ts = encode(dir.path(), video);
    assert!(looks_like_ts(&ts));
    let keyframes = ffprobe_keyframes(&dir.path().join("out.ts"));
    assert!(
        keyframes.len() >= 4,
        "expected a keyframe a second: {keyframes:?}"
    );

    let mut scanner = TsScanner::new();
    let mut raps = Vec::new();
    scanner.scan(0, &ts, &mut raps);
    assert!(scanner.is_locked());
    assert_eq!(raps, keyframes, "RAPs found vs ffprobe's keyframes");
    assert!(raps.iter().all(|r| r % TS_PACKET as u64 == 0));

    for (seed, max_piece) in [(1, 7), (2, 188), (3, 1500), (4, 65536), (5, 189)] {
        let (pieces, scanner) = scan_in_pieces(&ts, seed, max_piece);
        assert_eq!(pieces, raps, "pieces of up to {max_piece} bytes");
        assert!(scanner.psi().is_some());
    }

    let psi = scanner.psi().expect("PAT and PMT seen").to_vec();
    assert_eq!(psi.len(), 2 * TS_PACKET);
    for &rap in &raps {
        let cut = dir.path().join(format!("cut-{rap}.ts"));
        let mut bytes = psi.clone();
        bytes.extend_from_slice(&ts[rap as usize..]);
        std::fs::write(&cut, &bytes).unwrap();
        let res = run(
            Command::new("ffmpeg")
                .args(["-nostdin", "-v", "error", "-i"])
                .arg(&cut)
                .args(["-f", "null", "-"]),
            Duration::from_secs(60),
        );
        let errors = String::from_utf8_lossy(&res.stderr);
        assert!(
            res.status.success() && errors.trim().is_empty(),
            "cut at {rap}: {errors}"
        );
    }
}

#[test]
fn h264_keyframes_of_real_ffmpeg_output() {
    check_keyframes(
        "h264_keyframes_of_real_ffmpeg_output",
        "libx264",
        &["-c:v", "libx264", "-g", "25"],
    );
}

#[test]
fn hevc_keyframes_of_real_ffmpeg_output() {
    check_keyframes(
        "hevc_keyframes_of_real_ffmpeg_output",
        "libx265",
        &[
            "-c:v",
            "libx265",
            "-g",
            "25",
            "-x265-params",
            "log-level=error",
        ],
    );
}

#[test]
fn mpeg2_keyframes_of_real_ffmpeg_output() {
    check_keyframes(
        "mpeg2_keyframes_of_real_ffmpeg_output",
        "mpeg2video",
        &["-c:v", "mpeg2video", "-g", "25"],
    );
}
