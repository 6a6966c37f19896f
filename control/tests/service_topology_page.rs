//! The PNC's live topology page (`GET /` on the admin port) as a browser renders it: headless
//! Chromium loads the page while scripted proxies build figure 2(b), runs its script (which polls
//! `/api/topology`), and the rendered DOM must show the tree; a screenshot is left in the test's
//! output for people.

mod service_util;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use control::protocol::ProxyId;
use service_util::*;

fn chromium() -> Option<&'static str> {
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|b| {
            Command::new(b)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
}

/// Headless Chromium on `url`, after its script ran for a few (virtual) seconds.
fn headless(browser: &str, url: &str, extra: &[String]) -> std::process::Output {
    Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            "--window-size=1280,900",
            "--virtual-time-budget=4000",
        ])
        .args(extra)
        .arg(url)
        .output()
        .expect("run chromium")
}

#[test]
fn the_topology_page_draws_the_tree_in_a_browser() {
    let Some(browser) = chromium() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "chromium is missing; under CI every test must run (.ci/run installs it)"
        );
        eprintln!("skipped: chromium is not installed (apt-get install chromium)");
        return;
    };
    let pnc = Pnc::start("", "");
    // Figure 2(b): u1–u4 fill P31 and open P32. The proxies stay connected (and heartbeat)
    // through the final sleep while the browser looks.
    let mut script = figure_2_hellos();
    for _ in 1..=4 {
        script += "viewer demo sleep=300\n";
    }
    script += "sleep 12000\n";
    std::thread::scope(|scope| {
        let run = scope.spawn(|| pnc.script(&script, Duration::from_secs(60)));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let t = pnc.topology();
            let active: Vec<ProxyId> = t
                .streams
                .iter()
                .flat_map(|s| s.regions.iter())
                .flat_map(|r| r.tiers.iter())
                .flat_map(|tier| tier.active.iter().map(|a| a.proxy))
                .collect();
            if active.contains(&ProxyId(32)) {
                break;
            }
            assert!(Instant::now() < deadline, "P32 never activated: {active:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
        let url = format!("http://{}/", pnc.admin);
        let dom = headless(browser, &url, &["--dump-dom".to_string()]);
        let html = String::from_utf8_lossy(&dom.stdout);
        assert!(
            dom.status.success(),
            "chromium failed: {}",
            String::from_utf8_lossy(&dom.stderr)
        );
        // What the script drew from /api/topology, not the static page.
        for needed in [
            "<h2>demo</h2>",
            "source www.ccrl.com at P1",
            "tier 3",
            "<b>P31</b> Contraction",
            "<b>P32</b> Expansion accepting",
            "parents P21",
            "children P31 P32",
        ] {
            assert!(
                html.contains(needed),
                "the rendered page lacks {needed:?}:\n{html}"
            );
        }
        // The page's error line stays empty (its script text names the message, so look there).
        assert!(html.contains(r#"<div id="err"></div>"#), "{html}");

        let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("topology-page.png");
        let _ = std::fs::remove_file(&shot);
        let out = headless(browser, &url, &[format!("--screenshot={}", shot.display())]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let png = std::fs::read(&shot).expect("the screenshot was written");
        assert!(
            png.starts_with(b"\x89PNG") && png.len() > 10_000,
            "{} bytes",
            png.len()
        );
        println!("topology page screenshot: {}", shot.display());
        run.join().expect("script thread").assert_ok();
    });
}
