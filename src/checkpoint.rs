//! Checkpoints: every network, target network, optimiser state, RNG state and counter of a run,
//! saved to a directory.
//!
//! Layout of one checkpoint directory:
//! - `meta.json`: format version, counters, RNG states, optimiser hyper-parameters and steps,
//!   and an index of the arrays in `arrays.bin` (name, shape, offset) with its FNV-1a checksum;
//! - `arrays.bin`: the raw little-endian f32 arrays;
//! - `meta.fnv1a`: the FNV-1a checksum of `meta.json` (16 hex digits).
//!
//! A checkpoint is written to `NAME.tmp/`, flushed to disk (files and directory) and renamed to
//! `NAME/` only once complete, and the parent directory is flushed after the rename, so neither
//! a crash nor a power loss leaves a half-written checkpoint under the final name. Loading
//! validates both checksums, the sizes and the shapes (a corrupt shape is an error, never an
//! overflow), and errors name the file and the problem.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use serde::{Deserialize, Serialize};

use crate::nn::{Adam, AdamConfig, LrSchedule, ParamSet};

/// Version of the on-disk format.
pub const FORMAT_VERSION: u32 = 1;
const META: &str = "meta.json";
const ARRAYS: &str = "arrays.bin";
const META_SUM: &str = "meta.fnv1a";

#[derive(Debug, Clone, Serialize, Deserialize)]
struct ArrayEntry {
    name: String,
    shape: Vec<usize>,
    offset: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct AdamMeta {
    config: AdamConfig,
    schedule: LrSchedule,
    step: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Meta {
    format_version: u32,
    counters: BTreeMap<String, u64>,
    json: BTreeMap<String, serde_json::Value>,
    adams: BTreeMap<String, AdamMeta>,
    arrays: Vec<ArrayEntry>,
    arrays_len: u64,
    arrays_fnv1a: u64,
}

/// An in-memory checkpoint: named counters, JSON values (RNG states, small structs), parameter
/// sets, Adam states and raw arrays.
#[derive(Debug, Clone, Default)]
pub struct Checkpoint {
    counters: BTreeMap<String, u64>,
    json: BTreeMap<String, serde_json::Value>,
    adams: BTreeMap<String, AdamMeta>,
    arrays: BTreeMap<String, (Vec<usize>, Vec<f32>)>,
    source: Option<PathBuf>,
}

impl Checkpoint {
    /// An empty checkpoint.
    pub fn new() -> Self {
        Self::default()
    }

    /// Store a counter.
    pub fn set_counter(&mut self, name: &str, value: u64) {
        self.counters.insert(name.to_string(), value);
    }

    /// Read a counter.
    pub fn counter(&self, name: &str) -> Result<u64> {
        self.counters
            .get(name)
            .copied()
            .with_context(|| format!("{}: missing counter `{name}`", self.origin()))
    }

    /// Store any serialisable value (RNG states, small structs) as JSON.
    pub fn set_json<T: Serialize>(&mut self, name: &str, value: &T) -> Result<()> {
        self.json
            .insert(name.to_string(), serde_json::to_value(value)?);
        Ok(())
    }

    /// Read a JSON value back.
    pub fn json<T: for<'de> Deserialize<'de>>(&self, name: &str) -> Result<T> {
        let v = self
            .json
            .get(name)
            .with_context(|| format!("{}: missing entry `{name}`", self.origin()))?;
        serde_json::from_value(v.clone())
            .with_context(|| format!("{}: entry `{name}` is malformed", self.origin()))
    }

    /// Store a raw array with its shape.
    pub fn set_array(&mut self, name: &str, shape: Vec<usize>, data: Vec<f32>) {
        assert_eq!(shape.iter().product::<usize>(), data.len());
        self.arrays.insert(name.to_string(), (shape, data));
    }

    /// Read a raw array, checking its shape.
    pub fn array(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let (s, d) = self
            .arrays
            .get(name)
            .with_context(|| format!("{}: missing array `{name}`", self.origin()))?;
        ensure!(
            s == shape,
            "{}: array `{name}` has shape {s:?}, expected {shape:?}",
            self.origin()
        );
        Ok(d.clone())
    }

    /// Store a parameter set under `name`.
    pub fn set_params(&mut self, name: &str, params: &ParamSet) {
        for (i, (s, v)) in params.shapes().iter().zip(params.values()).enumerate() {
            self.set_array(&format!("{name}/{i}"), s.to_vec(), v.clone());
        }
    }

    /// Load a parameter set shaped like `like`; errors name the tensor whose shape differs.
    pub fn params(&self, name: &str, like: &ParamSet) -> Result<ParamSet> {
        let mut values = Vec::new();
        for (i, s) in like.shapes().iter().enumerate() {
            values.push(self.array(&format!("{name}/{i}"), s)?);
        }
        ensure!(
            !self
                .arrays
                .contains_key(&format!("{name}/{}", like.shapes().len())),
            "{}: network `{name}` has more tensors than expected ({})",
            self.origin(),
            like.shapes().len()
        );
        Ok(ParamSet::new(like.shapes().to_vec(), values))
    }

    /// Store an Adam state under `name`.
    pub fn set_adam(&mut self, name: &str, adam: &Adam) {
        self.adams.insert(
            name.to_string(),
            AdamMeta {
                config: adam.config.clone(),
                schedule: adam.schedule.clone(),
                step: adam.step,
            },
        );
        for (i, (m, v)) in adam.m.iter().zip(&adam.v).enumerate() {
            self.set_array(&format!("{name}/m/{i}"), vec![m.len()], m.clone());
            self.set_array(&format!("{name}/v/{i}"), vec![v.len()], v.clone());
        }
    }

    /// Load an Adam state for the parameters `params`.
    pub fn adam(&self, name: &str, params: &ParamSet) -> Result<Adam> {
        let meta = self
            .adams
            .get(name)
            .with_context(|| format!("{}: missing optimiser `{name}`", self.origin()))?;
        let mut adam = Adam::new(meta.config.clone(), meta.schedule.clone(), params);
        adam.step = meta.step;
        for (i, v) in params.values().iter().enumerate() {
            adam.m[i] = self.array(&format!("{name}/m/{i}"), &[v.len()])?;
            adam.v[i] = self.array(&format!("{name}/v/{i}"), &[v.len()])?;
        }
        Ok(adam)
    }

    fn origin(&self) -> String {
        match &self.source {
            Some(p) => format!("checkpoint {}", p.display()),
            None => "checkpoint".to_string(),
        }
    }

    /// Write atomically to `dir` (via `dir.tmp` and a rename); an existing `dir` is replaced.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let tmp = tmp_path(dir);
        if tmp.exists() {
            fs::remove_dir_all(&tmp).with_context(|| format!("removing {}", tmp.display()))?;
        }
        fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        let mut entries = Vec::new();
        let mut bytes: Vec<u8> = Vec::new();
        for (name, (shape, data)) in &self.arrays {
            entries.push(ArrayEntry {
                name: name.clone(),
                shape: shape.clone(),
                offset: bytes.len() as u64,
            });
            for x in data {
                bytes.extend_from_slice(&x.to_le_bytes());
            }
        }
        let meta = Meta {
            format_version: FORMAT_VERSION,
            counters: self.counters.clone(),
            json: self.json.clone(),
            adams: self.adams.clone(),
            arrays: entries,
            arrays_len: bytes.len() as u64,
            arrays_fnv1a: fnv1a(&bytes),
        };
        let meta_text = serde_json::to_string_pretty(&meta)?;
        write_synced(&tmp.join(ARRAYS), &bytes)?;
        write_synced(&tmp.join(META), meta_text.as_bytes())?;
        write_synced(
            &tmp.join(META_SUM),
            format!("{:016x}\n", fnv1a(meta_text.as_bytes())).as_bytes(),
        )?;
        sync_dir(&tmp)?;
        if dir.exists() {
            fs::remove_dir_all(dir).with_context(|| format!("removing old {}", dir.display()))?;
        }
        fs::rename(&tmp, dir)
            .with_context(|| format!("renaming {} to {}", tmp.display(), dir.display()))?;
        sync_parent(dir)
    }

    /// Read and validate a checkpoint directory.
    pub fn load(dir: &Path) -> Result<Self> {
        let meta_path = dir.join(META);
        let text = fs::read_to_string(&meta_path)
            .with_context(|| format!("cannot read checkpoint file {}", meta_path.display()))?;
        // Checkpoints written before the checksum file existed are read without it.
        let sum_path = dir.join(META_SUM);
        if sum_path.exists() {
            let sum = fs::read_to_string(&sum_path)
                .with_context(|| format!("cannot read checkpoint file {}", sum_path.display()))?;
            ensure!(
                u64::from_str_radix(sum.trim(), 16).ok() == Some(fnv1a(text.as_bytes())),
                "checkpoint file {} is corrupt: checksum mismatch (per {})",
                meta_path.display(),
                sum_path.display()
            );
        }
        let meta: Meta = serde_json::from_str(&text).with_context(|| {
            format!(
                "checkpoint file {} is corrupt (not valid checkpoint JSON)",
                meta_path.display()
            )
        })?;
        if meta.format_version != FORMAT_VERSION {
            bail!(
                "checkpoint file {} has format version {}, this mixpg reads version {}",
                meta_path.display(),
                meta.format_version,
                FORMAT_VERSION
            );
        }
        let bin_path = dir.join(ARRAYS);
        let bytes = fs::read(&bin_path)
            .with_context(|| format!("cannot read checkpoint file {}", bin_path.display()))?;
        ensure!(
            bytes.len() as u64 == meta.arrays_len,
            "checkpoint file {} is corrupt: {} bytes, expected {}",
            bin_path.display(),
            bytes.len(),
            meta.arrays_len
        );
        ensure!(
            fnv1a(&bytes) == meta.arrays_fnv1a,
            "checkpoint file {} is corrupt: checksum mismatch",
            bin_path.display()
        );
        let mut arrays = BTreeMap::new();
        for e in &meta.arrays {
            let end = e
                .shape
                .iter()
                .try_fold(4usize, |acc, &d| acc.checked_mul(d))
                .and_then(|size| usize::try_from(e.offset).ok()?.checked_add(size));
            let start = e.offset as usize;
            let end = match end {
                Some(end) if end <= bytes.len() => end,
                _ => bail!(
                    "checkpoint file {} is corrupt: array `{}` (shape {:?}, offset {}) runs past \
                     the end",
                    meta_path.display(),
                    e.name,
                    e.shape,
                    e.offset
                ),
            };
            let data = bytes[start..end]
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            arrays.insert(e.name.clone(), (e.shape.clone(), data));
        }
        Ok(Self {
            counters: meta.counters,
            json: meta.json,
            adams: meta.adams,
            arrays,
            source: Some(dir.to_path_buf()),
        })
    }
}

fn tmp_path(dir: &Path) -> PathBuf {
    let mut name = dir.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    dir.with_file_name(name)
}

/// Write a file and flush it to disk.
fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

/// Write `bytes` to `path` atomically: a temporary file in the same directory, then a rename,
/// then the directory is flushed to disk.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    let tmp = path.with_file_name(name);
    write_synced(&tmp, bytes)?;
    fs::rename(&tmp, path)
        .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
    sync_parent(path)
}

/// Flush a directory's entries to disk (after creating or renaming something in it).
pub fn sync_dir(dir: &Path) -> Result<()> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("flushing directory {}", dir.display()))
}

fn sync_parent(path: &Path) -> Result<()> {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => sync_dir(p),
        _ => sync_dir(Path::new(".")),
    }
}

/// 64-bit FNV-1a hash (integrity check, not cryptographic).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}
