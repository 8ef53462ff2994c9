//! TensorBoard event files: every `progress.csv` row as scalars at its iteration, and the
//! resolved config as text, written next to `progress.csv` (`train.tensorboard`, on by
//! default).
//!
//! The format is TensorFlow's record file of `Event` protobufs: each record is the data length
//! (`u64` LE), the masked CRC-32C of those 8 bytes, the data, and the masked CRC-32C of the
//! data; the first event holds `file_version = "brain.Event:2"`. Each session (a run, then each
//! resume) writes a file of its own, `events.out.tfevents.<unix seconds>.<session>.mixpg`, and
//! TensorBoard merges the files of a directory in name order. A resume first cuts the earlier
//! files to the steps `≤` the checkpoint's iteration (rewritten under a temporary name, then
//! renamed), as `progress.csv` is cut, so that no step is written twice; each session writes
//! the config at the step it starts from.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};

use super::progress::Row;
use super::protobuf::{Field, Message, fields};
use crate::checkpoint::write_atomic;
use crate::config::Config;

/// The TensorBoard tag of each `progress.csv` column after `iteration` (which is the step),
/// in column order.
pub const TAGS: [(&str, &str); 18] = [
    ("wall_s", "time/wall_s"),
    ("env_steps", "env/steps"),
    ("eval_return_mean", "eval/return_mean"),
    ("eval_return_std", "eval/return_std"),
    ("w_data", "weights/w_data"),
    ("w_model", "weights/w_model"),
    ("q_loss", "loss/q"),
    ("policy_loss", "loss/policy"),
    ("pg_time_ms", "time/pg_ms"),
    ("update_time_ms", "time/update_ms"),
    ("nonfinite_skipped", "diagnostics/nonfinite_skipped"),
    ("staleness", "diagnostics/staleness"),
    ("terminated_frac", "diagnostics/terminated_frac"),
    ("q_grad_norm", "diagnostics/q_grad_norm"),
    ("pi_grad_norm", "diagnostics/pi_grad_norm"),
    ("model_error", "diagnostics/model_error"),
    ("model_disagreement", "diagnostics/model_disagreement"),
    ("model_fit_ms", "time/model_fit_ms"),
];

/// The tag of the resolved config (a text summary).
pub const CONFIG_TAG: &str = "config";

/// Name prefix of event files (TensorBoard reads the files whose name contains `tfevents`).
const PREFIX: &str = "events.out.tfevents.";

/// The values of a row's columns after `iteration`, in the order of [`TAGS`] (`None`: an
/// empty cell, not written).
fn values(row: &Row) -> [Option<f64>; 18] {
    [
        Some(row.wall_s),
        Some(row.env_steps as f64),
        row.eval_mean,
        row.eval_std,
        Some(row.w_data),
        Some(row.w_model),
        row.q_loss,
        row.policy_loss,
        row.pg_time_ms,
        row.update_time_ms,
        Some(row.nonfinite_skipped as f64),
        row.staleness,
        row.terminated_frac,
        row.q_grad_norm,
        row.pi_grad_norm,
        row.model_error,
        row.model_disagreement,
        row.model_fit_ms,
    ]
}

const fn crc32c_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut bit = 0;
        while bit < 8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0x82f6_3b78
            } else {
                c >> 1
            };
            bit += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
}

static CRC32C: [u32; 256] = crc32c_table();

/// CRC-32C (Castagnoli) of `data`.
fn crc32c(data: &[u8]) -> u32 {
    !data.iter().fold(!0u32, |c, &b| {
        CRC32C[((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8)
    })
}

/// The masked CRC-32C of TensorFlow's record format.
fn masked_crc32c(data: &[u8]) -> u32 {
    crc32c(data).rotate_right(15).wrapping_add(0xa282_ead8)
}

/// `data` framed as one record.
fn record(data: &[u8]) -> Vec<u8> {
    let len = (data.len() as u64).to_le_bytes();
    let mut r = Vec::with_capacity(data.len() + 16);
    r.extend_from_slice(&len);
    r.extend_from_slice(&masked_crc32c(&len).to_le_bytes());
    r.extend_from_slice(data);
    r.extend_from_slice(&masked_crc32c(data).to_le_bytes());
    r
}

/// The records of an event file's bytes, each whole (framing and both checksums checked);
/// reading stops at the first damaged or truncated record.
fn records(bytes: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    while let Some(head) = bytes.get(pos..pos + 12) {
        let len_bytes: [u8; 8] = head[..8].try_into().expect("8 bytes");
        let crc = u32::from_le_bytes(head[8..].try_into().expect("4 bytes"));
        let Ok(len) = usize::try_from(u64::from_le_bytes(len_bytes)) else {
            break;
        };
        let Some(end) = (pos + 12).checked_add(len).and_then(|e| e.checked_add(4)) else {
            break;
        };
        let (Some(data), Some(tail)) = (bytes.get(pos + 12..end - 4), bytes.get(end - 4..end))
        else {
            break;
        };
        let data_crc = u32::from_le_bytes(tail.try_into().expect("4 bytes"));
        if crc != masked_crc32c(&len_bytes) || data_crc != masked_crc32c(data) {
            break;
        }
        out.push(data);
        pos = end;
    }
    out
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// An `Event` protobuf: `wall_time` (1), `step` (2) and one more field.
fn event(step: u64, rest: impl FnOnce(Message) -> Message) -> Vec<u8> {
    let m = Message::new().double(1, now()).int(2, step as i64);
    rest(m).into_bytes()
}

/// The first event of a file.
fn version_event() -> Vec<u8> {
    event(0, |m| m.string(3, "brain.Event:2"))
}

/// An event holding `Summary { value: [Value { tag, simple_value }] }` for each value.
fn scalars_event(step: u64, scalars: &[(&str, f32)]) -> Vec<u8> {
    event(step, |m| {
        let summary = scalars.iter().fold(Message::new(), |s, (tag, v)| {
            s.message(1, Message::new().string(1, tag).float(2, *v))
        });
        m.message(5, summary)
    })
}

/// An event holding a text summary: a scalar `DT_STRING` tensor (`dtype` 7) under metadata
/// naming the `text` plugin.
fn text_event(step: u64, tag: &str, text: &str) -> Vec<u8> {
    event(step, |m| {
        let plugin = Message::new().message(1, Message::new().string(1, "text"));
        let tensor = Message::new()
            .int(1, 7)
            .message(2, Message::new())
            .bytes(8, text.as_bytes());
        let value = Message::new()
            .string(1, tag)
            .message(9, plugin)
            .message(8, tensor);
        m.message(5, Message::new().message(1, value))
    })
}

/// The config as Markdown (TensorBoard renders text summaries as Markdown): a code block.
fn config_text(cfg: &Config) -> String {
    cfg.to_toml()
        .lines()
        .map(|l| format!("    {l}\n"))
        .collect()
}

/// The event files of a run directory, in the order TensorBoard reads them (by name).
fn event_files(run: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for e in fs::read_dir(run).with_context(|| format!("cannot list {}", run.display()))? {
        let e = e?;
        let name = e.file_name().to_string_lossy().to_string();
        if name.starts_with(PREFIX) && !name.ends_with(".tmp") && e.path().is_file() {
            files.push(e.path());
        }
    }
    files.sort();
    Ok(files)
}

/// The session's event file: rows are appended as they are written to `progress.csv`.
pub(crate) struct TensorBoardLog {
    file: File,
    path: PathBuf,
}

impl TensorBoardLog {
    /// The event file of a new run in `run`, starting with the config; event files of an
    /// earlier run there without `progress.csv` (cleared) are removed.
    pub(crate) fn create(run: &Path, cfg: &Config) -> Result<Self> {
        for stale in event_files(run)? {
            fs::remove_file(&stale).with_context(|| format!("removing {}", stale.display()))?;
        }
        let mut log = Self::open(run)?;
        log.append(&text_event(0, CONFIG_TAG, &config_text(cfg)))?;
        Ok(log)
    }

    /// A new event file for a session resumed at iteration `last`, with the config at that
    /// step, after cutting the earlier files to the rows `≤ last` (and the configs `< last`).
    pub(crate) fn resume(run: &Path, last: u64, cfg: &Config) -> Result<Self> {
        for path in event_files(run)? {
            cut_after(&path, last)?;
        }
        let mut log = Self::open(run)?;
        log.append(&text_event(last, CONFIG_TAG, &config_text(cfg)))?;
        Ok(log)
    }

    fn open(run: &Path) -> Result<Self> {
        let earlier = event_files(run)?;
        // Named after the newest file even if the clock went back, so that the name order
        // stays the session order.
        let newest = earlier
            .iter()
            .filter_map(|p| {
                let name = p.file_name()?.to_str()?;
                name.strip_prefix(PREFIX)?
                    .split('.')
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
            .max()
            .unwrap_or(0);
        let secs = (now() as u64).max(newest);
        let path = run.join(format!("{PREFIX}{secs:010}.{:04}.mixpg", earlier.len()));
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        let mut log = Self { file, path };
        log.append(&version_event())?;
        Ok(log)
    }

    fn append(&mut self, event: &[u8]) -> Result<()> {
        self.file
            .write_all(&record(event))
            .with_context(|| format!("writing {}", self.path.display()))
    }

    /// Append a row's non-empty cells as scalars at its iteration.
    pub(crate) fn write(&mut self, row: &Row) -> Result<()> {
        let scalars: Vec<(&str, f32)> = TAGS
            .iter()
            .zip(values(row))
            .filter_map(|((_, tag), v)| v.map(|v| (*tag, v as f32)))
            .collect();
        self.append(&scalars_event(row.iteration, &scalars))
    }

    /// Flush the events written so far to disk (before each checkpoint).
    pub(crate) fn sync(&self) -> Result<()> {
        self.file
            .sync_data()
            .with_context(|| format!("flushing {}", self.path.display()))
    }
}

/// Keep the events of `path` with a step `≤ last`, except a config at `last` (the resumed
/// session writes its own), rewriting the file under a temporary name then renaming it when
/// anything goes (a torn last record too).
fn cut_after(path: &Path, last: u64) -> Result<()> {
    let bytes = fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut kept = Vec::new();
    for data in records(&bytes) {
        let (step, tags) =
            step_and_tags(data).with_context(|| format!("{}: malformed event", path.display()))?;
        let config = tags.contains(&CONFIG_TAG.as_bytes());
        if step < last || (step == last && !config) {
            kept.extend_from_slice(&record(data));
        }
    }
    if kept.len() != bytes.len() {
        write_atomic(path, &kept)?;
    }
    Ok(())
}

/// An event's step (0 when absent) and the tags of its summary values.
fn step_and_tags(event: &[u8]) -> Result<(u64, Vec<&[u8]>)> {
    let mut step = 0;
    let mut tags = Vec::new();
    for (number, field) in fields(event)? {
        match (number, field) {
            (2, Field::Varint(s)) => step = s,
            (5, Field::Bytes(summary)) => {
                for (n, value) in fields(summary)? {
                    if let (1, Field::Bytes(value)) = (n, value) {
                        for (n, tag) in fields(value)? {
                            if let (1, Field::Bytes(tag)) = (n, tag) {
                                tags.push(tag);
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }
    Ok((step, tags))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::progress::COLUMNS;

    #[test]
    fn crc32c_matches_the_rfc_3720_vectors_and_masks_as_tensorflow() {
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
        assert_eq!(crc32c(&[0u8; 32]), 0x8a91_36aa);
        assert_eq!(crc32c(&[0xffu8; 32]), 0x62a8_ab43);
        let ascending: Vec<u8> = (0..32).collect();
        assert_eq!(crc32c(&ascending), 0x46dd_794e);
        // TensorFlow's mask: rotate right by 15, add 0xa282ead8 (values from TensorBoard's own
        // Python implementation; a3 7f 4b 22 follows the length 24 that opens TensorFlow's
        // event files).
        assert_eq!(masked_crc32c(b"123456789"), 0xc78a_b0e5);
        assert_eq!(masked_crc32c(&24u64.to_le_bytes()), 0x224b_7fa3);
        assert_eq!(masked_crc32c(&0u64.to_le_bytes()), 0x0798_0329);
    }

    #[test]
    fn every_column_but_the_iteration_has_a_tag_and_its_value() {
        let columns: Vec<&str> = TAGS.iter().map(|(c, _)| *c).collect();
        assert_eq!(columns, COLUMNS[1..]);
        // The values come in the CSV's order: a row of distinct values read back from CSV.
        let row = Row {
            iteration: 7,
            wall_s: 1.5,
            env_steps: 2,
            eval_mean: Some(3.0),
            eval_std: Some(4.0),
            w_data: 5.0,
            w_model: 6.0,
            q_loss: Some(7.0),
            policy_loss: Some(8.0),
            pg_time_ms: Some(9.0),
            update_time_ms: Some(10.0),
            nonfinite_skipped: 11,
            staleness: Some(12.0),
            terminated_frac: Some(13.0),
            q_grad_norm: Some(14.0),
            pi_grad_norm: Some(15.0),
            model_error: Some(16.0),
            model_disagreement: Some(17.0),
            model_fit_ms: Some(18.0),
        };
        let csv: Vec<Option<f64>> = row
            .to_csv()
            .split(',')
            .skip(1)
            .map(|c| c.parse().ok())
            .collect();
        assert_eq!(csv, values(&row));
    }

    #[test]
    fn a_resume_cuts_the_steps_after_its_checkpoint_and_keeps_the_rest() {
        let dir = std::env::temp_dir().join(format!("mixpg-tb-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let cfg =
            Config::from_toml_str("[task]\nname = \"lqr\"\n[algo]\nname = \"td3\"\n", &[]).unwrap();
        let mut log = TensorBoardLog::create(&dir, &cfg).unwrap();
        for k in 0..10 {
            log.write(&Row {
                iteration: k,
                ..Row::default()
            })
            .unwrap();
        }
        drop(log);
        let first = event_files(&dir).unwrap();
        assert_eq!(first.len(), 1);
        // A torn last record (a crash) goes too.
        let mut f = OpenOptions::new().append(true).open(&first[0]).unwrap();
        f.write_all(&[1, 2, 3]).unwrap();
        let mut log = TensorBoardLog::resume(&dir, 4, &cfg).unwrap();
        log.write(&Row {
            iteration: 5,
            ..Row::default()
        })
        .unwrap();
        drop(log);
        let files = event_files(&dir).unwrap();
        assert_eq!(files.len(), 2);
        assert_eq!(files[0], first[0]);
        let steps = |p: &Path| -> Vec<u64> {
            records(&fs::read(p).unwrap())
                .iter()
                .map(|d| step_and_tags(d).unwrap().0)
                .collect()
        };
        // version, config, rows 0..=4; then the new file: version, config at 4 and row 5.
        assert_eq!(steps(&files[0]), [0, 0, 0, 1, 2, 3, 4]);
        assert_eq!(steps(&files[1]), [0, 4, 5]);
        let second = records(&fs::read(&files[1]).unwrap())[1].to_vec();
        assert_eq!(step_and_tags(&second).unwrap().1, [CONFIG_TAG.as_bytes()]);
        // Resumed at 4 again: the second session's config at 4 goes, its row 5 too.
        drop(TensorBoardLog::resume(&dir, 4, &cfg).unwrap());
        let files = event_files(&dir).unwrap();
        assert_eq!(files.len(), 3);
        assert_eq!(steps(&files[1]), [0]);
        assert_eq!(steps(&files[2]), [0, 4]);
        assert!(
            fs::read_dir(&dir)
                .unwrap()
                .all(|e| { !e.unwrap().file_name().to_string_lossy().ends_with(".tmp") })
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
