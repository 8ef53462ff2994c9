//! `mixpg bench` and `mixpg report`: thin shells over [`crate::grid`] and [`crate::report`].

use std::path::PathBuf;

use anyhow::Result;

pub use crate::grid::{GridSummary, Preset, RunStatus, report_lines, run_grid, run_grid_with};
use crate::report::{ReportSummary, write_report_of};

/// Arguments of `mixpg bench` (the library's grid options).
pub type BenchArgs = crate::grid::GridOptions;

/// Arguments of `mixpg report`.
#[derive(Debug, Clone, clap::Args)]
pub struct ReportArgs {
    /// Runs directory, laid out as RUNS/<task>/<algo>/seed<N>/ (e.g. a bench --out); repeat
    /// it to report several grids together (runs of one algorithm whose configs differ get
    /// rows labelled by the differing key).
    #[arg(long, required = true)]
    pub runs: Vec<PathBuf>,
    /// Output directory of the tables and figures.
    #[arg(long)]
    pub out: PathBuf,
}

/// `mixpg report`: write the report and print its summary.
pub fn report(args: &ReportArgs) -> Result<ReportSummary> {
    let r = write_report_of(&args.runs, &args.out)?;
    for l in report_lines(&r) {
        println!("{l}");
    }
    Ok(r)
}
