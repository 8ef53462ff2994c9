//! Figures: learning curves (Fig. 4(a)/5(a)), convergence speed (Fig. 4(b)/5(b)) and
//! per-gradient / per-update time box plots (Fig. 6).
//!
//! Text is rendered with the DejaVu Sans font embedded in the binary (plotters' `ab_glyph`
//! feature), so no system font or fontconfig is needed.
//!
//! * `curves.png` / `curves.svg`: one panel per task; per algorithm (and variant) the median
//!   evaluation return over seeds at each evaluation iteration (no smoothing) with a shaded
//!   interquartile band (when there are at least two seeds), on a symmetric-log value axis
//!   (linear within a fifth of the smallest goal of zero, logarithmic beyond) so that
//!   catastrophic early returns and the goals near zero are both readable; dashed lines at
//!   every goal of Table I, the minimum requirement in bold; the value range covers every goal
//!   and every quartile; the legend sits beside the chart, never over the data.
//! * `convergence.png`: one panel per task that has goals (none when no task has any: a
//!   Gymnasium task without a reward threshold), as the paper's Fig. 4(b)/5(b); x = goal return,
//!   y = iterations to reach it; per algorithm the mean over the seeds that reached the goal
//!   as a solid line with a shaded 95% CI band over consecutive reached goals (a CI whisker
//!   for an isolated goal), markers filled when every seed reached the goal and hollow when
//!   only some did; goals nobody reached are left out (as in the paper); legend beside.
//! * `timing.png`: one row per task that has timing data, columns `pg_time_ms` and
//!   `update_time_ms`; Tukey box plots per algorithm over all rows of all seeds (box = quartiles,
//!   median line, whiskers to the furthest points within 1.5 IQR, outliers as circles). The y
//!   axis goes up to the largest value but at most twice the highest whisker; outliers above
//!   it are not drawn (at most 2000 outliers per box are drawn, evenly thinned).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::Context;
use plotters::coord::Shift;
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, Ranged};
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::register_font;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::stats::{box_stats, quantile_sorted};
use super::table::task_table;
use super::{AlgoRuns, Grouped, Run, Task, algo_display_name};

pub(crate) const FONT: &str = "sans-serif";

/// Categorical axis: slots `0..n` at integer positions over `[-0.5, n - 0.5]`, with a tick
/// (key point) exactly at each slot, so labels can be looked up by index.
#[derive(Debug, Clone, Copy)]
struct Slots(usize);

impl Ranged for Slots {
    type ValueType = f64;
    type FormatOption = DefaultFormatting;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        let span = self.0.max(1) as f64;
        let frac = (value + 0.5) / span;
        limit.0 + (frac * (limit.1 - limit.0) as f64).round() as i32
    }

    fn key_points<Hint: KeyPointHint>(&self, _hint: Hint) -> Vec<f64> {
        (0..self.0).map(|j| j as f64).collect()
    }

    fn range(&self) -> std::ops::Range<f64> {
        -0.5..(self.0.max(1) as f64 - 0.5)
    }
}

/// Register the embedded DejaVu Sans font with plotters (once per process).
pub(crate) fn ensure_fonts() -> anyhow::Result<()> {
    static REGISTERED: OnceLock<Result<(), String>> = OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            register_font(FONT, FontStyle::Normal, dejavu::sans::regular())
                .map_err(|_| "cannot load embedded DejaVu Sans font".to_string())?;
            register_font(FONT, FontStyle::Bold, dejavu::sans::bold())
                .map_err(|_| "cannot load embedded DejaVu Sans Bold font".to_string())?;
            Ok(())
        })
        .clone()
        .map_err(anyhow::Error::msg)
}

/// Fixed colour per algorithm so all figures agree.
pub fn algo_color(key: &str) -> RGBColor {
    match key {
        "mpg_v1" => RGBColor(214, 39, 40),
        "mpg_v2" => RGBColor(255, 127, 14),
        "ndpg" => RGBColor(31, 119, 180),
        "nadp" => RGBColor(44, 160, 44),
        "ddpg" => RGBColor(140, 86, 75),
        "td3" => RGBColor(148, 103, 189),
        "sac" => RGBColor(23, 190, 207),
        other => {
            let h = other
                .bytes()
                .fold(0usize, |a, b| a.wrapping_mul(31).wrapping_add(b as usize));
            let c = Palette99::pick(h).to_rgba();
            RGBColor(c.0, c.1, c.2)
        }
    }
}

/// Colours of one report: each algorithm its fixed colour; a variant (`algo [key=value]`)
/// its algorithm's colour, shaded by the variant's place among the report's variant labels
/// (the first as is, the second darker, the third lighter, ...), and in the learning curves
/// every variant but the first dashed, so one algorithm's variants read as one family.
pub struct Colors(BTreeMap<String, (RGBColor, bool)>);

impl Colors {
    /// Assign the colours of every algorithm and variant in `grouped`.
    pub fn new(grouped: &Grouped) -> Self {
        // Mix with black (negative) or white (positive), by the variant's place.
        const SHADES: [f64; 6] = [0.0, -0.45, 0.45, -0.7, 0.65, -0.25];
        let mut labels: Vec<&str> = Vec::new();
        let mut map = BTreeMap::new();
        for (key, _) in grouped.values().flatten() {
            let Some((algo, variant)) = key.split_once(" [") else {
                map.insert(key.clone(), (algo_color(key), false));
                continue;
            };
            let place = labels
                .iter()
                .position(|l| *l == variant)
                .unwrap_or_else(|| {
                    labels.push(variant);
                    labels.len() - 1
                });
            let shade = SHADES[place % SHADES.len()];
            let RGBColor(r, g, b) = algo_color(algo);
            let mix = |c: u8| {
                let c = c as f64;
                let target = if shade < 0.0 { 0.0 } else { 255.0 };
                (c + (target - c) * shade.abs()).round() as u8
            };
            map.insert(key.clone(), (RGBColor(mix(r), mix(g), mix(b)), place > 0));
        }
        Self(map)
    }

    /// Whether the learning curve of an algorithm or variant key is drawn dashed.
    pub fn dashed(&self, key: &str) -> bool {
        self.0.get(key).is_some_and(|c| c.1)
    }

    /// The colour of an algorithm or variant key.
    pub fn of(&self, key: &str) -> RGBColor {
        self.0.get(key).map_or_else(|| algo_color(key), |c| c.0)
    }
}

/// A compact display name for a category axis: a variant keeps only its values
/// (`MPG-v1 [rollout_gradient=first_action]` → `MPG-v1 [first_action]`).
fn short_name(key: &str) -> String {
    let name = algo_display_name(key);
    match name.split_once(" [") {
        Some((base, variant)) => {
            let values: Vec<&str> = variant
                .trim_end_matches(']')
                .split(", ")
                .map(|kv| kv.split_once('=').map_or(kv, |(_, v)| v))
                .collect();
            format!("{base} [{}]", values.join(", "))
        }
        None => name,
    }
}

/// Axis label for an iteration count: `25000` → `25k`, `2500` → `2.5k`.
pub(crate) fn fmt_iter(x: f64) -> String {
    if x.abs() >= 1000.0 {
        let k = x / 1000.0;
        if (k - k.round()).abs() < 1e-9 {
            format!("{}k", k.round())
        } else {
            format!("{k:.1}k")
        }
    } else {
        format!("{x:.0}")
    }
}

/// Axis label for a value: shortest form, at most 6 decimals (`-100`, `2.5`, `-0.01`).
pub(crate) fn fmt_num(v: f64) -> String {
    let r = (v * 1e6).round() / 1e6;
    if r == 0.0 {
        "0".to_string()
    } else {
        format!("{r}")
    }
}

/// Write `curves.png`, `curves.svg`, `convergence.png` (when a task has goals) and `timing.png`
/// into `out`.
pub fn write_plots(grouped: &Grouped, out: &Path) -> anyhow::Result<Vec<PathBuf>> {
    ensure_fonts()?;
    let mut files = Vec::new();
    let n = grouped.len().max(1) as u32;
    let colors = Colors::new(grouped);

    let p = out.join("curves.png");
    {
        let root = BitMapBackend::new(&p, (1050 * n, 560)).into_drawing_area();
        draw_curves(&root, grouped, &colors)?;
        root.present()
            .with_context(|| format!("cannot write {}", p.display()))?;
    }
    files.push(p);

    let p = out.join("curves.svg");
    {
        let root = SVGBackend::new(&p, (1050 * n, 560)).into_drawing_area();
        draw_curves(&root, grouped, &colors)?;
        root.present()
            .with_context(|| format!("cannot write {}", p.display()))?;
    }
    files.push(p);

    let with_goals: Vec<(&Task, &AlgoRuns)> = grouped
        .iter()
        .filter(|(task, _)| !task.goals().is_empty())
        .collect();
    if !with_goals.is_empty() {
        let p = out.join("convergence.png");
        {
            let width = 1050 * with_goals.len() as u32;
            let root = BitMapBackend::new(&p, (width, 560)).into_drawing_area();
            draw_convergence(&root, &with_goals, &colors)?;
            root.present()
                .with_context(|| format!("cannot write {}", p.display()))?;
        }
        files.push(p);
    } else {
        // An earlier report's figure would be read as this one's.
        let stale = out.join("convergence.png");
        if stale.is_file() {
            std::fs::remove_file(&stale)
                .with_context(|| format!("cannot remove the stale {}", stale.display()))?;
        }
    }

    let p = out.join("timing.png");
    {
        let rows = grouped
            .values()
            .filter(|algos| has_timing(algos))
            .count()
            .max(1) as u32;
        let root = BitMapBackend::new(&p, (1440, 480 * rows)).into_drawing_area();
        draw_timing(&root, grouped, &colors)?;
        root.present()
            .with_context(|| format!("cannot write {}", p.display()))?;
    }
    files.push(p);
    Ok(files)
}

/// Median and interquartile range of the evaluation return at each evaluation iteration over
/// the seeds that have it: `(iteration, q25, median, q75)`.
pub fn curve_points(runs: &[Run]) -> Vec<(f64, f64, f64, f64)> {
    let mut by_it: BTreeMap<u64, Vec<f64>> = BTreeMap::new();
    for r in runs {
        for &(it, v) in &r.evals {
            by_it.entry(it).or_default().push(v);
        }
    }
    by_it
        .into_iter()
        .map(|(it, mut vs)| {
            vs.sort_by(f64::total_cmp);
            let q = |p| quantile_sorted(&vs, p);
            (it as f64, q(0.25), q(0.5), q(0.75))
        })
        .collect()
}

fn max_iteration(algos: &[(String, Vec<Run>)]) -> f64 {
    algos
        .iter()
        .flat_map(|(_, runs)| runs.iter())
        .filter_map(|r| r.evals.last().map(|e| e.0))
        .max()
        .unwrap_or(0) as f64
}

/// Symmetric-log value axis: `y ↦ sign(y) · log10(1 + |y| / c)`, linear near zero (below
/// `c`) and logarithmic beyond, so returns spanning several orders of magnitude and goals
/// close to zero are readable on one axis. Ticks at 0 and ±1, 2, 5 × 10^k.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SymLog {
    lo: f64,
    hi: f64,
    c: f64,
}

impl SymLog {
    fn t(&self, y: f64) -> f64 {
        y.signum() * (1.0 + y.abs() / self.c).log10()
    }
}

impl Ranged for SymLog {
    type ValueType = f64;
    type FormatOption = DefaultFormatting;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        let (a, b) = (self.t(self.lo), self.t(self.hi));
        let frac = (self.t(*value) - a) / (b - a).max(1e-12);
        limit.0 + (frac * (limit.1 - limit.0) as f64).round() as i32
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        let mut pts = vec![0.0];
        for e in -4..7 {
            for m in [1.0, 2.0, 5.0] {
                let v = m * 10f64.powi(e);
                if v >= self.c * 0.999 {
                    pts.extend([v, -v]);
                }
            }
        }
        pts.retain(|v| *v >= self.lo && *v <= self.hi);
        pts.sort_by(f64::total_cmp);
        // Thin to the hint: keep the decades (1 × 10^k) first.
        let max = hint.max_num_points().max(2);
        if pts.len() > max {
            pts.retain(|v| {
                let a = v.abs();
                a == 0.0 || (a.log10() - a.log10().round()).abs() < 1e-9
            });
        }
        pts
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.lo..self.hi
    }
}

/// The value range of a task's curves: every goal, the minimum requirement and every plotted
/// quartile, widened to a round power of ten below and to 0 above.
fn curve_range(task: &Task, algos: &AlgoRuns) -> SymLog {
    let marks: Vec<f64> = task
        .goals()
        .iter()
        .copied()
        .chain(task.min_requirement())
        .collect();
    let mut lo = marks.iter().copied().fold(0.0, f64::min) * 3.0;
    let mut hi: f64 = 0.0;
    for (_, runs) in algos {
        for (_, q25, _, q75) in curve_points(runs) {
            lo = lo.min(q25);
            hi = hi.max(q75);
        }
    }
    // Linear below a fifth of the smallest goal; without goals, below 1% of the largest value.
    let smallest_goal = marks.iter().map(|g| g.abs()).fold(f64::INFINITY, f64::min);
    let c = if smallest_goal.is_finite() {
        smallest_goal / 5.0
    } else {
        lo.abs().max(hi) / 100.0
    }
    .max(1e-6);
    // The nearest 1, 2 or 5 × 10^k at or below the lowest value.
    let need = (-lo).max(c);
    let decade = 10f64.powf(need.log10().floor());
    let lo = -[1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * decade)
        .find(|v| *v >= need * 0.999)
        .unwrap_or(10.0 * decade);
    let hi = if hi > 0.0 {
        10f64.powf(hi.log10().ceil())
    } else {
        c
    };
    SymLog { lo, hi, c }
}

/// A line-sample legend drawn beside a chart (never over the data).
pub(crate) fn draw_side_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    entries: &[(String, RGBColor, bool)],
) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    let top = 60;
    for (i, (label, color, dashed)) in entries.iter().enumerate() {
        let y = top + 24 * i as i32;
        if *dashed {
            area.draw(&DashedPathElement::new(
                vec![(6, y), (34, y)],
                5,
                3,
                color.stroke_width(2),
            ))?;
        } else {
            area.draw(&PathElement::new(
                vec![(6, y), (34, y)],
                color.stroke_width(3),
            ))?;
        }
        area.draw(&Text::new(
            label.clone(),
            (42, y - 8),
            (FONT, 15).into_font().color(&BLACK),
        ))?;
    }
    Ok(())
}

/// Width of the legend column beside each panel, px.
const LEGEND_W: i32 = 330;

fn draw_curves<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    grouped: &Grouped,
    colors: &Colors,
) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE)?;
    let panels = root.split_evenly((1, grouped.len().max(1)));
    for (panel, (task, algos)) in panels.iter().zip(grouped) {
        let (w, _) = panel.dim_in_pixel();
        let (area, legend_area) = panel.split_horizontally(w as i32 - LEGEND_W);
        let range = curve_range(task, algos);
        let xmax = max_iteration(algos).max(1.0);
        let mut chart = ChartBuilder::on(&area)
            .caption(
                format!("{}: learning curves", task.display_name()),
                (FONT, 24),
            )
            .margin(14)
            .x_label_area_size(50)
            .y_label_area_size(80)
            .build_cartesian_2d(0f64..xmax, range)?;
        chart
            .configure_mesh()
            .x_desc("Iteration")
            .y_desc("Evaluation return (median, IQR band; symlog)")
            .x_label_formatter(&|x| fmt_iter(*x))
            .y_label_formatter(&|y| fmt_num(*y))
            .label_style((FONT, 15))
            .axis_desc_style((FONT, 17))
            .light_line_style(WHITE)
            .draw()?;

        let mut legend = Vec::new();
        for (algo, runs) in algos {
            let color = colors.of(algo);
            let pts = curve_points(runs);
            if pts.len() > 1 && runs.len() > 1 {
                let band: Vec<(f64, f64)> = pts
                    .iter()
                    .map(|&(x, _, _, q75)| (x, q75))
                    .chain(pts.iter().rev().map(|&(x, q25, _, _)| (x, q25)))
                    .collect();
                chart.draw_series(std::iter::once(Polygon::new(band, color.mix(0.15))))?;
            }
            let line: Vec<(f64, f64)> = pts.iter().map(|&(x, _, m, _)| (x, m)).collect();
            let dashed = colors.dashed(algo);
            if dashed {
                chart.draw_series(DashedLineSeries::new(
                    line.clone(),
                    8,
                    5,
                    color.stroke_width(2),
                ))?;
            } else {
                chart.draw_series(LineSeries::new(line.clone(), color.stroke_width(2)))?;
            }
            chart.draw_series(line.iter().map(|&p| Circle::new(p, 2, color.filled())))?;
            legend.push((
                format!("{} (n={})", algo_display_name(algo), runs.len()),
                color,
                dashed,
            ));
        }
        let req = task.min_requirement();
        for &goal in task.goals() {
            let (style, width) = if Some(goal) == req {
                (BLACK, 2)
            } else {
                (RGBColor(120, 120, 120), 1)
            };
            chart.draw_series(DashedLineSeries::new(
                vec![(0.0, goal), (xmax, goal)],
                10,
                6,
                style.stroke_width(width),
            ))?;
            let label_style = (FONT, 13)
                .into_font()
                .color(&style)
                .pos(Pos::new(HPos::Right, VPos::Bottom));
            chart.draw_series(std::iter::once(Text::new(
                fmt_num(goal),
                (xmax, goal),
                label_style,
            )))?;
        }
        if let Some(req) = req {
            legend.push((format!("minimum requirement ({req})"), BLACK, true));
        }
        if !task.goals().is_empty() {
            legend.push((
                "goals of Table I".to_string(),
                RGBColor(120, 120, 120),
                true,
            ));
        }
        draw_side_legend(&legend_area, &legend)?;
    }
    Ok(())
}

fn draw_convergence<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    tasks: &[(&Task, &AlgoRuns)],
    colors: &Colors,
) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE)?;
    let panels = root.split_evenly((1, tasks.len().max(1)));
    for (panel, &(task, algos)) in panels.iter().zip(tasks) {
        let (w, _) = panel.dim_in_pixel();
        let (area, legend_area) = panel.split_horizontally(w as i32 - LEGEND_W);
        let table = task_table(task.clone(), algos);
        let goals = table.goals.clone();
        let ng = goals.len();
        let mut ymax = table
            .rows
            .iter()
            .flat_map(|r| r.reach.iter())
            .filter(|g| g.reached > 0)
            .map(|g| g.stats.mean + g.stats.ci95.unwrap_or(0.0))
            .fold(0.0f64, f64::max);
        if ymax <= 0.0 {
            ymax = max_iteration(algos).max(1.0);
        }
        ymax *= 1.08;
        let mut chart = ChartBuilder::on(&area)
            .caption(
                format!("{}: convergence speed", task.display_name()),
                (FONT, 24),
            )
            .margin(14)
            .x_label_area_size(50)
            .y_label_area_size(70)
            .build_cartesian_2d(Slots(ng), 0f64..ymax)?;
        let goal_label = |x: &f64| {
            let j = x.round();
            if (x - j).abs() < 1e-6 && j >= 0.0 && (j as usize) < goals.len() {
                format!("{}", goals[j as usize])
            } else {
                String::new()
            }
        };
        chart
            .configure_mesh()
            .x_desc("Goal return")
            .y_desc("Iterations to reach goal")
            .x_label_formatter(&goal_label)
            .y_label_formatter(&|y| fmt_iter(*y))
            .label_style((FONT, 15))
            .axis_desc_style((FONT, 18))
            .draw()?;

        let mut legend = Vec::new();
        let m = table.rows.len().max(1) as f64;
        let step = (0.5 / m).min(0.08);
        for (k, row) in table.rows.iter().enumerate() {
            let color = colors.of(&row.algo);
            let off = (k as f64 - (m - 1.0) / 2.0) * step;
            let pts: Vec<Option<(f64, f64, Option<f64>)>> = row
                .reach
                .iter()
                .enumerate()
                .map(|(j, g)| g.mean().map(|mean| (j as f64 + off, mean, g.stats.ci95)))
                .collect();
            // Mean line and shaded 95% CI over runs of consecutive reached goals (Fig. 4(b));
            // a reached goal with no reached neighbour gets a CI whisker instead.
            let mut seg: Vec<(f64, f64, Option<f64>)> = Vec::new();
            for p in pts.iter().chain(std::iter::once(&None)) {
                match p {
                    Some(p) => seg.push(*p),
                    None => {
                        draw_reach_segment(&mut chart, &seg, color)?;
                        seg.clear();
                    }
                }
            }
            let reached_any = pts.iter().any(Option::is_some);
            let label = if reached_any {
                format!("{} (n={})", row.display, row.seeds.len())
            } else {
                format!("{} (n={}, no goal reached)", row.display, row.seeds.len())
            };
            // Filled marker: every seed reached the goal; hollow: only some did.
            let n_seeds = row.seeds.len();
            chart.draw_series(pts.iter().zip(&row.reach).filter_map(|(p, g)| {
                p.map(|(x, y, _)| {
                    let style = if g.reached == n_seeds {
                        color.filled()
                    } else {
                        color.stroke_width(2)
                    };
                    Circle::new((x, y), 4, style)
                })
            }))?;
            legend.push((label, color, false));
        }
        legend.push((
            "filled: every seed reached the goal".to_string(),
            WHITE,
            false,
        ));
        legend.push(("hollow: only some seeds did".to_string(), WHITE, false));
        draw_side_legend(&legend_area, &legend)?;
    }
    Ok(())
}

/// One run of consecutive reached goals: the mean line with its shaded 95% CI band, or a CI
/// whisker for a single goal.
fn draw_reach_segment<DB: DrawingBackend>(
    chart: &mut ChartContext<DB, Cartesian2d<Slots, plotters::coord::types::RangedCoordf64>>,
    seg: &[(f64, f64, Option<f64>)],
    color: RGBColor,
) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    let ci = |c: Option<f64>| c.unwrap_or(0.0);
    if seg.len() > 1 {
        let band: Vec<(f64, f64)> = seg
            .iter()
            .map(|&(x, y, c)| (x, y + ci(c)))
            .chain(seg.iter().rev().map(|&(x, y, c)| (x, (y - ci(c)).max(0.0))))
            .collect();
        chart.draw_series(std::iter::once(Polygon::new(band, color.mix(0.15))))?;
        let line: Vec<(f64, f64)> = seg.iter().map(|&(x, y, _)| (x, y)).collect();
        chart.draw_series(LineSeries::new(line, color.stroke_width(2)))?;
    } else if let Some(&(x, y, Some(c))) = seg.first() {
        let (lo, hi, w) = ((y - c).max(0.0), y + c, 0.04);
        chart.draw_series([
            PathElement::new(vec![(x, lo), (x, hi)], color.stroke_width(1)),
            PathElement::new(vec![(x - w, lo), (x + w, lo)], color.stroke_width(1)),
            PathElement::new(vec![(x - w, hi), (x + w, hi)], color.stroke_width(1)),
        ])?;
    }
    Ok(())
}

fn has_timing(algos: &[(String, Vec<Run>)]) -> bool {
    algos
        .iter()
        .flat_map(|(_, runs)| runs.iter())
        .any(|r| !r.pg_time_ms.is_empty() || !r.update_time_ms.is_empty())
}

fn draw_timing<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    grouped: &Grouped,
    colors: &Colors,
) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE)?;
    let tasks: Vec<(&Task, &AlgoRuns)> = grouped.iter().filter(|(_, a)| has_timing(a)).collect();
    if tasks.is_empty() {
        root.draw(&Text::new(
            "No timing data: pg_time_ms / update_time_ms are empty in every run.",
            (30, 30),
            (FONT, 22),
        ))?;
        return Ok(());
    }
    let panels = root.split_evenly((tasks.len(), 2));
    type Metric = fn(&Run) -> &Vec<f64>;
    let metrics: [(&str, Metric); 2] = [
        ("computing time per policy gradient", |r| &r.pg_time_ms),
        ("update time per iteration", |r| &r.update_time_ms),
    ];
    for (i, (task, algos)) in tasks.iter().enumerate() {
        for (c, (title, metric)) in metrics.iter().enumerate() {
            let area = &panels[i * 2 + c];
            let boxes: Vec<_> = algos
                .iter()
                .map(|(algo, runs)| {
                    let vals: Vec<f64> = runs
                        .iter()
                        .flat_map(|r| metric(r).iter().copied())
                        .collect();
                    (algo.clone(), box_stats(&vals), vals)
                })
                .collect();
            let m = boxes.len();
            // Up to the largest value, but at most twice the highest whisker so that a few
            // extreme outliers don't squash the boxes.
            let top_whisker = boxes
                .iter()
                .filter_map(|(_, b, _)| b.map(|b| b.whisker_hi))
                .fold(0.0f64, f64::max);
            let top_value = boxes
                .iter()
                .flat_map(|(_, _, v)| v.iter().copied())
                .filter(|v| v.is_finite())
                .fold(0.0f64, f64::max);
            let mut ymax = top_value.min(2.0 * top_whisker).max(top_whisker) * 1.08;
            if ymax.is_nan() || ymax <= 0.0 {
                ymax = 1.0;
            }
            let ymin = boxes
                .iter()
                .filter_map(|(_, b, _)| b.map(|b| b.whisker_lo))
                .fold(0.0f64, f64::min);
            let names: Vec<String> = boxes.iter().map(|(a, _, _)| short_name(a)).collect();
            // Names that would overlap side by side (variants' labels) are set vertically.
            let longest = names.iter().map(|n| n.chars().count()).max().unwrap_or(0);
            let vertical = longest * 8 * m > area.dim_in_pixel().0 as usize * 3 / 4;
            let mut chart = ChartBuilder::on(area)
                .caption(format!("{}: {}", task.display_name(), title), (FONT, 22))
                .margin(14)
                .x_label_area_size(if vertical {
                    20 + 8 * longest as u32
                } else {
                    45
                })
                .y_label_area_size(70)
                .build_cartesian_2d(Slots(m), ymin..ymax)?;
            let name_of = |x: &f64| {
                let j = x.round();
                if vertical {
                    String::new() // drawn below, after the mesh
                } else if (x - j).abs() < 1e-6 && j >= 0.0 && (j as usize) < names.len() {
                    names[j as usize].clone()
                } else {
                    String::new()
                }
            };
            chart
                .configure_mesh()
                .disable_x_mesh()
                .x_label_formatter(&name_of)
                .y_desc("Wall-clock time [ms]")
                .y_label_formatter(&|y| fmt_num(*y))
                .label_style((FONT, 15))
                .axis_desc_style((FONT, 18))
                .draw()?;
            if vertical {
                let font = (FONT, 14).into_font().transform(FontTransform::Rotate90);
                let (bx, by) = area.get_base_pixel();
                for (j, name) in names.iter().enumerate() {
                    let (px, py) = chart.backend_coord(&(j as f64, ymin));
                    let at = (px - bx + 7, py - by + 8);
                    area.draw(&Text::new(name.clone(), at, font.clone()))?;
                }
            }
            for (j, (algo, b, vals)) in boxes.iter().enumerate() {
                let Some(b) = b else {
                    continue;
                };
                let color = colors.of(algo);
                let x = j as f64;
                let hw = 0.3;
                chart.draw_series([
                    Rectangle::new([(x - hw, b.q1), (x + hw, b.q3)], color.mix(0.35).filled()),
                    Rectangle::new([(x - hw, b.q1), (x + hw, b.q3)], color.stroke_width(2)),
                ])?;
                chart.draw_series([
                    PathElement::new(
                        vec![(x - hw, b.median), (x + hw, b.median)],
                        BLACK.stroke_width(2),
                    ),
                    PathElement::new(vec![(x, b.q3), (x, b.whisker_hi)], color.stroke_width(2)),
                    PathElement::new(vec![(x, b.q1), (x, b.whisker_lo)], color.stroke_width(2)),
                    PathElement::new(
                        vec![(x - hw / 2.0, b.whisker_hi), (x + hw / 2.0, b.whisker_hi)],
                        color.stroke_width(2),
                    ),
                    PathElement::new(
                        vec![(x - hw / 2.0, b.whisker_lo), (x + hw / 2.0, b.whisker_lo)],
                        color.stroke_width(2),
                    ),
                ])?;
                let outliers: Vec<f64> = vals
                    .iter()
                    .copied()
                    .filter(|v| {
                        (*v > b.whisker_hi || *v < b.whisker_lo) && *v <= ymax && *v >= ymin
                    })
                    .collect();
                // Thin out very many outliers (they overlap anyway).
                let stride = outliers.len().div_ceil(2000).max(1);
                chart.draw_series(
                    outliers
                        .iter()
                        .step_by(stride)
                        .map(|&v| Circle::new((x, v), 2, color.stroke_width(1))),
                )?;
            }
        }
    }
    Ok(())
}
