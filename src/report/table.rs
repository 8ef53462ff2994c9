//! Table I: asymptotic performance and convergence speed.
//!
//! * **Performance** of a seed is its best evaluation return over the run (the reference
//!   ploter's "best over iterations"). The table shows the mean over seeds ± the half-width of
//!   the 95% confidence interval of that mean, `t_{0.975, n-1} · s / √n` with the sample
//!   standard deviation `s` (see [`super::stats`]). With a single seed only the mean is shown.
//! * **Convergence speed** to a goal `g`: for each seed, the first evaluation iteration whose
//!   `eval_return_mean >= g`. The table shows the mean **over the seeds that reached `g`**
//!   (± 95% CI over those seeds when at least two reached it), followed by `(k/n)` when only
//!   `k` of the `n` seeds reached it, and `–` when no seed did.
//! * The best value of each column within a task is bold: the highest performance mean; for
//!   convergence the lowest mean among algorithms whose seeds **all** reached the goal.
//! * **Final**: the last evaluation return of each seed, mean ± 95% CI (a run that rises and
//!   falls has a final return far below its performance).
//!
//! `table1.md` layout, per task present:
//!
//! ```text
//! ## Path tracking
//!
//! | Algorithm | Seeds | Performance | Final | Iterations to -100 | Iterations to -30 | Iterations to -10 | Iterations to -5 |
//! | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |
//! | MPG-v1 | 5 | **-3.73 ± 1.16** | -4.10 ± 1.52 | **3000 ± 0** | 9000 ± 4898 | 11000 ± 7483 (4/5) | – |
//! ```
//!
//! Below each algorithm's rows (its variants too), the paper's own row for it, in italics
//! (path tracking and the pendulum; [`super::paper`]).
//!
//! `table1.csv`: one row per (task, algorithm), columns
//! `task,algo,algorithm,n_seeds,perf_mean,perf_ci95,perf_std,` then for `j = 1..=4`
//! `goal_j,reach_j_mean,reach_j_ci95,reach_j_seeds` (`reach_j_seeds` = number of seeds that
//! reached goal `j`), then `final_mean,final_ci95` (the last evaluation return of each seed),
//! `iterations` (the runs' length: the last evaluation iteration, the largest over the seeds)
//! and `variant` (for runs of one algorithm whose configs differ, the differing `key=value`s, e.g.
//! `collect_reset=every_step`; empty for none). `algo` is the algorithm key without the variant.
//! Undefined values (CI with fewer than 2 values, goal never reached) are
//! empty cells; numbers are written with full precision.

use std::fmt::Write as _;

use super::paper::{PaperRow, paper_row};
use super::stats::{MeanCi, mean_ci};
use super::{Run, SkippedRun, Task, algo_display_name};

/// Convergence to one goal for one algorithm.
#[derive(Debug, Clone, PartialEq)]
pub struct GoalReach {
    pub goal: f64,
    /// Per seed (same order as [`AlgoRow::seeds`]): first evaluation iteration with
    /// return `>= goal`, if any.
    pub per_seed: Vec<Option<u64>>,
    /// Number of seeds that reached the goal.
    pub reached: usize,
    /// Mean / CI of the reach iteration over the seeds that reached it (`n == reached`).
    pub stats: MeanCi,
}

impl GoalReach {
    /// Mean reach iteration over the seeds that reached the goal, `None` if none did.
    pub fn mean(&self) -> Option<f64> {
        (self.reached > 0).then_some(self.stats.mean)
    }
}

/// One algorithm's row of Table I.
#[derive(Debug, Clone, PartialEq)]
pub struct AlgoRow {
    /// Config key, e.g. `mpg_v1`.
    pub algo: String,
    /// Display name, e.g. `MPG-v1`.
    pub display: String,
    /// Seed directory names.
    pub seeds: Vec<String>,
    /// Best evaluation return of each seed.
    pub best_returns: Vec<f64>,
    /// Mean and 95% CI of `best_returns`.
    pub performance: MeanCi,
    /// Last evaluation return of each seed.
    pub final_returns: Vec<f64>,
    /// Mean and 95% CI of `final_returns`.
    pub final_return: MeanCi,
    /// One entry per goal of the task.
    pub reach: Vec<GoalReach>,
    /// The runs' length: the last evaluation iteration (the largest over the seeds).
    pub iterations: u64,
}

impl AlgoRow {
    /// The algorithm key without its variant label (`mpg_v1`).
    pub fn base_algo(&self) -> &str {
        self.algo.split_once(" [").map_or(&self.algo, |(b, _)| b)
    }

    /// The variant label (`collect_reset=every_step`), empty for none.
    pub fn variant(&self) -> &str {
        self.algo
            .split_once(" [")
            .map_or("", |(_, v)| v.strip_suffix(']').unwrap_or(v))
    }
}

/// Table I block of one task.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskTable {
    pub task: Task,
    pub goals: Vec<f64>,
    pub rows: Vec<AlgoRow>,
}

/// First evaluation iteration with return `>= goal` (evals sorted by iteration).
pub fn reach_iteration(evals: &[(u64, f64)], goal: f64) -> Option<u64> {
    evals.iter().find(|(_, r)| *r >= goal).map(|(it, _)| *it)
}

/// Best evaluation return of a run.
pub fn best_return(evals: &[(u64, f64)]) -> f64 {
    evals
        .iter()
        .map(|(_, r)| *r)
        .fold(f64::NEG_INFINITY, f64::max)
}

/// Compute the Table I block of one task from its runs grouped by algorithm.
pub fn task_table(task: Task, algos: &[(String, Vec<Run>)]) -> TaskTable {
    let goals = task.goals().to_vec();
    let rows = algos
        .iter()
        .map(|(algo, runs)| {
            let best_returns: Vec<f64> = runs.iter().map(|r| best_return(&r.evals)).collect();
            let final_returns: Vec<f64> = runs
                .iter()
                .map(|r| r.evals.last().map_or(f64::NEG_INFINITY, |e| e.1))
                .collect();
            let reach = goals
                .iter()
                .map(|&goal| {
                    let per_seed: Vec<Option<u64>> = runs
                        .iter()
                        .map(|r| reach_iteration(&r.evals, goal))
                        .collect();
                    let hit: Vec<f64> = per_seed.iter().flatten().map(|&i| i as f64).collect();
                    GoalReach {
                        goal,
                        reached: hit.len(),
                        stats: mean_ci(&hit),
                        per_seed,
                    }
                })
                .collect();
            AlgoRow {
                algo: algo.clone(),
                display: algo_display_name(algo),
                seeds: runs.iter().map(|r| r.seed.clone()).collect(),
                performance: mean_ci(&best_returns),
                best_returns,
                final_return: mean_ci(&final_returns),
                final_returns,
                reach,
                iterations: runs
                    .iter()
                    .filter_map(|r| r.evals.last().map(|e| e.0))
                    .max()
                    .unwrap_or(0),
            }
        })
        .collect();
    TaskTable { task, goals, rows }
}

fn fmt_goal(g: f64) -> String {
    format!("{g}")
}

fn fmt_perf(m: &MeanCi) -> String {
    match m.ci95 {
        Some(ci) => format!("{:.2} ± {:.2}", m.mean, ci),
        None => format!("{:.2}", m.mean),
    }
}

fn fmt_reach(g: &GoalReach, n_seeds: usize) -> String {
    if g.reached == 0 {
        return "–".to_string();
    }
    let mut s = match g.stats.ci95 {
        Some(ci) => format!("{:.0} ± {:.0}", g.stats.mean, ci),
        None => format!("{:.0}", g.stats.mean),
    };
    if g.reached < n_seeds {
        let _ = write!(s, " ({}/{})", g.reached, n_seeds);
    }
    s
}

fn bold(s: String, on: bool) -> String {
    if on { format!("**{s}**") } else { s }
}

/// Render `table1.md`.
pub fn render_markdown(
    tables: &[TaskTable],
    skipped: &[SkippedRun],
    warnings: &[String],
) -> String {
    let mut md = String::new();
    md.push_str("# Table I: asymptotic performance and convergence speed\n\n");
    md.push_str(
        "Performance: best evaluation return of each seed over its run; mean ± 95% confidence \
         interval over seeds (Student t, n−1 degrees of freedom; mean only with one seed).\n\n",
    );
    md.push_str(
        "Convergence speed: first evaluation iteration whose return is ≥ the goal, averaged over \
         the seeds that reached the goal (± 95% CI over those seeds when at least two did); \
         \"(k/n)\": only k of n seeds reached it; \"–\": no seed reached it.\n\n",
    );
    md.push_str(
        "Bold: best value of the column within the task (for convergence speed, only among \
         algorithms whose seeds all reached the goal).\n",
    );
    for t in tables {
        let _ = write!(
            md,
            "\n## {}\n\n| Algorithm | Seeds | Performance | Final |",
            t.task.display_name()
        );
        for g in &t.goals {
            let _ = write!(md, " Iterations to {} |", fmt_goal(*g));
        }
        md.push_str("\n| --- | ---: | ---: | ---: |");
        for _ in &t.goals {
            md.push_str(" ---: |");
        }
        md.push('\n');

        let best_perf = t
            .rows
            .iter()
            .map(|r| r.performance.mean)
            .fold(f64::NEG_INFINITY, f64::max);
        let best_reach: Vec<Option<f64>> = (0..t.goals.len())
            .map(|j| {
                t.rows
                    .iter()
                    .filter(|r| r.reach[j].reached == r.seeds.len() && r.reach[j].reached > 0)
                    .map(|r| r.reach[j].stats.mean)
                    .min_by(f64::total_cmp)
            })
            .collect();
        for (i, r) in t.rows.iter().enumerate() {
            let n = r.seeds.len();
            let _ = write!(
                md,
                "| {} | {} | {} | {} |",
                r.display,
                n,
                bold(fmt_perf(&r.performance), r.performance.mean == best_perf),
                fmt_perf(&r.final_return)
            );
            for (j, g) in r.reach.iter().enumerate() {
                let is_best = g.reached == n && best_reach[j] == Some(g.stats.mean);
                let _ = write!(md, " {} |", bold(fmt_reach(g, n), is_best));
            }
            md.push('\n');
            let last_of_algo = t
                .rows
                .get(i + 1)
                .is_none_or(|next| next.base_algo() != r.base_algo());
            if let Some(p) = paper_row(t.task.name(), r.base_algo()).filter(|_| last_of_algo) {
                md.push_str(&paper_markdown_row(p, t.goals.len()));
            }
        }
    }
    if !skipped.is_empty() {
        md.push_str("\n## Skipped runs\n\n");
        for s in skipped {
            let _ = writeln!(md, "- `{}`: {}", s.dir.display(), s.reason);
        }
    }
    if !warnings.is_empty() {
        md.push_str("\n## Warnings\n\n");
        for w in warnings {
            let _ = writeln!(md, "- {w}");
        }
    }
    md
}

/// The paper's row of an algorithm, in italics below the algorithm's own rows.
fn paper_markdown_row(p: &PaperRow, goals: usize) -> String {
    let cell = |(m, ci): (f64, f64), digits: usize| format!("*{m:.digits$} ± {ci:.digits$}*");
    let mut row = format!(
        "| *{} (paper, 100k)* | 5 | {} | – |",
        algo_display_name(p.algo),
        cell(p.performance, 2)
    );
    for j in 0..goals {
        let _ = write!(
            row,
            " {} |",
            p.reach[j].map_or("–".to_string(), |c| cell(c, 0))
        );
    }
    row.push('\n');
    row
}

/// Quote a CSV field if it contains a comma, quote or newline.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn opt(v: Option<f64>) -> String {
    v.map(|x| format!("{x}")).unwrap_or_default()
}

/// Number of goal column groups in `table1.csv`.
pub const CSV_GOALS: usize = 4;

/// Render `table1.csv`.
pub fn render_csv(tables: &[TaskTable]) -> String {
    let mut csv = String::from("task,algo,algorithm,n_seeds,perf_mean,perf_ci95,perf_std");
    for j in 1..=CSV_GOALS {
        let _ = write!(
            csv,
            ",goal_{j},reach_{j}_mean,reach_{j}_ci95,reach_{j}_seeds"
        );
    }
    csv.push_str(",final_mean,final_ci95,iterations,variant\n");
    for t in tables {
        for r in &t.rows {
            let _ = write!(
                csv,
                "{},{},{},{},{},{},{}",
                t.task.name(),
                csv_field(r.base_algo()),
                csv_field(&r.display),
                r.seeds.len(),
                r.performance.mean,
                opt(r.performance.ci95),
                opt(r.performance.std)
            );
            for j in 0..CSV_GOALS {
                match r.reach.get(j) {
                    Some(g) => {
                        let _ = write!(
                            csv,
                            ",{},{},{},{}",
                            g.goal,
                            opt(g.mean()),
                            opt(g.stats.ci95),
                            g.reached
                        );
                    }
                    None => csv.push_str(",,,,"),
                }
            }
            let _ = writeln!(
                csv,
                ",{},{},{},{}",
                r.final_return.mean,
                opt(r.final_return.ci95),
                r.iterations,
                csv_field(r.variant())
            );
        }
    }
    csv
}
