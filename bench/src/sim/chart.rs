//! Charts of simulation runs as SVG: viewers, active proxies, rejected logins and the messages
//! the PNC received over time, one line per run (policy and proxy model) on the same axes, so
//! that runs on one trace read side by side.

use super::report::{Report, Sample};
use crate::chart_style::{color, to_anyhow};
use plotters::prelude::*;
use std::path::Path;

/// A panel: its title and what each sample contributes.
type Panel = (&'static str, fn(&Sample) -> f64);

const PANELS: [Panel; 4] = [
    ("viewers receiving", |s| s.viewers as f64),
    ("active relay machines", |s| s.active_proxies as f64),
    ("rejected logins (cumulative)", |s| s.rejected as f64),
    ("messages to the PNC per second", |s| s.pnc_per_s),
];

/// Writes one SVG with the panels stacked; `title` names the trace.
pub fn write_svg(path: &Path, title: &str, runs: &[&Report]) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, (960, 1200)).into_drawing_area();
    root.fill(&WHITE).map_err(to_anyhow)?;
    let root = root.titled(title, ("sans-serif", 22)).map_err(to_anyhow)?;
    let t_max = runs
        .iter()
        .filter_map(|r| r.series.last().map(|s| s.t_s))
        .fold(1.0, f64::max);
    for (area, (name, value)) in root.split_evenly((PANELS.len(), 1)).iter().zip(PANELS) {
        let y_max = runs
            .iter()
            .flat_map(|r| r.series.iter().map(value))
            .fold(1.0, f64::max)
            * 1.05;
        let mut chart = ChartBuilder::on(area)
            .caption(name, ("sans-serif", 16))
            .margin(8)
            .x_label_area_size(30)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..t_max, 0.0..y_max)
            .map_err(to_anyhow)?;
        chart
            .configure_mesh()
            .x_desc("seconds")
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(to_anyhow)?;
        for (i, r) in runs.iter().enumerate() {
            let color = color(i);
            let label = if r.proxy_model.is_empty() {
                r.policy.clone()
            } else {
                format!("{} ({} proxies)", r.policy, r.proxy_model)
            };
            chart
                .draw_series(LineSeries::new(
                    r.series.iter().map(|s| (s.t_s, value(s))),
                    color.stroke_width(2),
                ))
                .map_err(to_anyhow)?
                .label(label)
                .legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 18, y)], color.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .map_err(to_anyhow)?;
    }
    root.present().map_err(to_anyhow)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_svg_with_every_policy_and_panel_is_written() {
        let run = |policy: &str, k: u64| Report {
            policy: policy.into(),
            series: (0..10)
                .map(|t| Sample {
                    t_s: t as f64,
                    viewers: t * k,
                    waiting: 0,
                    active_proxies: t,
                    rejected: t / 3,
                    pnc_per_s: (t * 7) as f64,
                })
                .collect(),
            ..Report::default()
        };
        let (a, b) = (run("seed", 100), run("one-at-a-time", 90));
        let dir = std::env::temp_dir().join(format!("van-chart-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.svg");
        write_svg(&path, "flash crowd", &[&a, &b]).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        for text in [
            "flash crowd",
            "seed",
            "one-at-a-time",
            "viewers receiving",
            "active relay machines",
            "rejected logins",
            "messages to the PNC",
        ] {
            assert!(svg.contains(text), "{text} missing");
        }
        assert!(
            svg.matches("<polyline").count() >= 8,
            "a line per run and panel"
        );
    }
}
