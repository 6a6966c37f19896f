//! `fanout`: one source and N viewers against a relay for a set time, in one process.

use crate::source::{SourceConfig, SourceProgress, run_source};
use crate::summary::Summary;
use crate::viewers::{ViewerMode, ViewersConfig, run_viewers};
use anyhow::{Context, bail};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct FanoutConfig {
    pub stream: String,
    /// The source's settings; its `url` is the relay's (`http://HOST:PORT`), whose path is
    /// replaced by `/live/{stream}`.
    pub source: SourceConfig,
    /// VAN viewers with this token instead of plain ones.
    pub van_token: Option<String>,
    /// The viewers' settings; their `url`, `mode` and `bitrate` are filled in from the above.
    pub viewers: ViewersConfig,
    /// How long the stream runs before viewers join, so the relay has it.
    pub warmup: Duration,
}

/// Starts the source, waits until it is publishing, runs the viewers, stops the source.
pub fn run_fanout(cfg: FanoutConfig) -> anyhow::Result<Summary> {
    let relay = cfg.source.url.clone();
    let source_cfg = SourceConfig {
        url: relay.with_path(&format!("/live/{}", cfg.stream)),
        ..cfg.source.clone()
    };
    let stop = Arc::new(AtomicBool::new(false));
    let progress = Arc::new(SourceProgress::default());
    let source = {
        let (stop, progress) = (stop.clone(), progress.clone());
        std::thread::Builder::new()
            .name("source".into())
            .spawn(move || run_source(&source_cfg, &stop, &progress))
            .context("starting the source thread")?
    };
    let waited = Instant::now();
    while !progress.started.load(Ordering::Relaxed) {
        if source.is_finished() || waited.elapsed() > Duration::from_secs(15) {
            stop.store(true, Ordering::Relaxed);
            let r = source
                .join()
                .map_err(|_| anyhow::anyhow!("the source thread panicked"))?;
            r.context("the source did not start")?;
            bail!("the source did not start publishing within 15 s");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(cfg.warmup);
    let (path, mode) = match &cfg.van_token {
        None => (format!("/live/{}", cfg.stream), ViewerMode::Plain),
        Some(t) => (
            format!("/van/{}", cfg.stream),
            ViewerMode::Van { token: t.clone() },
        ),
    };
    let viewers = ViewersConfig {
        url: relay.with_path(&path),
        mode,
        bitrate: cfg.source.bitrate,
        ..cfg.viewers
    };
    let viewer_stop = AtomicBool::new(false);
    let summary = run_viewers(viewers, Some(&progress), &viewer_stop);
    stop.store(true, Ordering::Relaxed);
    let report = source
        .join()
        .map_err(|_| anyhow::anyhow!("the source thread panicked"))?;
    let mut summary = summary?;
    summary.source = report.ok();
    Ok(summary)
}
