//! The latency-to-CPU trade as a chart (issue 9, item 3): one panel per load, the relay's cost
//! (CPU-s per GB delivered) against its viewers' p99 latency at each coalescing setting, joined
//! in order, and a peer's (the naive relay's) beside it. Points come from `vanbench fanout`
//! JSON summaries named `SCENARIO__TARGET__SETTING.json`.

use crate::chart_style::{color, to_anyhow};
use plotters::prelude::*;
use std::collections::BTreeMap;
use std::path::Path;

/// One run: where it belongs and what it measured.
#[derive(Clone, Debug, PartialEq)]
pub struct Point {
    /// The load, e.g. `n1000` (a panel).
    pub scenario: String,
    /// The relay under test, e.g. `relay` or `naive` (a line).
    pub target: String,
    /// The setting of this point, e.g. `100ms` (a label; points of a line are joined in the
    /// order of its number).
    pub setting: String,
    pub p99_ms: f64,
    pub cpu_s_per_gb: f64,
}

impl Point {
    /// Reads a `vanbench fanout` summary named `SCENARIO__TARGET__SETTING.json`.
    pub fn from_file(path: &Path) -> anyhow::Result<Point> {
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .ok_or_else(|| anyhow::anyhow!("{}: no file name", path.display()))?;
        let parts: Vec<&str> = stem.split("__").collect();
        let [scenario, target, setting] = parts[..] else {
            anyhow::bail!(
                "{}: want a name SCENARIO__TARGET__SETTING.json",
                path.display()
            );
        };
        let text = std::fs::read_to_string(path)?;
        let v: serde_json::Value = serde_json::from_str(&text)?;
        let number = |ptr: &str| {
            v.pointer(ptr)
                .and_then(serde_json::Value::as_f64)
                .ok_or_else(|| anyhow::anyhow!("{}: no {ptr}", path.display()))
        };
        Ok(Point {
            scenario: scenario.into(),
            target: target.into(),
            setting: setting.into(),
            p99_ms: number("/latency_us/p99")? / 1000.0,
            cpu_s_per_gb: number("/relay_cpu_s_per_gb")?,
        })
    }
}

/// The leading number of a setting (`100ms` → 100), for the order along a line.
fn setting_order(s: &str) -> f64 {
    let digits: String = s
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    digits.parse().unwrap_or(f64::MAX)
}

/// Ticks of a log axis at 1, 2 and 5 of each decade in `min..=max`: a panel whose points lie
/// within one decade (n1000's 20–55 ms) still gets labels.
fn ticks_1_2_5(min: f64, max: f64) -> Vec<f64> {
    let mut ticks = Vec::new();
    let mut decade = 10f64.powf(min.log10().floor());
    while decade <= max {
        for m in [1.0, 2.0, 5.0] {
            let t = decade * m;
            if (min..=max).contains(&t) {
                ticks.push(t);
            }
        }
        decade *= 10.0;
    }
    ticks
}

/// A tick's label: whole milliseconds from 1 ms up.
fn format_ms(ms: f64) -> String {
    if ms >= 1.0 {
        format!("{ms:.0}")
    } else {
        format!("{ms:.2}")
    }
}

/// Writes the chart: a panel per scenario, p99 (log scale) across, CPU-s/GB up.
pub fn write_svg(path: &Path, title: &str, points: &[Point]) -> anyhow::Result<()> {
    let mut panels: BTreeMap<&str, Vec<&Point>> = BTreeMap::new();
    for p in points {
        panels.entry(p.scenario.as_str()).or_default().push(p);
    }
    anyhow::ensure!(!panels.is_empty(), "no points to draw");
    let targets: Vec<&str> = {
        let mut t: Vec<&str> = points.iter().map(|p| p.target.as_str()).collect();
        t.sort();
        t.dedup();
        t
    };
    let root = SVGBackend::new(path, (900, 420 * panels.len() as u32)).into_drawing_area();
    root.fill(&WHITE).map_err(to_anyhow)?;
    let root = root.titled(title, ("sans-serif", 20)).map_err(to_anyhow)?;
    for (area, (scenario, pts)) in root.split_evenly((panels.len(), 1)).iter().zip(&panels) {
        let x_min = pts
            .iter()
            .map(|p| p.p99_ms)
            .fold(f64::MAX, f64::min)
            .max(0.01)
            / 1.5;
        let x_max = pts
            .iter()
            .map(|p| p.p99_ms)
            .fold(0.0, f64::max)
            .max(x_min * 2.0)
            * 1.5;
        let y_max = pts
            .iter()
            .map(|p| p.cpu_s_per_gb)
            .fold(0.0, f64::max)
            .max(0.1)
            * 1.15;
        let mut chart = ChartBuilder::on(area)
            .caption(*scenario, ("sans-serif", 16))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(60)
            .build_cartesian_2d(
                (x_min..x_max)
                    .log_scale()
                    .with_key_points(ticks_1_2_5(x_min, x_max)),
                0.0..y_max,
            )
            .map_err(to_anyhow)?;
        chart
            .configure_mesh()
            .x_label_formatter(&|ms| format_ms(*ms))
            .x_desc("viewers' p99 latency (ms, log scale)")
            .y_desc("relay CPU-s per GB delivered")
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(to_anyhow)?;
        for (i, target) in targets.iter().enumerate() {
            let color = color(i);
            let mut line: Vec<&&Point> = pts.iter().filter(|p| p.target == *target).collect();
            if line.is_empty() {
                continue;
            }
            line.sort_by(|a, b| setting_order(&a.setting).total_cmp(&setting_order(&b.setting)));
            chart
                .draw_series(LineSeries::new(
                    line.iter().map(|p| (p.p99_ms, p.cpu_s_per_gb)),
                    color.stroke_width(2),
                ))
                .map_err(to_anyhow)?
                .label(*target)
                .legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 18, y)], color.stroke_width(2))
                });
            chart
                .draw_series(line.iter().map(|p| {
                    EmptyElement::at((p.p99_ms, p.cpu_s_per_gb))
                        + Circle::new((0, 0), 4, color.filled())
                        + Text::new(p.setting.clone(), (6, -14), ("sans-serif", 12))
                }))
                .map_err(to_anyhow)?;
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
    fn a_log_axis_is_labelled_at_1_2_5_of_each_decade() {
        assert_eq!(ticks_1_2_5(13.0, 82.0), [20.0, 50.0]);
        assert_eq!(ticks_1_2_5(0.3, 25.0), [0.5, 1.0, 2.0, 5.0, 10.0, 20.0]);
        assert_eq!(
            (format_ms(200.0), format_ms(0.5)),
            ("200".into(), "0.50".into())
        );
    }

    #[test]
    fn points_are_read_from_fanout_summaries_and_drawn_per_scenario() {
        let dir = std::env::temp_dir().join(format!("van-curve-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut points = Vec::new();
        for (name, p99_us, cpu) in [
            ("n1000__relay__0ms", 9_000.0, 1.1),
            ("n1000__relay__100ms", 22_000.0, 0.6),
            ("n1000__relay__20ms", 12_000.0, 0.8),
            ("n1000__naive__none", 30_000.0, 1.9),
            ("n10000__relay__100ms", 900_000.0, 0.5),
        ] {
            let path = dir.join(format!("{name}.json"));
            let json =
                serde_json::json!({"latency_us": {"p99": p99_us}, "relay_cpu_s_per_gb": cpu});
            std::fs::write(&path, json.to_string()).unwrap();
            points.push(Point::from_file(&path).unwrap());
        }
        assert_eq!(points[2].setting, "20ms");
        assert_eq!(points[2].p99_ms, 12.0);
        assert!(Point::from_file(&dir.join("n1000__relay__0ms.json")).is_ok());
        std::fs::write(dir.join("badname.json"), "{}").unwrap();
        assert!(Point::from_file(&dir.join("badname.json")).is_err());
        let svg_path = dir.join("curve.svg");
        write_svg(&svg_path, "latency against CPU", &points).unwrap();
        let svg = std::fs::read_to_string(&svg_path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        for text in [
            "latency against CPU",
            "n1000",
            "n10000",
            "relay",
            "naive",
            "20ms",
        ] {
            assert!(svg.contains(text), "{text} missing");
        }
        assert!(
            svg.matches("<polyline").count() >= 3,
            "a line per target and panel"
        );
        assert!(setting_order("0ms") < setting_order("20ms"));
        assert!(setting_order("20ms") < setting_order("100ms"));
    }
}
