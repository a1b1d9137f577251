//! `weir-bench plot RESULTS.json... [--out-dir DIR]`: PNG charts from the
//! bench's JSON results.
//!
//! - `latency.png`: p50, p90 and p99 of every latency row that is not part of
//!   the growth scenario, one line each, on a log time axis;
//! - `growth.png`: the growth scenario's per-decision cost (store and
//!   in-memory model) and pass queries, and RSS, against queue depth.
//!
//! Text is drawn with `ab_glyph` from a TrueType file read at run time
//! (`WEIR_BENCH_FONT`, else DejaVu Sans or Liberation Sans at their usual
//! paths), so the bench builds without fontconfig or freetype.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use plotters::prelude::*;
use plotters::style::FontStyle;
use serde_json::Value;

type Error = String;

const FONT_PATHS: [&str; 4] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
];

fn load_font() -> Result<(), Error> {
    let candidates: Vec<PathBuf> = match std::env::var_os("WEIR_BENCH_FONT") {
        Some(p) => vec![PathBuf::from(p)],
        None => FONT_PATHS.iter().map(PathBuf::from).collect(),
    };
    let Some(path) = candidates.iter().find(|p| p.is_file()) else {
        return Err(format!(
            "no font for the plot: none of {} exists; install DejaVu Sans (Debian: \
             apt-get install fonts-dejavu-core) or set WEIR_BENCH_FONT to a .ttf file",
            candidates
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    };
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    // plotters keeps registered fonts for the life of the process.
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    for style in [FontStyle::Normal, FontStyle::Bold] {
        plotters::style::register_font("sans-serif", style, bytes)
            .map_err(|_| format!("{} is not a usable TrueType font", path.display()))?;
    }
    Ok(())
}

pub(crate) fn main(mut args: impl Iterator<Item = String>) -> Result<(), Error> {
    let mut inputs = Vec::new();
    let mut out_dir = PathBuf::from(".");
    while let Some(a) = args.next() {
        match a.as_str() {
            "--out-dir" | "-o" => {
                out_dir = args
                    .next()
                    .map(PathBuf::from)
                    .ok_or("--out-dir needs a path")?
            }
            _ => inputs.push(PathBuf::from(a)),
        }
    }
    if inputs.is_empty() {
        return Err("usage: weir-bench plot RESULTS.json... [--out-dir DIR]".into());
    }
    let mut rows = Vec::new();
    for path in &inputs {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let doc: Value =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        rows.extend(doc["results"].as_array().cloned().unwrap_or_default());
    }
    load_font()?;
    std::fs::create_dir_all(&out_dir).map_err(|e| format!("{}: {e}", out_dir.display()))?;
    let mut wrote = Vec::new();
    let latency: Vec<&Value> = rows
        .iter()
        .filter(|r| r["median_us"].is_number() && r["scenario"] != "growth")
        .collect();
    if !latency.is_empty() {
        let path = out_dir.join("latency.png");
        latency_chart(&latency, &path).map_err(|e| format!("{}: {e}", path.display()))?;
        wrote.push(path);
    }
    let growth: Vec<&Value> = rows.iter().filter(|r| r["scenario"] == "growth").collect();
    if !growth.is_empty() {
        let path = out_dir.join("growth.png");
        growth_chart(&growth, &path).map_err(|e| format!("{}: {e}", path.display()))?;
        wrote.push(path);
    }
    if wrote.is_empty() {
        return Err("no latency or growth rows in the input".into());
    }
    for p in wrote {
        println!("{}", p.display());
    }
    Ok(())
}

fn err<E: std::fmt::Display>(e: E) -> Error {
    e.to_string()
}

fn us(row: &Value, key: &str) -> Option<f64> {
    row[key].as_f64().filter(|v| *v > 0.0)
}

/// One line per latency row: a bar from p50 to p99, marks at p50 (circle),
/// p90 (triangle) and p99 (cross).
fn latency_chart(rows: &[&Value], path: &Path) -> Result<(), Error> {
    let n = rows.len();
    let height = 110 + 34 * n as u32;
    let root = BitMapBackend::new(path, (1500, height)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let all: Vec<f64> = rows
        .iter()
        .flat_map(|r| ["median_us", "p90_us", "p99_us"].map(|k| us(r, k)))
        .flatten()
        .collect();
    let lo = all.iter().cloned().fold(f64::INFINITY, f64::min).max(0.01);
    let hi = all.iter().cloned().fold(0.0, f64::max).max(lo * 10.0);
    let x_range = (lo / 2.0)..(hi * 2.0);
    let names: Vec<String> = rows
        .iter()
        .map(|r| r["name"].as_str().unwrap_or("?").to_owned())
        .collect();
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Latency percentiles (p50 ●, p90 ▲, p99 ×), log scale",
            ("sans-serif", 22),
        )
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(560)
        .build_cartesian_2d(x_range.log_scale(), -0.5f64..(n as f64 - 0.5))
        .map_err(err)?;
    chart
        .configure_mesh()
        .y_labels(n)
        .y_label_formatter(&|y| {
            let i = y.round();
            if (y - i).abs() > 0.01 || i < 0.0 {
                return String::new();
            }
            names.get(n - 1 - i as usize).cloned().unwrap_or_default()
        })
        .x_label_formatter(&|x| fmt_time(*x))
        .x_desc("time per operation")
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 15))
        .draw()
        .map_err(err)?;
    for (i, row) in rows.iter().enumerate() {
        let y = (n - 1 - i) as f64;
        let (Some(p50), Some(p99)) = (us(row, "median_us"), us(row, "p99_us")) else {
            continue;
        };
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(p50, y), (p99, y)],
                BLUE.mix(0.35).stroke_width(6),
            )))
            .map_err(err)?;
        chart
            .draw_series(std::iter::once(Circle::new((p50, y), 6, BLUE.filled())))
            .map_err(err)?;
        if let Some(p90) = us(row, "p90_us") {
            chart
                .draw_series(std::iter::once(TriangleMarker::new(
                    (p90, y),
                    7,
                    GREEN.mix(0.9).filled(),
                )))
                .map_err(err)?;
        }
        chart
            .draw_series(std::iter::once(Cross::new(
                (p99, y),
                6,
                RED.stroke_width(3),
            )))
            .map_err(err)?;
    }
    root.present().map_err(err)?;
    Ok(())
}

fn fmt_time(us: f64) -> String {
    if us >= 1e6 {
        format!("{} s", trim(us / 1e6))
    } else if us >= 1e3 {
        format!("{} ms", trim(us / 1e3))
    } else {
        format!("{} µs", trim(us))
    }
}

fn trim(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

fn fmt_count(v: f64) -> String {
    if v >= 1e6 {
        format!("{}M", trim(v / 1e6))
    } else if v >= 1e3 {
        format!("{}k", trim(v / 1e3))
    } else {
        trim(v)
    }
}

/// A legend entry, its (depth, value) points and its colour.
type Line = (String, Vec<(f64, f64)>, RGBColor);

/// (depth, value) points of one growth metric, sorted by depth.
fn series(rows: &[&Value], metric: &str, key: &str) -> Vec<(f64, f64)> {
    let mut by_depth: BTreeMap<u64, f64> = BTreeMap::new();
    for r in rows.iter().filter(|r| r["metric"] == metric) {
        if let (Some(d), Some(v)) = (r["depth"].as_u64(), r[key].as_f64())
            && v > 0.0
        {
            by_depth.insert(d, v);
        }
    }
    by_depth.into_iter().map(|(d, v)| (d as f64, v)).collect()
}

/// Left: per-decision cost and pass queries (µs, log) against depth (log);
/// right: RSS (MiB) against depth (log).
fn growth_chart(rows: &[&Value], path: &Path) -> Result<(), Error> {
    let root = BitMapBackend::new(path, (1500, 620)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let (left, right) = root.split_horizontally(900);
    let depths: Vec<f64> = rows.iter().filter_map(|r| r["depth"].as_f64()).collect();
    let dmin = depths
        .iter()
        .cloned()
        .fold(f64::INFINITY, f64::min)
        .max(1.0);
    let dmax = depths.iter().cloned().fold(1.0, f64::max);
    let x_range = (dmin / 2.0)..(dmax * 2.0);

    let lines: Vec<Line> = vec![
        (
            "release_ready per decision, median".into(),
            series(rows, "decision", "median_us"),
            BLUE,
        ),
        (
            "release_ready per decision, p99".into(),
            series(rows, "decision", "p99_us"),
            RGBColor(120, 160, 255),
        ),
        (
            "in-memory model per decision, median".into(),
            series(rows, "model_decision", "median_us"),
            BLACK,
        ),
        (
            "next_wake (per pass), median".into(),
            series(rows, "next_wake", "median_us"),
            RED,
        ),
        (
            "mark_late scan (per pass), median".into(),
            series(rows, "mark_late", "median_us"),
            RGBColor(230, 120, 0),
        ),
        (
            "due_admissions (per pass), median".into(),
            series(rows, "due_admissions", "median_us"),
            RGBColor(150, 0, 150),
        ),
        (
            "stats (/metrics), median".into(),
            series(rows, "stats", "median_us"),
            RGBColor(0, 140, 0),
        ),
    ];
    let ys: Vec<f64> = lines
        .iter()
        .flat_map(|(_, s, _)| s.iter().map(|p| p.1))
        .collect();
    let ylo = ys.iter().cloned().fold(f64::INFINITY, f64::min).max(0.001);
    let yhi = ys.iter().cloned().fold(0.0, f64::max).max(ylo * 10.0);
    let mut chart = ChartBuilder::on(&left)
        .caption(
            "Scheduler cost against queue depth (log–log)",
            ("sans-serif", 22),
        )
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(80)
        .build_cartesian_2d(
            x_range.clone().log_scale(),
            ((ylo / 3.0)..(yhi * 3.0)).log_scale(),
        )
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("queued runs")
        .y_desc("time")
        .x_label_formatter(&|x| fmt_count(*x))
        .y_label_formatter(&|y| fmt_time(*y))
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 15))
        .draw()
        .map_err(err)?;
    for (name, points, color) in &lines {
        if points.is_empty() {
            continue;
        }
        let color = *color;
        chart
            .draw_series(LineSeries::new(
                points.iter().cloned(),
                color.stroke_width(2),
            ))
            .map_err(err)?
            .label(name.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart
            .draw_series(points.iter().map(|p| Circle::new(*p, 4, color.filled())))
            .map_err(err)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font(("sans-serif", 13))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;

    let mem: Vec<Line> = vec![
        (
            "weir serve on the database, VmRSS".into(),
            series(rows, "rss_serve", "value"),
            BLUE,
        ),
        (
            "weir serve, peak (VmHWM)".into(),
            series(rows, "hwm_serve", "value"),
            RGBColor(120, 160, 255),
        ),
        (
            "bench process holding the store, VmRSS".into(),
            series(rows, "rss_bench", "value"),
            RGBColor(230, 120, 0),
        ),
    ];
    let mhi = mem
        .iter()
        .flat_map(|(_, s, _)| s.iter().map(|p| p.1))
        .fold(10.0, f64::max);
    let mut chart = ChartBuilder::on(&right)
        .caption("Memory against queue depth", ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(60)
        .build_cartesian_2d(x_range.log_scale(), 0f64..(mhi * 1.25))
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("queued runs")
        .y_desc("MiB")
        .x_label_formatter(&|x| fmt_count(*x))
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 15))
        .draw()
        .map_err(err)?;
    for (name, points, color) in &mem {
        if points.is_empty() {
            continue;
        }
        let color = *color;
        chart
            .draw_series(LineSeries::new(
                points.iter().cloned(),
                color.stroke_width(2),
            ))
            .map_err(err)?
            .label(name.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart
            .draw_series(points.iter().map(|p| Circle::new(*p, 4, color.filled())))
            .map_err(err)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .label_font(("sans-serif", 13))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}
