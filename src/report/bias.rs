//! `bias.csv` and `bias.png` of `mixpg analyze-bias` (Theorem 2 made empirical).
//!
//! * `bias.csv`: one row per (checkpoint, estimator, horizon) with the columns of
//!   [`BIAS_COLUMNS`].
//! * `bias.png`: (a) the model-driven PG's relative bias against the horizon n, one line per
//!   checkpoint (training stage), the data-driven PG's bias as a triangle at n = 0 (log y
//!   axis);
//!   (b) the data-driven and the model-driven (n = the run's horizon H) relative bias against
//!   the iteration (log y axis), with the rule-based weights `w_data`, `w_model` of eqs.
//!   (10)–(11) on a second axis.

use std::path::Path;

use anyhow::{Context, Result, bail};
use plotters::coord::combinators::{BindKeyPoints, LogCoord, WithKeyPoints};
use plotters::element::DashedPathElement;
use plotters::prelude::*;

use super::plots::{FONT, draw_side_legend, ensure_fonts, fmt_iter, fmt_num};
use crate::checkpoint::write_atomic;

/// The columns of `bias.csv`, in order.
pub const BIAS_COLUMNS: [&str; 9] = [
    "iteration",
    "estimator",
    "horizon",
    "relative_bias",
    "cosine",
    "grad_norm",
    "reference_norm",
    "w_data",
    "w_model",
];

/// One row of `bias.csv`.
#[derive(Debug, Clone, PartialEq)]
pub struct BiasRow {
    /// Training iteration of the checkpoint.
    pub iteration: u64,
    /// `data` or `model`.
    pub estimator: String,
    /// Model rollout horizon n (0 for `data`).
    pub horizon: usize,
    /// `‖g − g_ref‖ / ‖g_ref‖`.
    pub relative_bias: f64,
    /// Cosine between `g` and `g_ref`.
    pub cosine: f64,
    /// `‖g‖`.
    pub grad_norm: f64,
    /// `‖g_ref‖`.
    pub reference_norm: f64,
    /// The run's data weight at this iteration (eqs. (10)–(11)).
    pub w_data: f64,
    /// The run's model weight at this iteration.
    pub w_model: f64,
}

/// Write `bias.csv` (to a temporary name, then renamed).
pub fn write_bias_csv(path: &Path, rows: &[BiasRow]) -> Result<()> {
    let mut s = format!("{}\n", BIAS_COLUMNS.join(","));
    for r in rows {
        s.push_str(&format!(
            "{},{},{},{},{},{},{},{},{}\n",
            r.iteration,
            r.estimator,
            r.horizon,
            r.relative_bias,
            r.cosine,
            r.grad_norm,
            r.reference_norm,
            r.w_data,
            r.w_model
        ));
    }
    write_atomic(path, s.as_bytes())
}

/// A colour per training stage, from blue (early) to red (late).
fn stage_color(i: usize, n: usize) -> RGBColor {
    let t = if n > 1 {
        i as f64 / (n - 1) as f64
    } else {
        1.0
    };
    RGBColor(
        (30.0 + 200.0 * t) as u8,
        (90.0 + 40.0 * (1.0 - (2.0 * t - 1.0).abs())) as u8,
        (220.0 - 190.0 * t) as u8,
    )
}

/// Draw `bias.png` from the rows; `model_horizon` is the horizon H shown in panel (b).
pub fn plot_bias(path: &Path, rows: &[BiasRow], model_horizon: usize) -> Result<()> {
    if rows.is_empty() {
        bail!("no bias rows to plot");
    }
    ensure_fonts()?;
    let mut iterations: Vec<u64> = rows.iter().map(|r| r.iteration).collect();
    iterations.sort_unstable();
    iterations.dedup();
    let positive = |v: f64| v.max(1e-6);
    let ymin = rows
        .iter()
        .map(|r| positive(r.relative_bias))
        .fold(f64::INFINITY, f64::min)
        / 1.5;
    let ymax = rows
        .iter()
        .map(|r| positive(r.relative_bias))
        .fold(0.0f64, f64::max)
        * 1.5;
    let hmax = rows.iter().map(|r| r.horizon).max().unwrap_or(1).max(1) as f64;

    let root = BitMapBackend::new(path, (1500, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(760);
    let (left, stages) = left.split_horizontally(610);

    // (a) bias vs horizon, one line per checkpoint.
    let mut chart = ChartBuilder::on(&left)
        .caption(
            "(a) model-driven PG: relative bias vs horizon n",
            (FONT, 22),
        )
        .margin(14)
        .x_label_area_size(50)
        .y_label_area_size(80)
        .build_cartesian_2d(0f64..hmax, log_axis(ymin, ymax))?;
    chart
        .configure_mesh()
        .x_desc("Model rollout horizon n")
        .y_desc("‖g − g_ref‖ / ‖g_ref‖")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| fmt_num(*y))
        .y_labels(8)
        .label_style((FONT, 15))
        .axis_desc_style((FONT, 17))
        .draw()?;
    let mut legend = Vec::new();
    for (i, &it) in iterations.iter().enumerate() {
        let color = stage_color(i, iterations.len());
        let mut line: Vec<(f64, f64)> = rows
            .iter()
            .filter(|r| r.iteration == it && r.estimator == "model")
            .map(|r| (r.horizon as f64, positive(r.relative_bias)))
            .collect();
        line.sort_by(|a, b| a.0.total_cmp(&b.0));
        chart.draw_series(LineSeries::new(line.clone(), color.stroke_width(2)))?;
        chart.draw_series(line.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
        legend.push((format!("iteration {}", fmt_iter(it as f64)), color, false));
        if let Some(d) = rows
            .iter()
            .find(|r| r.iteration == it && r.estimator == "data")
        {
            let p = (0.0, positive(d.relative_bias));
            chart.draw_series(std::iter::once(TriangleMarker::new(p, 7, color.filled())))?;
        }
    }
    legend.push(("▲ data-driven PG".to_string(), WHITE, false));
    draw_side_legend(&stages, &legend)?;

    // (b) bias vs iteration with the weights.
    let xmax = (*iterations.last().unwrap_or(&1)).max(1) as f64;
    let mut chart = ChartBuilder::on(&right)
        .caption("(b) relative bias and MPG weights vs iteration", (FONT, 22))
        .margin(14)
        .x_label_area_size(50)
        .y_label_area_size(80)
        .right_y_label_area_size(60)
        .build_cartesian_2d(0f64..xmax, log_axis(ymin, ymax))?
        .set_secondary_coord(0f64..xmax, 0f64..1.0);
    chart
        .configure_mesh()
        .x_desc("Iteration")
        .y_desc("‖g − g_ref‖ / ‖g_ref‖")
        .x_label_formatter(&|x| fmt_iter(*x))
        .y_label_formatter(&|y| fmt_num(*y))
        .y_labels(8)
        .label_style((FONT, 15))
        .axis_desc_style((FONT, 17))
        .draw()?;
    chart
        .configure_secondary_axes()
        .y_desc("weight")
        .label_style((FONT, 15))
        .axis_desc_style((FONT, 17))
        .draw()?;
    let series = |estimator: &str, horizon: usize| -> Vec<(f64, f64)> {
        iterations
            .iter()
            .filter_map(|&it| {
                rows.iter()
                    .find(|r| r.iteration == it && r.estimator == estimator && r.horizon == horizon)
                    .map(|r| (it as f64, positive(r.relative_bias)))
            })
            .collect()
    };
    let data_color = RGBColor(31, 119, 180);
    let model_color = RGBColor(44, 160, 44);
    for (label, pts, color) in [
        ("data-driven PG".to_string(), series("data", 0), data_color),
        (
            format!("model-driven PG, n = {model_horizon}"),
            series("model", model_horizon),
            model_color,
        ),
    ] {
        chart
            .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))?
            .label(label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 22, y)], color.stroke_width(3))
            });
        chart.draw_series(pts.iter().map(|&p| Circle::new(p, 4, color.filled())))?;
    }
    let weights: Vec<(u64, f64, f64)> = iterations
        .iter()
        .filter_map(|&it| {
            rows.iter()
                .find(|r| r.iteration == it)
                .map(|r| (it, r.w_data, r.w_model))
        })
        .collect();
    for (label, pick, color) in [
        ("w_data (eqs. 10–11)", 0usize, data_color),
        ("w_model (eqs. 10–11)", 1, model_color),
    ] {
        let pts: Vec<(f64, f64)> = weights
            .iter()
            .map(|&(it, wd, wm)| (it as f64, if pick == 0 { wd } else { wm }))
            .collect();
        chart
            .draw_secondary_series(DashedLineSeries::new(pts, 8, 5, color.stroke_width(2)))?
            .label(label)
            .legend(move |(x, y)| {
                DashedPathElement::new(vec![(x, y), (x + 22, y)], 5, 3, color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerLeft)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font((FONT, 14))
        .draw()?;
    root.present()
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// A log-scaled axis over `[lo, hi]` with ticks at 1, 2 and 5 times each power of ten inside it
/// (plotters labels only the powers of ten, often a single tick on these ranges).
fn log_axis(lo: f64, hi: f64) -> WithKeyPoints<LogCoord<f64>> {
    let mut ticks = Vec::new();
    let mut decade = 10f64.powf(lo.log10().floor());
    while decade <= hi {
        for m in [1.0, 2.0, 5.0] {
            let t = m * decade;
            if (lo..=hi).contains(&t) {
                ticks.push(t);
            }
        }
        decade *= 10.0;
    }
    (lo..hi).log_scale().with_key_points(ticks)
}
