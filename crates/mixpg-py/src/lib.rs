//! `mixpg._native`: the Python bindings of the mixpg library, a thin layer under the `mixpg`
//! Python package (python/mixpg). Long calls release the GIL; arrays are handed to numpy
//! without copying; the objects that cross process boundaries pickle.

mod pytask;
mod roles;

use std::path::PathBuf;
use std::sync::Mutex;

use numpy::ndarray::Array2;
use numpy::{PyArray1, PyArray2, PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};

use mixpg::config::Config;
use mixpg::env::vector::AutoResetEnv;
use mixpg::env::{StepOut, lookup, registered};
use mixpg::grid::{GridOptions, Preset, RunStatus, run_grid};
use mixpg::runtime::SavedPolicy;
use mixpg::runtime::export::ExportFormat;

/// What `__reduce__` returns: a callable and its arguments.
type Reduced<'py, Args> = (Bound<'py, PyAny>, Args);

/// `VecEnv.step`'s result: observations, rewards, terminated and truncated flags.
type StepArrays<'py> = (
    Bound<'py, PyArray2<f32>>,
    Bound<'py, PyArray1<f32>>,
    Bound<'py, PyArray1<bool>>,
    Bound<'py, PyArray1<bool>>,
);

/// An anyhow error as a Python `RuntimeError` carrying the whole cause chain.
fn runtime_err(e: anyhow::Error) -> PyErr {
    PyRuntimeError::new_err(format!("{e:#}"))
}

/// `x` as a float32 2-D array (read-only arrays accepted), or a `TypeError` naming `what`.
fn float32_matrix<'py>(x: &Bound<'py, PyAny>, what: &str) -> PyResult<PyReadonlyArray2<'py, f32>> {
    x.extract().map_err(|_| {
        PyTypeError::new_err(format!(
            "{what} must be a 2-D float32 numpy array (use np.asarray(x, dtype=np.float32))"
        ))
    })
}

/// A float32 2-D array as a contiguous row-major vector.
fn rows_of(a: &PyReadonlyArray2<'_, f32>) -> Vec<f32> {
    match a.as_slice() {
        Ok(s) => s.to_vec(),
        Err(_) => a.as_array().iter().copied().collect(),
    }
}

/// `rows x cols` values handed to numpy without copying.
fn matrix<'py>(
    py: Python<'py>,
    v: Vec<f32>,
    rows: usize,
    cols: usize,
) -> Bound<'py, PyArray2<f32>> {
    let a = Array2::from_shape_vec((rows, cols), v).expect("row-major buffer of rows x cols");
    PyArray2::from_owned_array(py, a)
}

/// Train one run as `mixpg train --config CONFIG --out OUT [--seed] [--iterations] [--set ..]`
/// does, with the GIL released; returns the run directory.
#[pyfunction]
#[pyo3(signature = (config, out, seed=None, iterations=None, overrides=Vec::new()))]
fn train(
    py: Python<'_>,
    config: PathBuf,
    out: PathBuf,
    seed: Option<u64>,
    iterations: Option<u64>,
    overrides: Vec<String>,
) -> PyResult<PathBuf> {
    let cfg = Config::load_for_run(&config, &overrides, seed, iterations).map_err(runtime_err)?;
    py.detach(|| mixpg::runtime::train(cfg, &out, |_| {}))
        .map_err(runtime_err)?;
    Ok(out)
}

/// Write one report of every run under the `runs` directories into `out`, as `mixpg report`
/// does (GIL released); returns the files written.
#[pyfunction]
fn report(py: Python<'_>, runs: Vec<PathBuf>, out: PathBuf) -> PyResult<Vec<PathBuf>> {
    let summary = py
        .detach(|| mixpg::report::write_report_of(&runs, &out))
        .map_err(runtime_err)?;
    Ok(summary.files)
}

/// Measure the policy gradients' bias at every checkpoint of `run`, as `mixpg analyze-bias`
/// does (GIL released); writes `bias.csv` and `bias.png` into `out` and returns the rows as
/// dicts.
#[pyfunction]
#[pyo3(signature = (run, out, horizons, states, reference_horizon, seed))]
fn analyze_bias<'py>(
    py: Python<'py>,
    run: PathBuf,
    out: PathBuf,
    horizons: Vec<usize>,
    states: usize,
    reference_horizon: usize,
    seed: u64,
) -> PyResult<Bound<'py, PyList>> {
    let opts = mixpg::analysis::BiasOptions {
        horizons,
        states,
        reference_horizon,
        seed,
    };
    let rows = py
        .detach(|| mixpg::analysis::analyze_bias(&run, &opts, &out))
        .map_err(runtime_err)?;
    let list = PyList::empty(py);
    for r in &rows {
        let d = PyDict::new(py);
        d.set_item("iteration", r.iteration)?;
        d.set_item("estimator", &r.estimator)?;
        d.set_item("horizon", r.horizon)?;
        d.set_item("relative_bias", r.relative_bias)?;
        d.set_item("cosine", r.cosine)?;
        d.set_item("grad_norm", r.grad_norm)?;
        d.set_item("reference_norm", r.reference_norm)?;
        d.set_item("w_data", r.w_data)?;
        d.set_item("w_model", r.w_model)?;
        list.append(d)?;
    }
    Ok(list)
}

/// Run an experiment grid as `mixpg bench` does (GIL released); one dict per run.
#[pyfunction(name = "bench")]
#[pyo3(signature = (out, task=None, algos=Vec::new(), seeds=None, iterations=None, jobs=1,
    preset=None, overrides=Vec::new(), configs=PathBuf::from("configs"), report=true))]
#[allow(clippy::too_many_arguments)]
fn run_bench<'py>(
    py: Python<'py>,
    out: PathBuf,
    task: Option<String>,
    algos: Vec<String>,
    seeds: Option<u64>,
    iterations: Option<u64>,
    jobs: usize,
    preset: Option<String>,
    overrides: Vec<String>,
    configs: PathBuf,
    report: bool,
) -> PyResult<Bound<'py, PyList>> {
    let preset = match preset.as_deref() {
        None => None,
        Some(p) => Some(Preset::parse(p).ok_or_else(|| {
            PyValueError::new_err(format!(
                "unknown preset `{p}` (known: {})",
                Preset::names().join(", ")
            ))
        })?),
    };
    let options = GridOptions {
        task,
        algos,
        seeds,
        iterations,
        out,
        jobs,
        preset,
        set: overrides,
        configs,
        no_report: !report,
        force: false,
    };
    let summary = py.detach(|| run_grid(&options)).map_err(runtime_err)?;
    let runs = PyList::empty(py);
    for r in &summary.runs {
        let d = PyDict::new(py);
        d.set_item("task", &r.task)?;
        d.set_item("algo", &r.algo)?;
        d.set_item("seed", r.seed)?;
        d.set_item("dir", &r.dir)?;
        match &r.status {
            RunStatus::Skipped { iteration } => {
                d.set_item("status", "skipped")?;
                d.set_item("iteration", iteration)?;
            }
            RunStatus::Finished {
                resumed_from,
                wall_s,
                final_eval,
                ..
            } => {
                d.set_item("status", "finished")?;
                d.set_item("resumed_from", resumed_from)?;
                d.set_item("wall_s", wall_s)?;
                d.set_item("final_eval", final_eval.map(|(_, r)| r))?;
            }
            RunStatus::Failed { error } => {
                d.set_item("status", "failed")?;
                d.set_item("error", error)?;
            }
        }
        runs.append(d)?;
    }
    if let Some(e) = &summary.report_error {
        return Err(PyRuntimeError::new_err(format!(
            "the report could not be written: {e}"
        )));
    }
    Ok(runs)
}

/// Write the policy of the newest checkpoint of `run` to `out` as `mixpg export` does
/// (`format`: `onnx`, `c` or `rust`); returns `out`.
#[pyfunction]
fn export(py: Python<'_>, run: PathBuf, out: PathBuf, format: &str) -> PyResult<PathBuf> {
    let format =
        ExportFormat::parse(format).map_err(|e| PyValueError::new_err(format!("{e:#}")))?;
    py.detach(|| mixpg::runtime::export::export(&run, format, &out))
        .map_err(runtime_err)?;
    Ok(out)
}

/// The registered task names, snake case (kebab case and `inverted-pendulum` are accepted too).
#[pyfunction]
fn tasks() -> Vec<String> {
    registered().iter().map(|t| t.name().to_string()).collect()
}

/// A task's description: name, obs_dim, act_dim, action_low, action_high, episode_len.
#[pyfunction]
fn task_info<'py>(py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyDict>> {
    let task = lookup(name).map_err(|e| PyValueError::new_err(format!("{e:#}")))?;
    let s = task.spec();
    let d = PyDict::new(py);
    d.set_item("name", &s.name)?;
    d.set_item("obs_dim", s.obs_dim)?;
    d.set_item("act_dim", s.act_dim)?;
    d.set_item("action_low", s.action_low.clone())?;
    d.set_item("action_high", s.action_high.clone())?;
    d.set_item("episode_len", s.episode_len)?;
    Ok(d)
}

/// A run's saved policy: `policy(obs)` maps a float32 `(n, obs_dim)` batch to `(n, act_dim)`
/// deterministic actions. Pickles to bytes (config and parameters).
#[pyclass(module = "mixpg._native", frozen)]
struct Policy {
    inner: Mutex<SavedPolicy>,
    obs_dim: usize,
    act_dim: usize,
}

impl Policy {
    fn wrap(p: SavedPolicy) -> Self {
        Self {
            obs_dim: p.spec().obs_dim,
            act_dim: p.spec().act_dim,
            inner: Mutex::new(p),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SavedPolicy> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[pymethods]
impl Policy {
    /// The policy of the latest checkpoint of a run directory.
    #[staticmethod]
    fn load(py: Python<'_>, run: PathBuf) -> PyResult<Self> {
        py.detach(|| SavedPolicy::load(&run))
            .map(Self::wrap)
            .map_err(runtime_err)
    }

    /// The policy from `to_bytes` output.
    #[staticmethod]
    fn from_bytes(bytes: &[u8]) -> PyResult<Self> {
        SavedPolicy::from_bytes(bytes)
            .map(Self::wrap)
            .map_err(|e| PyValueError::new_err(format!("{e:#}")))
    }

    /// The policy as bytes (config TOML, iteration, float32 parameters).
    fn to_bytes<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.lock().to_bytes())
    }

    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<Reduced<'py, (Bound<'py, PyBytes>,)>> {
        let py = slf.py();
        let ctor = slf.get_type().getattr("from_bytes")?;
        Ok((ctor, (slf.get().to_bytes(py),)))
    }

    /// Deterministic actions for a float32 `(n, obs_dim)` batch (read-only arrays accepted).
    fn __call__<'py>(
        &self,
        py: Python<'py>,
        obs: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyArray2<f32>>> {
        let obs = float32_matrix(obs, "observations")?;
        let [n, d] = [obs.shape()[0], obs.shape()[1]];
        if d != self.obs_dim {
            return Err(PyValueError::new_err(format!(
                "observations must have {} columns, got shape ({n}, {d})",
                self.obs_dim
            )));
        }
        let rows = rows_of(&obs);
        let actions = py
            .detach(|| self.lock().act(&rows))
            .map_err(|e| PyValueError::new_err(format!("{e:#}")))?;
        Ok(matrix(py, actions, n, self.act_dim))
    }

    /// Task name.
    #[getter]
    fn task(&self) -> String {
        self.lock().spec().name.to_string()
    }

    /// Algorithm name.
    #[getter]
    fn algo(&self) -> &'static str {
        self.lock().config().algo.name.as_str()
    }

    /// Training iteration of the checkpoint.
    #[getter]
    fn iteration(&self) -> u64 {
        self.lock().iteration()
    }

    /// Observation dimension.
    #[getter]
    fn obs_dim(&self) -> usize {
        self.obs_dim
    }

    /// Action dimension.
    #[getter]
    fn act_dim(&self) -> usize {
        self.act_dim
    }
}

/// A task's vectorized simulator with next-step autoreset, stepped in one native call.
/// Pickles as its construction arguments (a copy starts freshly reset, as Gymnasium's
/// `EzPickle` environments do).
#[pyclass(module = "mixpg._native", frozen)]
struct VecEnv {
    inner: Mutex<(AutoResetEnv, StepOut)>,
    task: String,
    num_agents: usize,
    seed: u64,
    obs_dim: usize,
    act_dim: usize,
}

impl VecEnv {
    fn lock(&self) -> std::sync::MutexGuard<'_, (AutoResetEnv, StepOut)> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[pymethods]
impl VecEnv {
    /// `num_agents` agents of `task` (snake or kebab case), reset with `seed`.
    #[new]
    #[pyo3(signature = (task, num_agents, seed=0))]
    fn new(task: &str, num_agents: usize, seed: u64) -> PyResult<Self> {
        let value_err = |e: anyhow::Error| PyValueError::new_err(format!("{e:#}"));
        let task = lookup(task).map_err(value_err)?;
        let env = AutoResetEnv::new(&task, num_agents, seed).map_err(value_err)?;
        let (obs_dim, act_dim) = (env.spec().obs_dim, env.spec().act_dim);
        Ok(Self {
            inner: Mutex::new((env, StepOut::default())),
            task: task.name().to_string(),
            num_agents,
            seed,
            obs_dim,
            act_dim,
        })
    }

    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<Reduced<'py, (String, usize, u64)>> {
        let me = slf.get();
        Ok((
            slf.get_type().into_any(),
            (me.task.clone(), me.num_agents, me.seed),
        ))
    }

    /// Reset every agent (re-seeded if `seed` is given); returns the `(n, obs_dim)` observations.
    #[pyo3(signature = (seed=None))]
    fn reset<'py>(&self, py: Python<'py>, seed: Option<u64>) -> Bound<'py, PyArray2<f32>> {
        let obs = self.lock().0.reset(seed);
        matrix(py, obs, self.num_agents, self.obs_dim)
    }

    /// One step of every agent: `(obs, reward, terminated, truncated)` as numpy arrays.
    fn step<'py>(&self, py: Python<'py>, actions: &Bound<'py, PyAny>) -> PyResult<StepArrays<'py>> {
        let actions = float32_matrix(actions, "actions")?;
        let shape = [actions.shape()[0], actions.shape()[1]];
        if shape != [self.num_agents, self.act_dim] {
            return Err(PyValueError::new_err(format!(
                "actions must have shape ({}, {}), got {shape:?}",
                self.num_agents, self.act_dim
            )));
        }
        let mut guard = self.lock();
        let (env, out) = &mut *guard;
        let stepped = match actions.as_slice() {
            Ok(a) => env.step(a, out),
            Err(_) => env.step(&rows_of(&actions), out),
        };
        stepped.map_err(|e| PyValueError::new_err(format!("{e:#}")))?;
        let out = std::mem::take(out);
        Ok((
            matrix(py, out.next_obs, self.num_agents, self.obs_dim),
            PyArray1::from_vec(py, out.reward),
            PyArray1::from_vec(py, out.terminated),
            PyArray1::from_vec(py, out.truncated),
        ))
    }

    /// Task name (snake case).
    #[getter]
    fn task(&self) -> &str {
        &self.task
    }

    /// Number of agents.
    #[getter]
    fn num_agents(&self) -> usize {
        self.num_agents
    }

    /// Observation dimension.
    #[getter]
    fn obs_dim(&self) -> usize {
        self.obs_dim
    }

    /// Action dimension.
    #[getter]
    fn act_dim(&self) -> usize {
        self.act_dim
    }
}

/// The extension module.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(train, m)?)?;
    m.add_function(wrap_pyfunction!(run_bench, m)?)?;
    m.add_function(wrap_pyfunction!(report, m)?)?;
    m.add_function(wrap_pyfunction!(analyze_bias, m)?)?;
    m.add_function(wrap_pyfunction!(export, m)?)?;
    m.add_function(wrap_pyfunction!(tasks, m)?)?;
    m.add_function(wrap_pyfunction!(task_info, m)?)?;
    m.add_function(wrap_pyfunction!(pytask::train_python_task, m)?)?;
    m.add_function(wrap_pyfunction!(pytask::resume_python_task, m)?)?;
    m.add_function(wrap_pyfunction!(pytask::generic_config, m)?)?;
    m.add_function(wrap_pyfunction!(pytask::resolve_config, m)?)?;
    m.add_class::<Policy>()?;
    m.add_class::<VecEnv>()?;
    m.add_class::<roles::Optimizer>()?;
    m.add_class::<roles::Actor>()?;
    m.add_class::<roles::Buffer>()?;
    m.add_class::<roles::Learner>()?;
    m.add_class::<roles::LearnerGroup>()?;
    Ok(())
}
