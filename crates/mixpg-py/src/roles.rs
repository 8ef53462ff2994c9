//! The roles of the asynchronous architecture for the Ray driver (`mixpg.ray`): the optimizer
//! on the driver, actors, buffers and learner groups (learner threads of the thread runtime)
//! in Ray actors; a single learner for tests and benchmarks. Everything that crosses between
//! processes is the library's byte encodings, handed out as 1-d uint8 numpy arrays (moved from
//! Rust without a copy; Ray pickles them out of band, so a role reads them straight from the
//! object store) and taken as such arrays or `bytes` (read in place, never copied into Rust);
//! heavy calls release the GIL and run in a one-thread rayon pool per object (no intra-op
//! parallelism, as in the thread runtime).

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use numpy::{PyArray1, PyReadonlyArray1};
use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

use mixpg::config::Config;
use mixpg::env::lookup;
use mixpg::runtime::asynchronous;
use mixpg::runtime::roles::{
    ActorCore, BufferCore, Experience, LearnerCore, RuntimeCounters, Snapshot, TaggedGrads,
    WorkerStream, batch_from_bytes, batch_to_bytes, replay_from_bytes, replay_to_bytes,
    worker_seed,
};

use crate::runtime_err;

/// A role object behind a lock, with its one-thread rayon pool.
struct Held<T> {
    inner: Mutex<T>,
    pool: rayon::ThreadPool,
}

impl<T: Send> Held<T> {
    fn new(inner: T) -> PyResult<Self> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .map_err(|e| PyRuntimeError::new_err(format!("cannot build a rayon pool: {e}")))?;
        Ok(Self {
            inner: Mutex::new(inner),
            pool,
        })
    }

    /// Run a cheap `f` (no tensor work) on the object right away, in the calling thread.
    fn now<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut g)
    }

    /// Run `f` on the object with the GIL released, inside the object's pool.
    fn with<R: Send>(&self, py: Python<'_>, f: impl FnOnce(&mut T) -> R + Send) -> R {
        py.detach(|| {
            self.pool.install(|| {
                let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
                f(&mut g)
            })
        })
    }
}

/// An encoded message from Python: `bytes` or a contiguous 1-d uint8 numpy array.
enum Encoded<'py> {
    Bytes(Bound<'py, PyBytes>),
    Array(PyReadonlyArray1<'py, u8>),
}

impl<'py> Encoded<'py> {
    /// `obj` as an encoded message, or a `TypeError` naming `what`.
    fn of(obj: &Bound<'py, PyAny>, what: &str) -> PyResult<Self> {
        if let Ok(b) = obj.cast::<PyBytes>() {
            return Ok(Self::Bytes(b.clone()));
        }
        let a: PyReadonlyArray1<'py, u8> = obj.extract().map_err(|_| {
            PyTypeError::new_err(format!(
                "{what} must be bytes or a 1-d uint8 numpy array (as the roles hand out)"
            ))
        })?;
        if a.as_slice().is_err() {
            return Err(PyTypeError::new_err(format!("{what} must be contiguous")));
        }
        Ok(Self::Array(a))
    }

    /// The encoded bytes, in place.
    fn bytes(&self) -> &[u8] {
        match self {
            Self::Bytes(b) => b.as_bytes(),
            Self::Array(a) => a.as_slice().expect("checked contiguous in Encoded::of"),
        }
    }
}

/// An encoding handed to Python as a 1-d uint8 numpy array, without a copy.
fn encoded(py: Python<'_>, bytes: Vec<u8>) -> Bound<'_, PyArray1<u8>> {
    PyArray1::from_vec(py, bytes)
}

fn value_err(e: anyhow::Error) -> PyErr {
    PyValueError::new_err(format!("{e:#}"))
}

/// A configuration from its TOML text (as `Optimizer.config_toml()` gives it).
fn config_of(toml: &str) -> PyResult<Config> {
    Config::from_toml_str(toml, &[]).map_err(value_err)
}

/// A role's Rust core built by `make` from the config (TOML text) and the first parameter
/// snapshot, decoded and built without the GIL.
fn build_core<T: Send>(
    py: Python<'_>,
    config_toml: &str,
    snapshot: &Bound<'_, PyAny>,
    make: impl FnOnce(&Config, &Snapshot) -> anyhow::Result<T> + Send,
) -> PyResult<T> {
    let cfg = config_of(config_toml)?;
    let snapshot = Encoded::of(snapshot, "snapshot")?;
    let bytes = snapshot.bytes();
    py.detach(|| make(&cfg, &Snapshot::from_bytes(bytes)?))
        .map_err(value_err)
}

fn stream_of(name: &str) -> PyResult<WorkerStream> {
    Ok(match name {
        "actor_env" => WorkerStream::ActorEnv,
        "actor_collect" => WorkerStream::ActorCollect,
        "actor_route" => WorkerStream::ActorRoute,
        "buffer" => WorkerStream::Buffer,
        "learner" => WorkerStream::Learner,
        _ => {
            return Err(PyValueError::new_err(format!(
                "unknown worker stream {name:?} (actor_env, actor_collect, actor_route, buffer, \
                 learner)"
            )));
        }
    })
}

/// The optimizer of an asynchronous run driven from Python: applies tagged gradients,
/// evaluates, writes progress.csv / runtime.csv and checkpoints in the thread runtime's format.
#[pyclass(module = "mixpg._native", frozen)]
pub(crate) struct Optimizer {
    held: Held<mixpg::runtime::roles::Optimizer>,
}

/// Replay contents for a checkpoint: one `bytes` or `None` per buffer.
fn replays_of(
    replays: Option<Vec<Option<Vec<u8>>>>,
    cfg: &Config,
) -> anyhow::Result<Vec<Option<mixpg::replay::ReplayBuffer>>> {
    let replays = replays.ok_or_else(|| {
        anyhow::anyhow!("a checkpoint is due: pass every buffer's replay bytes (or None)")
    })?;
    let spec = lookup(&cfg.task.name)?.spec().clone();
    replays
        .iter()
        .map(|r| {
            r.as_deref()
                .map(|b| replay_from_bytes(b, spec.obs_dim, spec.act_dim))
                .transpose()
        })
        .collect()
}

fn counters_of(d: &Bound<'_, PyDict>) -> PyResult<RuntimeCounters> {
    let get = |k: &str| -> PyResult<u64> {
        Ok(match d.get_item(k)? {
            Some(v) => v.extract()?,
            None => 0,
        })
    };
    Ok(RuntimeCounters {
        grad_queue: get("grad_queue")?,
        experience_queue: get("experience_queue")?,
        stored: get("stored")?,
        env_steps: get("env_steps")?,
        inserted: get("inserted")?,
        sampled: get("sampled")?,
        batches: get("batches")?,
        grads: get("grads")?,
        throttle_events: get("throttle_events")?,
        throttled_s: match d.get_item("throttled_s")? {
            Some(v) => v.extract()?,
            None => 0.0,
        },
        restarts: get("restarts")?,
    })
}

#[pymethods]
impl Optimizer {
    /// A new run in `out` from a config file, as `mixpg train` resolves it.
    #[new]
    #[pyo3(signature = (config, out, seed=None, iterations=None, overrides=Vec::new()))]
    fn new(
        py: Python<'_>,
        config: PathBuf,
        out: PathBuf,
        seed: Option<u64>,
        iterations: Option<u64>,
        overrides: Vec<String>,
    ) -> PyResult<Self> {
        let opt = py
            .detach(|| {
                let cfg = Config::load_for_run(&config, &overrides, seed, iterations)?;
                let task = lookup(&cfg.task.name)?;
                mixpg::runtime::roles::Optimizer::create(cfg, task, &out)
            })
            .map_err(runtime_err)?;
        Ok(Self {
            held: Held::new(opt)?,
        })
    }

    /// Continue the run in `run` from its newest checkpoint (written by any runtime).
    #[staticmethod]
    fn resume(py: Python<'_>, run: PathBuf) -> PyResult<Self> {
        let opt = py
            .detach(|| {
                let cfg = Config::load(&run.join("config.toml"), &[])?;
                mixpg::runtime::roles::Optimizer::resume(&run, lookup(&cfg.task.name)?)
            })
            .map_err(runtime_err)?;
        Ok(Self {
            held: Held::new(opt)?,
        })
    }

    /// The run's resolved configuration as TOML.
    fn config_toml(&self) -> String {
        self.held.now(|o| o.config().to_toml())
    }

    /// The settings the driver needs, as a dict.
    fn settings<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let cfg = self.held.now(|o| o.config().clone());
        let d = PyDict::new(py);
        d.set_item("mode", format!("{:?}", cfg.runtime.mode).to_lowercase())?;
        d.set_item("actors", cfg.runtime.actors)?;
        d.set_item("buffers", cfg.runtime.buffers)?;
        d.set_item("learners", cfg.runtime.learners)?;
        d.set_item("learner_groups", cfg.runtime.learner_groups)?;
        d.set_item("learners_per_group", cfg.runtime.learners_per_group)?;
        d.set_item("group_resources", cfg.runtime.group_resources.clone())?;
        d.set_item(
            "round_gradients_per_learner",
            cfg.runtime.round_gradients_per_learner,
        )?;
        d.set_item("experience_queue", cfg.runtime.experience_queue)?;
        d.set_item("iterations", cfg.train.iterations)?;
        d.set_item("seed", cfg.train.seed)?;
        d.set_item("collect_interval", cfg.algo.collect_interval)?;
        d.set_item("batch_reuse", cfg.algo.batch_reuse)?;
        d.set_item("batch_size", cfg.algo.batch_size)?;
        d.set_item("grad_max_reuse", cfg.runtime.grad_max_reuse)?;
        d.set_item("task", cfg.task.name.clone())?;
        d.set_item("algo", cfg.algo.name.as_str())?;
        Ok(d)
    }

    /// Suppress the progress display.
    fn set_quiet(&self, quiet: bool) {
        self.held.now(|o| o.set_quiet(quiet))
    }

    /// Stop after this many seconds of the session.
    fn set_time_limit(&self, seconds: f64) -> PyResult<()> {
        let d = std::time::Duration::try_from_secs_f64(seconds)
            .map_err(|e| PyValueError::new_err(format!("time limit {seconds}: {e}")))?;
        self.held.now(|o| o.set_time_limit(d));
        Ok(())
    }

    /// Ask the run to stop (the driver then finishes with a checkpoint).
    fn request_stop(&self) {
        self.held.now(|o| {
            o.stop_handle()
                .store(true, std::sync::atomic::Ordering::SeqCst)
        })
    }

    /// The current iteration.
    #[getter]
    fn iteration(&self) -> u64 {
        self.held.now(|o| o.iteration())
    }

    /// Whether `train.iterations` is reached.
    fn finished(&self) -> bool {
        self.held.now(|o| o.finished())
    }

    /// Whether a stop was requested or the time limit passed.
    fn should_stop(&self) -> bool {
        self.held.now(|o| o.should_stop())
    }

    /// The seed of a worker's stream (`actor_env`, `actor_collect`, `actor_route`, `buffer`,
    /// `learner`) for worker `id`'s `incarnation` in a session started at `start`.
    fn worker_seed(&self, stream: &str, start: u64, id: usize, incarnation: u32) -> PyResult<u64> {
        let s = stream_of(stream)?;
        let seed = self.held.now(|o| o.config().train.seed);
        Ok(worker_seed(seed, start, s, id, incarnation))
    }

    /// The replay contents restored from the checkpoint: `bytes` or `None` per buffer.
    fn take_restored_replay<'py>(&self, py: Python<'py>) -> Vec<Option<Bound<'py, PyBytes>>> {
        let v = self.held.with(py, |o| {
            o.take_restored_replay()
                .iter()
                .map(|r| r.as_ref().map(replay_to_bytes))
                .collect::<Vec<_>>()
        });
        v.into_iter()
            .map(|b| b.map(|b| PyBytes::new(py, &b)))
            .collect()
    }

    /// The parameters of the current iteration, encoded (a uint8 array).
    fn snapshot<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<u8>> {
        let b = py.detach(|| self.held.now(|o| o.snapshot_bytes()));
        encoded(py, b)
    }

    /// Lock the run and start the session's clock, runtime.csv and progress display.
    fn start_session(&self, py: Python<'_>) -> PyResult<()> {
        self.held
            .with(py, |o| o.start_session())
            .map_err(runtime_err)
    }

    /// Whether `at_iteration` will write a checkpoint now (pass the buffers' bytes then).
    fn checkpoint_due(&self) -> bool {
        self.held.now(|o| o.checkpoint_due())
    }

    /// Evaluation, progress row and checkpoint due before the current iteration's update;
    /// returns the evaluation's mean return when one ran.
    #[pyo3(signature = (env_steps, replays=None))]
    fn at_iteration(
        &self,
        py: Python<'_>,
        env_steps: u64,
        replays: Option<Vec<Option<Vec<u8>>>>,
    ) -> PyResult<Option<f64>> {
        let due = |o: &mut mixpg::runtime::roles::Optimizer| {
            let cfg = o.config().clone();
            o.at_iteration(env_steps, || replays_of(replays, &cfg))
                .map(|e| e.map(|e| e.mean))
        };
        // Evaluations and checkpoints run without the GIL in the optimizer's one-thread pool,
        // as in the thread runtime; a progress row alone is a line of text.
        if self.held.now(|o| o.evaluation_or_checkpoint_due()) {
            self.held.with(py, due)
        } else {
            self.held.now(due)
        }
        .map_err(runtime_err)
    }

    /// Apply an encoded tagged gradient; returns its staleness (non-finite ones are skipped).
    fn apply(&self, py: Python<'_>, grads: &Bound<'_, PyAny>) -> PyResult<u64> {
        let grads = Encoded::of(grads, "grads")?;
        let bytes = grads.bytes();
        // Host loops only (the Adam step): no need for the pool's thread.
        py.detach(|| {
            let g = TaggedGrads::from_bytes(bytes).map_err(value_err)?;
            self.held.now(|o| o.apply(g, false)).map_err(runtime_err)
        })
    }

    /// Write a runtime.csv row when one is due (about once a second, or `force`).
    fn log_runtime(&self, counters: &Bound<'_, PyDict>, force: bool) -> PyResult<()> {
        let c = counters_of(counters)?;
        self.held
            .now(|o| o.log_runtime(force, || c))
            .map_err(runtime_err)
    }

    /// End the session: the final row and checkpoint (unless written), a last runtime.csv row.
    #[pyo3(signature = (env_steps, counters, replays=None))]
    fn finish(
        &self,
        py: Python<'_>,
        env_steps: u64,
        counters: &Bound<'_, PyDict>,
        replays: Option<Vec<Option<Vec<u8>>>>,
    ) -> PyResult<()> {
        let c = counters_of(counters)?;
        self.held
            .with(py, |o| {
                let cfg = o.config().clone();
                o.finish(env_steps, || replays_of(replays, &cfg), || c)
            })
            .map_err(runtime_err)
    }

    /// Mean policy-gradient time on the learners this session, ms.
    fn pg_time_ms(&self) -> Option<f64> {
        self.held.now(|o| o.pg_time_ms())
    }
}

/// An actor: collects experience blocks with the policy of the snapshot it is given.
#[pyclass(module = "mixpg._native", frozen)]
pub(crate) struct Actor {
    held: Held<ActorCore>,
}

#[pymethods]
impl Actor {
    /// An actor of the config (TOML text) with its environment and exploration seeds.
    #[new]
    fn new(
        py: Python<'_>,
        config_toml: &str,
        env_seed: u64,
        rng_seed: u64,
        snapshot: &Bound<'_, PyAny>,
    ) -> PyResult<Self> {
        let core = build_core(py, config_toml, snapshot, |cfg, s| {
            ActorCore::new(cfg, &lookup(&cfg.task.name)?, env_seed, rng_seed, s)
        })?;
        Ok(Self {
            held: Held::new(core)?,
        })
    }

    /// One collection (encoded experience), acting with `snapshot`'s policy (decoded only
    /// when its version differs from the one in use).
    fn collect<'py>(
        &self,
        py: Python<'py>,
        snapshot: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyArray1<u8>>> {
        let snapshot = Encoded::of(snapshot, "snapshot")?;
        let snapshot = snapshot.bytes();
        let b = self
            .held
            .with(py, |a| -> anyhow::Result<Vec<u8>> {
                if Snapshot::version_in(snapshot)? != a.version() {
                    a.set_policy(&Snapshot::from_bytes(snapshot)?);
                }
                Ok(a.collect()?.to_bytes())
            })
            .map_err(value_err)?;
        Ok(encoded(py, b))
    }
}

/// A buffer: inserts experience blocks and samples batches under samples-per-insert.
#[pyclass(module = "mixpg._native", frozen)]
pub(crate) struct Buffer {
    held: Held<BufferCore>,
}

#[pymethods]
impl Buffer {
    /// A buffer of the config (TOML text), from restored replay bytes when given.
    #[new]
    #[pyo3(signature = (config_toml, seed, restored=None))]
    fn new(
        py: Python<'_>,
        config_toml: &str,
        seed: u64,
        restored: Option<Vec<u8>>,
    ) -> PyResult<Self> {
        let cfg = config_of(config_toml)?;
        let core = py
            .detach(|| {
                let spec = lookup(&cfg.task.name)?.spec().clone();
                let replay = restored
                    .as_deref()
                    .map(|b| replay_from_bytes(b, spec.obs_dim, spec.act_dim))
                    .transpose()?;
                BufferCore::new(&cfg, &spec, replay, seed)
            })
            .map_err(value_err)?;
        Ok(Self {
            held: Held::new(core)?,
        })
    }

    /// Insert an encoded experience block; returns the transitions inserted.
    fn insert(&self, py: Python<'_>, experience: &Bound<'_, PyAny>) -> PyResult<usize> {
        let experience = Encoded::of(experience, "experience")?;
        let experience = experience.bytes();
        self.held
            .with(py, |b| -> anyhow::Result<usize> {
                let e = Experience::from_bytes(experience)?;
                b.insert(&e);
                Ok(e.len())
            })
            .map_err(value_err)
    }

    /// An encoded batch when warm and samples-per-insert allows one, else `None`.
    fn try_sample<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyArray1<u8>>> {
        self.held
            .with(py, |b| b.try_sample().map(|s| batch_to_bytes(&s)))
            .map(|b| encoded(py, b))
    }

    /// `(stored, inserted, sampled, warm, rate_ok)`.
    fn status(&self) -> (usize, u64, u64, bool, bool) {
        self.held
            .now(|b| (b.len(), b.inserted(), b.sampled(), b.is_warm(), b.rate_ok()))
    }

    /// The replay contents as bytes (for checkpoints).
    fn replay_bytes<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        let b = self.held.with(py, |b| replay_to_bytes(b.replay()));
        PyBytes::new(py, &b)
    }
}

/// A learner: tagged gradients from a snapshot and a batch (reused `algo.batch_reuse` times).
#[pyclass(module = "mixpg._native", frozen)]
pub(crate) struct Learner {
    held: Held<LearnerCore>,
}

#[pymethods]
impl Learner {
    /// A learner of the config (TOML text) with its seed.
    #[new]
    fn new(
        py: Python<'_>,
        config_toml: &str,
        seed: u64,
        snapshot: &Bound<'_, PyAny>,
    ) -> PyResult<Self> {
        let core = build_core(py, config_toml, snapshot, |cfg, s| {
            LearnerCore::new(cfg, &lookup(&cfg.task.name)?, seed, s)
        })?;
        Ok(Self {
            held: Held::new(core)?,
        })
    }

    /// The next encoded gradient (tagged with the snapshot's version): of a new `batch` (kept
    /// for `algo.batch_reuse` gradients), or without one of the kept batch; `None` when there
    /// is no batch or the kept one is used up.
    #[pyo3(signature = (snapshot, batch=None))]
    fn step<'py>(
        &self,
        py: Python<'py>,
        snapshot: &Bound<'py, PyAny>,
        batch: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Option<Bound<'py, PyArray1<u8>>>> {
        let snapshot = Encoded::of(snapshot, "snapshot")?;
        let batch = batch.map(|b| Encoded::of(b, "batch")).transpose()?;
        let (snapshot, batch) = (snapshot.bytes(), batch.as_ref().map(Encoded::bytes));
        let out = self
            .held
            .with(py, |l| -> anyhow::Result<Option<Vec<u8>>> {
                let snap = if Snapshot::version_in(snapshot)? != l.version() {
                    Some(Snapshot::from_bytes(snapshot)?)
                } else {
                    None
                };
                let b = batch.map(batch_from_bytes).transpose()?;
                Ok(l.step(snap.as_ref(), b)?.map(|g| g.to_bytes()))
            })
            .map_err(value_err)?;
        Ok(out.map(|b| encoded(py, b)))
    }
}

/// A learner group: learner threads of the thread runtime sharing one parameter copy and one
/// batch feed, driven one round at a time (one per node in `mixpg.ray`).
#[pyclass(module = "mixpg._native", frozen)]
pub(crate) struct LearnerGroup {
    group: asynchronous::LearnerGroup,
}

#[pymethods]
impl LearnerGroup {
    /// `threads` learner threads of the config (TOML text) seeded from `seed`, holding
    /// `snapshot`'s parameters; at most `max_pending` gradients wait for a round.
    #[new]
    fn new(
        py: Python<'_>,
        config_toml: &str,
        threads: usize,
        seed: u64,
        snapshot: &Bound<'_, PyAny>,
        max_pending: usize,
    ) -> PyResult<Self> {
        let group = build_core(py, config_toml, snapshot, |cfg, s| {
            let task = lookup(&cfg.task.name)?;
            asynchronous::LearnerGroup::start(cfg, &task, threads, seed, s.clone(), max_pending)
        })?;
        Ok(Self { group })
    }

    /// Add an encoded batch to the feed (callable while a round waits).
    fn feed(&self, py: Python<'_>, batch: &Bound<'_, PyAny>) -> PyResult<()> {
        let batch = Encoded::of(batch, "batch")?;
        let bytes = batch.bytes();
        py.detach(|| self.group.feed(batch_from_bytes(bytes)?))
            .map_err(value_err)
    }

    /// Batches in the feed that no learner thread has taken yet.
    fn feed_len(&self) -> usize {
        self.group.feed_len()
    }

    /// One round: take up `snapshot` (decoded only when its version differs from the
    /// group's; `None` keeps the parameters), wait until at least `min_gradients` gradients
    /// are ready or `wait_s` seconds passed; returns them encoded, in the order they were made.
    fn round<'py>(
        &self,
        py: Python<'py>,
        snapshot: Option<&Bound<'py, PyAny>>,
        min_gradients: usize,
        wait_s: f64,
    ) -> PyResult<Vec<Bound<'py, PyArray1<u8>>>> {
        let wait = Duration::try_from_secs_f64(wait_s)
            .map_err(|e| PyValueError::new_err(format!("round wait {wait_s}: {e}")))?;
        let snapshot = snapshot.map(|s| Encoded::of(s, "snapshot")).transpose()?;
        let snapshot = snapshot.as_ref().map(Encoded::bytes);
        let grads = py
            .detach(|| -> anyhow::Result<Vec<Vec<u8>>> {
                let snap = match snapshot {
                    Some(b) if Snapshot::version_in(b)? != self.group.version() => {
                        Some(Snapshot::from_bytes(b)?)
                    }
                    _ => None,
                };
                let grads = self.group.round(snap, min_gradients, wait)?;
                Ok(grads.iter().map(TaggedGrads::to_bytes).collect())
            })
            .map_err(runtime_err)?;
        Ok(grads.into_iter().map(|b| encoded(py, b)).collect())
    }
}
