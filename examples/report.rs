//! Build the results report from a runs directory:
//! `cargo run --release --example report -- RUNS OUT`.

use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args_os().skip(1);
    let (Some(runs), Some(out)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: report RUNS_DIR OUT_DIR");
    };
    let summary = mixpg::report::write_report(&PathBuf::from(runs), &PathBuf::from(out))?;
    for s in &summary.skipped {
        eprintln!("warning: skipped {}: {}", s.dir.display(), s.reason);
    }
    for w in &summary.warnings {
        eprintln!("warning: {w}");
    }
    println!("{} runs used", summary.runs_used);
    for f in &summary.files {
        println!("wrote {}", f.display());
    }
    Ok(())
}
