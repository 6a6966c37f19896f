//! Configuration errors of the real `pnc`: the file, the line and what was expected.

mod service_util;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use service_util::*;

/// Run pnc with `args` to its end (at most 60 s): (success, stdout, stderr).
fn pnc(args: &[&str]) -> (bool, String, String) {
    let child = Command::new(PNC)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start pnc");
    let mut guard = ProcessGuard(child);
    let deadline = Instant::now() + Duration::from_secs(60);
    while guard.0.try_wait().expect("wait").is_none() {
        assert!(Instant::now() < deadline, "pnc {args:?} did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut out = String::new();
    let mut err = String::new();
    use std::io::Read;
    guard
        .0
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    guard
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let ok = guard.0.wait().unwrap().success();
    (ok, out, err)
}

#[test]
fn config_errors_name_file_line_and_expectation() {
    let dir = TempDir::new("config");
    let token = dir.write("token", TOKEN);
    let token_line = format!("token_file = {:?}\n", token.display().to_string());

    // A value of the wrong type, on line 4.
    let bad = dir.write(
        "bad.toml",
        &format!("{token_line}[coordinator]\ndelta_t_ms = 100\nalpha = \"high\"\n"),
    );
    let (ok, _, err) = pnc(&["--config", bad.to_str().unwrap()]);
    assert!(!ok);
    let want = format!("{}:4:", bad.display());
    assert!(err.contains(&want), "{err}");
    assert!(err.contains("f64") || err.contains("float"), "{err}");

    // An unknown key names what is allowed.
    let bad = dir.write(
        "unknown.toml",
        &format!("{token_line}[listen]\nadmn = \"127.0.0.1:1\"\n"),
    );
    let (ok, _, err) = pnc(&["--config", bad.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains(&format!("{}:3:1:", bad.display())), "{err}");
    assert!(err.contains("admin"), "{err}");

    // A TOML syntax error.
    let bad = dir.write("syntax.toml", "[listen\ncontrol = 1\n");
    let (ok, _, err) = pnc(&["--config", bad.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains(&format!("{}:1:", bad.display())), "{err}");

    // A value out of range names the key.
    let bad = dir.write(
        "range.toml",
        &format!("{token_line}[coordinator]\nbeta = 2.0\n"),
    );
    let (ok, _, err) = pnc(&["--config", bad.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("coordinator.beta"), "{err}");

    // No token at all.
    let empty = dir.write("empty.toml", "");
    let (ok, _, err) = pnc(&["--config", empty.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("no token"), "{err}");

    // A missing file is named.
    let (ok, _, err) = pnc(&["--config", "/nonexistent/pnc.toml"]);
    assert!(!ok);
    assert!(err.contains("/nonexistent/pnc.toml"), "{err}");
}

#[test]
fn example_config_is_valid() {
    let dir = TempDir::new("example");
    let token = dir.write("token", TOKEN);
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/pnc.example.toml");
    let (ok, out, err) = pnc(&[
        "--config",
        example,
        "--token-file",
        token.to_str().unwrap(),
        "--check",
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("delta_t_ms: 10000"), "{out}");
    assert!(out.contains("R1"), "{out}");
}
