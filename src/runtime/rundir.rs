//! A run directory: creating it, the lock against a second process, and choosing, loading and
//! pruning its checkpoints.

use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::checkpoint::{Checkpoint, sync_dir, write_atomic};
use crate::config::Config;
use crate::env::TaskSpec;

/// Name of the lock file inside a run directory.
pub const LOCK_FILE: &str = "lock";

/// Name of the file that describes a run's task (so that its report, evaluation and saved
/// policy need no code of the task).
pub const TASK_FILE: &str = "task.toml";

/// The task description a run directory holds, or `None` for a run written before mixpg
/// stored it (a built-in task, named by its config).
pub fn read_task_spec(run: &Path) -> Result<Option<TaskSpec>> {
    let path = run.join(TASK_FILE);
    if !path.exists() {
        return Ok(None);
    }
    let text =
        fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let spec: TaskSpec = toml::from_str(&text)
        .with_context(|| format!("invalid task description {}", path.display()))?;
    spec.validate()
        .with_context(|| format!("invalid task description {}", path.display()))?;
    Ok(Some(spec))
}

/// Create a new run directory (refusing one that already holds a run) and write its config
/// and task description.
pub(crate) fn init_run_dir(cfg: &Config, spec: &TaskSpec, out: &Path) -> Result<()> {
    if out.join("progress.csv").exists() {
        bail!(
            "{} already holds a run (progress.csv exists); use `mixpg resume --run {}` or another --out",
            out.display(),
            out.display()
        );
    }
    fs::create_dir_all(out.join("checkpoints"))
        .with_context(|| format!("cannot create {}", out.display()))?;
    let task = toml::to_string_pretty(spec).context("task description to TOML")?;
    write_atomic(&out.join(TASK_FILE), task.as_bytes())?;
    write_atomic(&out.join("config.toml"), cfg.to_toml().as_bytes())
}

/// The complete checkpoint directories of a run as `(iteration, directory)`, newest first
/// (none when the run has no `checkpoints/`).
pub fn checkpoints_newest_first(run: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let dir = run.join("checkpoints");
    if !dir.exists() {
        return Ok(Vec::new());
    }
    let mut all = Vec::new();
    for e in fs::read_dir(&dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let e = e?;
        let name = e.file_name().to_string_lossy().to_string();
        if let Some(k) = name
            .strip_prefix("ckpt-")
            .and_then(|s| s.parse::<u64>().ok())
        {
            all.push((k, e.path()));
        }
    }
    all.sort_by_key(|(k, _)| std::cmp::Reverse(*k));
    Ok(all)
}

/// The newest complete checkpoint directory of a run, if any.
pub fn latest_checkpoint(run: &Path) -> Result<Option<PathBuf>> {
    Ok(checkpoints_newest_first(run)?
        .into_iter()
        .next()
        .map(|(_, p)| p))
}

/// Load the newest checkpoint of a run that loads, warning on stderr about each newer one that
/// does not (corrupt or truncated); `None` when the run has no checkpoint at all.
pub fn load_latest_checkpoint(run: &Path) -> Result<Option<(PathBuf, Checkpoint)>> {
    let all = checkpoints_newest_first(run)?;
    if all.is_empty() {
        return Ok(None);
    }
    let mut errors = Vec::new();
    for (_, path) in all {
        match Checkpoint::load(&path) {
            Ok(ck) => {
                if !errors.is_empty() {
                    eprintln!("warning: using the older checkpoint {}", path.display());
                }
                return Ok(Some((path, ck)));
            }
            Err(e) => {
                eprintln!("warning: skipping checkpoint {}: {e:#}", path.display());
                errors.push(format!("{e:#}"));
            }
        }
    }
    bail!(
        "no checkpoint of {} can be loaded:\n  {}",
        run.display(),
        errors.join("\n  ")
    )
}

/// Keep the newest `keep` checkpoints in `dir` and remove leftover `ckpt-*.tmp` directories of
/// interrupted writes.
pub(crate) fn prune_checkpoints(dir: &Path, keep: usize) -> Result<()> {
    let mut all: Vec<(u64, PathBuf)> = Vec::new();
    for e in fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .filter_map(|e| e.ok())
    {
        let name = e.file_name().to_string_lossy().to_string();
        let Some(rest) = name.strip_prefix("ckpt-") else {
            continue;
        };
        if rest.ends_with(".tmp") {
            let p = e.path();
            fs::remove_dir_all(&p).with_context(|| format!("removing {}", p.display()))?;
        } else if let Ok(k) = rest.parse::<u64>() {
            all.push((k, e.path()));
        }
    }
    all.sort();
    let excess = all.len().saturating_sub(keep);
    for (_, p) in all.into_iter().take(excess) {
        fs::remove_dir_all(&p).with_context(|| format!("removing {}", p.display()))?;
    }
    Ok(())
}

/// The lock file of a run directory, held while a trainer writes to it and removed on drop.
#[derive(Debug)]
pub(crate) struct RunLock {
    path: PathBuf,
}

impl RunLock {
    /// Take the lock of `run`, or fail naming the process that holds it. A lock left by a
    /// process that no longer runs (a crash, kill -9) is taken over with a warning.
    pub(crate) fn acquire(run: &Path) -> Result<Self> {
        let path = run.join(LOCK_FILE);
        loop {
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(mut f) => {
                    f.write_all(format!("{}\n", std::process::id()).as_bytes())
                        .and_then(|_| f.sync_all())
                        .with_context(|| format!("writing {}", path.display()))?;
                    sync_dir(run)?;
                    return Ok(Self { path });
                }
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                    let text = fs::read_to_string(&path).unwrap_or_default();
                    let holder = text.trim().parse::<u32>().ok();
                    if let Some(pid) = holder.filter(|&p| process_running(p)) {
                        bail!(
                            "{} is in use by process {pid} (lock file {}); wait for it or stop it \
                             first, or delete the lock file if no mixpg process writes this run",
                            run.display(),
                            path.display()
                        );
                    }
                    eprintln!(
                        "warning: taking over the lock file {} left by process {} that no longer runs",
                        path.display(),
                        holder.map_or("?".to_string(), |p| p.to_string())
                    );
                    fs::remove_file(&path)
                        .with_context(|| format!("removing stale {}", path.display()))?;
                }
                Err(e) => {
                    return Err(e).with_context(|| format!("cannot create {}", path.display()));
                }
            }
        }
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// Whether a process with this id runs (Linux: `/proc/PID`; elsewhere assumed running).
fn process_running(pid: u32) -> bool {
    if cfg!(target_os = "linux") {
        Path::new("/proc").join(pid.to_string()).exists()
    } else {
        true
    }
}
