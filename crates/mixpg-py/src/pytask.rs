//! Tasks whose simulator and prior model live in Python: [`PyEnv`] is a mixpg `Env` over an
//! environment pool of `mixpg.gym` (Gymnasium environments, stepped in one Python call per
//! vectorized step), [`PyModel`] a `PriorModel` over a Python object with batched float32
//! `step(obs, act)` and `vjp(obs, act, g_next_obs, g_reward)` methods (numpy, JAX, PyTorch...).
//! Training runs in Rust with the GIL released; each environment or model call takes it back.
//! A Python exception is kept as the call's failure (`take_error`): the run stops with a final
//! checkpoint and the exception's type, message and traceback.

use std::path::PathBuf;
use std::sync::Mutex;

use anyhow::{Context, Result, anyhow, bail};
use numpy::PyReadonlyArrayDyn;
use numpy::{PyArray1, PyArrayMethods, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use mixpg::config::Config;
use mixpg::env::{Env, ModelTape, PriorModel, StepOut, Task, TaskSpec, Termination};
use mixpg::runtime::{resume_task, train_task};

use crate::runtime_err;

/// A Python exception as an error: its type, message and traceback.
fn py_error(py: Python<'_>, e: PyErr, what: &str) -> anyhow::Error {
    let traceback = e
        .traceback(py)
        .and_then(|t| t.format().ok())
        .unwrap_or_default();
    anyhow!(
        "{what} raised {}\n{traceback}",
        e.value(py)
            .repr()
            .map_or_else(|_| e.to_string(), |r| r.to_string())
    )
}

/// `rows x cols` float32 values as a numpy array.
fn array2<'py>(py: Python<'py>, v: &[f32], rows: usize, cols: usize) -> Result<Bound<'py, PyAny>> {
    Ok(PyArray1::from_slice(py, v)
        .reshape([rows, cols])
        .context("reshape")?
        .into_any())
}

/// The shape written as numpy does, `(256, 3)`.
fn shape_text(shape: &[usize]) -> String {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    format!(
        "({}{})",
        dims.join(", "),
        if dims.len() == 1 { "," } else { "" }
    )
}

/// `obj` as finite float32 values of exactly `shape`; the error names `what` and what is
/// wrong (not an array, the dtype, the shape, non-finite values).
fn floats(obj: &Bound<'_, PyAny>, shape: &[usize], what: &str) -> Result<Vec<f32>> {
    let Ok(arr) = obj.cast::<numpy::PyUntypedArray>() else {
        bail!(
            "{what} must be a numpy float32 array of shape {}, got a {}",
            shape_text(shape),
            obj.get_type()
                .name()
                .map_or("?".to_string(), |n| n.to_string())
        );
    };
    let dtype = arr.dtype().to_string();
    if dtype != "float32" {
        bail!("{what} has dtype {dtype}; it must be float32 (np.asarray(x, dtype=np.float32))");
    }
    if arr.shape() != shape {
        bail!(
            "{what} has shape {}, expected {}",
            shape_text(arr.shape()),
            shape_text(shape)
        );
    }
    let a: PyReadonlyArrayDyn<'_, f32> = obj.extract().map_err(|e| anyhow!("{what}: {e}"))?;
    let v: Vec<f32> = a.as_array().iter().copied().collect();
    if let Some(i) = v.iter().position(|x| !x.is_finite()) {
        bail!(
            "{what} holds a non-finite value ({} at flat index {i})",
            v[i]
        );
    }
    Ok(v)
}

/// `obj` as `n` booleans (a numpy bool array or anything numpy makes one of).
fn bools(obj: &Bound<'_, PyAny>, n: usize, what: &str) -> Result<Vec<bool>> {
    let a: PyReadonlyArrayDyn<'_, bool> = obj
        .extract()
        .map_err(|_| anyhow!("{what} must be a numpy bool array of shape ({n},)"))?;
    let v: Vec<bool> = a.as_array().iter().copied().collect();
    if v.len() != n {
        bail!("{what} has {} values, expected {n}", v.len());
    }
    Ok(v)
}

/// A mixpg environment over a `mixpg.gym` environment pool (its methods `reset(seed)`,
/// `reset_done()`, `set_state(states)` and `step(actions, active)`, each returning the current
/// observations or the step's arrays).
pub struct PyEnv {
    pool: Py<PyAny>,
    spec: TaskSpec,
    n: usize,
    obs: Vec<f32>,
    error: Option<anyhow::Error>,
}

impl PyEnv {
    /// The pool `pool` of `n` environments of `spec`, observing its current state.
    fn new(pool: Py<PyAny>, spec: TaskSpec, n: usize) -> Result<Self> {
        let mut env = Self {
            pool,
            spec,
            n,
            obs: Vec::new(),
            error: None,
        };
        env.call_obs("observe", None)?;
        Ok(env)
    }

    /// Call `method` (with `seed`, if given) and take its result as the current observations.
    fn call_obs(&mut self, method: &str, seed: Option<u64>) -> Result<()> {
        let (n, o) = (self.n, self.spec.obs_dim);
        self.obs = Python::attach(|py| -> Result<Vec<f32>> {
            let r = match seed {
                Some(s) => self.pool.call_method1(py, method, (s,)),
                None => self.pool.call_method0(py, method),
            }
            .map_err(|e| py_error(py, e, &format!("the environment's {method}")))?;
            floats(r.bind(py), &[n, o], "the environment's observations")
        })?;
        Ok(())
    }

    /// Keep the failure of a call for `take_error`.
    fn keep(&mut self, r: Result<()>) {
        if let Err(e) = r {
            self.error.get_or_insert(e);
        }
    }

    fn step_masked(
        &mut self,
        actions: &[f32],
        active: Option<&[bool]>,
        out: &mut StepOut,
    ) -> Result<()> {
        let (n, o, a) = (self.n, self.spec.obs_dim, self.spec.act_dim);
        Python::attach(|py| -> Result<()> {
            let acts = array2(py, actions, n, a)?;
            let mask = match active {
                Some(m) => PyArray1::from_slice(py, m).into_any(),
                None => py.None().into_bound(py),
            };
            let r = self
                .pool
                .call_method1(py, "step", (acts, mask))
                .map_err(|e| py_error(py, e, "the environment's step"))?;
            let r = r.bind(py);
            let get = |i: usize| r.get_item(i).map_err(|e| anyhow!("step result: {e}"));
            out.next_obs = floats(&get(0)?, &[n, o], "the environment's observations")?;
            out.reward = floats(&get(1)?, &[n], "the environment's rewards")?;
            out.terminated = bools(&get(2)?, n, "terminated")?;
            out.truncated = bools(&get(3)?, n, "truncated")?;
            Ok(())
        })?;
        self.obs.clone_from(&out.next_obs);
        Ok(())
    }

    /// Fill `out` with a held step (the failed call's outputs are not used, but sized).
    fn fill_failed(&self, out: &mut StepOut) {
        out.next_obs.clone_from(&self.obs);
        out.reward = vec![0.0; self.n];
        out.terminated = vec![false; self.n];
        out.truncated = vec![false; self.n];
    }
}

impl Env for PyEnv {
    fn spec(&self) -> &TaskSpec {
        &self.spec
    }

    fn num_agents(&self) -> usize {
        self.n
    }

    fn reset(&mut self, seed: u64) {
        let r = self.call_obs("reset", Some(seed));
        self.keep(r);
    }

    fn reset_done(&mut self) {
        let r = self.call_obs("reset_done", None);
        self.keep(r);
    }

    fn reset_to(&mut self, states: &[f32]) {
        let o = self.spec.obs_dim;
        let n = states.len() / o;
        let r = Python::attach(|py| -> Result<()> {
            let s = array2(py, states, n, o)?;
            self.pool
                .call_method1(py, "set_state", (s,))
                .map_err(|e| py_error(py, e, "the environment's set_state"))?;
            Ok(())
        });
        self.n = n;
        self.obs = states.to_vec();
        self.keep(r);
    }

    fn observe(&self, out: &mut Vec<f32>) {
        out.clone_from(&self.obs);
    }

    fn step(&mut self, actions: &[f32], out: &mut StepOut) {
        if let Err(e) = self.step_masked(actions, None, out) {
            self.fill_failed(out);
            self.keep(Err(e));
        }
    }

    fn step_active(&mut self, actions: &[f32], active: &[bool], out: &mut StepOut) {
        if let Err(e) = self.step_masked(actions, Some(active), out) {
            self.fill_failed(out);
            self.keep(Err(e));
        }
    }

    fn take_error(&mut self) -> Option<anyhow::Error> {
        self.error.take()
    }
}

/// A prior model written in Python: an object with batched float32 methods
/// `step(obs, act) -> (next_obs, reward[, terminated])` and
/// `vjp(obs, act, g_next_obs, g_reward) -> (g_obs, g_act)`, `act` in the environment's units.
pub struct PyModel {
    model: Py<PyAny>,
    spec: TaskSpec,
    error: Mutex<Option<anyhow::Error>>,
}

impl PyModel {
    /// The model object `model` of a task described by `spec`; an error naming the missing
    /// method if it lacks `step` or `vjp`.
    pub fn new(py: Python<'_>, model: Py<PyAny>, spec: TaskSpec) -> Result<Self> {
        for method in ["step", "vjp"] {
            let ok = model
                .bind(py)
                .getattr(method)
                .is_ok_and(|m| m.is_callable());
            if !ok {
                bail!(
                    "the prior model has no `{method}` method: MPG needs `step(obs, act) -> \
                     (next_obs, reward)` and `vjp(obs, act, g_next_obs, g_reward) -> (g_obs, g_act)` \
                     on batched float32 arrays"
                );
            }
        }
        Ok(Self {
            model,
            spec,
            error: Mutex::new(None),
        })
    }

    fn keep(&self, e: anyhow::Error) {
        self.error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert(e);
    }

    fn step_py(
        &self,
        state: &[f32],
        action: &[f32],
        next: &mut [f32],
        reward: &mut [f32],
        terminated: &mut Vec<bool>,
    ) -> Result<()> {
        let (o, a) = (self.spec.obs_dim, self.spec.act_dim);
        let b = state.len() / o;
        Python::attach(|py| -> Result<()> {
            let r = self
                .model
                .call_method1(
                    py,
                    "step",
                    (array2(py, state, b, o)?, array2(py, action, b, a)?),
                )
                .map_err(|e| py_error(py, e, "the prior model's step"))?;
            let r = r.bind(py);
            let len = r.len().map_err(|_| {
                anyhow!(
                    "the prior model's step must return a tuple (next_obs, reward[, terminated])"
                )
            })?;
            if !(2..=3).contains(&len) {
                bail!(
                    "the prior model's step returned {len} values; expected (next_obs, reward[, terminated])"
                );
            }
            let get = |i: usize| r.get_item(i).map_err(|e| anyhow!("step result: {e}"));
            next.copy_from_slice(&floats(&get(0)?, &[b, o], "the prior model's next_obs")?);
            reward.copy_from_slice(&floats(&get(1)?, &[b], "the prior model's reward")?);
            if len == 3 {
                *terminated = bools(&get(2)?, b, "the prior model's terminated")?;
            }
            Ok(())
        })
    }

    fn vjp_py(
        &self,
        tape: &ModelTape,
        d_next: &[f32],
        d_reward: &[f32],
        d_state: &mut [f32],
        d_action: &mut [f32],
    ) -> Result<()> {
        let (o, a) = (self.spec.obs_dim, self.spec.act_dim);
        let b = tape.state.len() / o;
        Python::attach(|py| -> Result<()> {
            let args = (
                array2(py, &tape.state, b, o)?,
                array2(py, &tape.action, b, a)?,
                array2(py, d_next, b, o)?,
                PyArray1::from_slice(py, d_reward).into_any(),
            );
            let r = self
                .model
                .call_method1(py, "vjp", args)
                .map_err(|e| py_error(py, e, "the prior model's vjp"))?;
            let r = r.bind(py);
            if r.len().ok() != Some(2) {
                bail!("the prior model's vjp must return a tuple (g_obs, g_act)");
            }
            let get = |i: usize| r.get_item(i).map_err(|e| anyhow!("vjp result: {e}"));
            d_state.copy_from_slice(&floats(&get(0)?, &[b, o], "the prior model's vjp g_obs")?);
            d_action.copy_from_slice(&floats(&get(1)?, &[b, a], "the prior model's vjp g_act")?);
            Ok(())
        })
    }
}

impl PriorModel for PyModel {
    fn spec(&self) -> &TaskSpec {
        &self.spec
    }

    fn step_host(
        &self,
        state: &[f32],
        action: &[f32],
        _noise: &[f32],
        next: &mut [f32],
        reward: &mut [f32],
        tape: &mut ModelTape,
    ) {
        tape.record(state, action, 0);
        if let Err(e) = self.step_py(state, action, next, reward, &mut tape.terminated) {
            next.fill(f32::NAN);
            reward.fill(f32::NAN);
            self.keep(e);
        }
    }

    fn step_vjp(
        &self,
        tape: &ModelTape,
        d_next: &[f32],
        d_reward: &[f32],
        d_state: &mut [f32],
        d_action: &mut [f32],
    ) {
        if let Err(e) = self.vjp_py(tape, d_next, d_reward, d_state, d_action) {
            d_state.fill(f32::NAN);
            d_action.fill(f32::NAN);
            self.keep(e);
        }
    }

    fn take_error(&self) -> Option<anyhow::Error> {
        self.error.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

/// A task description from the dict `mixpg.gym.task_spec` builds.
fn spec_of(d: &Bound<'_, PyDict>) -> Result<TaskSpec> {
    let get = |k: &str| -> Result<Bound<'_, PyAny>> {
        d.get_item(k)
            .ok()
            .flatten()
            .with_context(|| format!("task description without `{k}`"))
    };
    let low: Vec<f32> = get("action_low")?.extract()?;
    let high: Vec<f32> = get("action_high")?.extract()?;
    let termination = match get("termination")?.extract::<String>()?.as_str() {
        "absorbing" => Termination::Absorbing,
        "continuing" => Termination::Continuing,
        other => bail!("termination must be absorbing or continuing, got {other:?}"),
    };
    let spec = TaskSpec {
        title: Some(get("title")?.extract()?),
        goals: get("goals")?.extract()?,
        min_requirement: get("min_requirement")?.extract()?,
        termination,
        settable: get("settable")?.extract()?,
        ..TaskSpec::new(
            &get("name")?.extract::<String>()?,
            get("obs_dim")?.extract()?,
            low,
            high,
            get("episode_len")?.extract()?,
        )
    };
    spec.validate()?;
    Ok(spec)
}

/// The task of a Python environment pool factory `make_pool(n, seed)` and optional model.
fn python_task(
    py: Python<'_>,
    spec: &Bound<'_, PyDict>,
    make_pool: Py<PyAny>,
    model: Option<Py<PyAny>>,
) -> Result<Task> {
    let spec = spec_of(spec)?;
    let env_spec = spec.clone();
    let mut task = Task::new(spec.clone(), move |n, seed| {
        let pool = Python::attach(|py| {
            make_pool
                .call1(py, (n, seed))
                .map_err(|e| py_error(py, e, "creating the environments"))
        })?;
        Ok(Box::new(PyEnv::new(pool, env_spec.clone(), n)?) as Box<dyn Env>)
    })?;
    if let Some(model) = model {
        // Checked now, so that a model without `vjp` is refused before the run starts.
        PyModel::new(py, model.clone_ref(py), spec.clone())?;
        task = task.with_model(move || {
            let m = Python::attach(|py| PyModel::new(py, model.clone_ref(py), spec.clone()))?;
            Ok(Box::new(m) as Box<dyn PriorModel>)
        });
    }
    Ok(task)
}

/// Train one run of a Python task into `out` with the GIL released: `config_toml` is the
/// resolved configuration, `spec` the task description, `make_pool(n, seed)` builds an
/// environment pool of `n` environments, `model` the optional prior model.
#[pyfunction]
#[pyo3(signature = (config_toml, spec, out, make_pool, model=None))]
pub fn train_python_task(
    py: Python<'_>,
    config_toml: &str,
    spec: &Bound<'_, PyDict>,
    out: PathBuf,
    make_pool: Py<PyAny>,
    model: Option<Py<PyAny>>,
) -> PyResult<PathBuf> {
    let cfg = Config::from_toml_str(config_toml, &[]).map_err(runtime_err)?;
    let task = python_task(py, spec, make_pool, model).map_err(runtime_err)?;
    py.detach(|| train_task(cfg, task, &out, |_| {}))
        .map_err(runtime_err)?;
    Ok(out)
}

/// Continue the run in `run` of a Python task (serial) from its newest checkpoint, with the
/// GIL released.
#[pyfunction]
#[pyo3(signature = (run, spec, make_pool, model=None))]
pub fn resume_python_task(
    py: Python<'_>,
    run: PathBuf,
    spec: &Bound<'_, PyDict>,
    make_pool: Py<PyAny>,
    model: Option<Py<PyAny>>,
) -> PyResult<PathBuf> {
    let task = python_task(py, spec, make_pool, model).map_err(runtime_err)?;
    py.detach(|| resume_task(&run, task, |_| {}))
        .map_err(runtime_err)?;
    Ok(run)
}

/// A config text with `key=value` overrides applied, validated and resolved (TOML).
#[pyfunction]
pub fn resolve_config(text: &str, overrides: Vec<String>) -> PyResult<String> {
    Config::from_toml_str(text, &overrides)
        .map(|c| c.to_toml())
        .map_err(|e| pyo3::exceptions::PyValueError::new_err(format!("{e:#}")))
}

/// The generic configuration (TOML) of an algorithm, snake or kebab case.
#[pyfunction]
pub fn generic_config(algo: &str) -> PyResult<&'static str> {
    mixpg::config::AlgoName::parse(algo)
        .map(|a| a.generic_config())
        .ok_or_else(|| {
            pyo3::exceptions::PyValueError::new_err(format!(
                "unknown algorithm `{algo}` (known: mpg_v1, mpg_v2, ndpg, nadp, ddpg, td3, sac)"
            ))
        })
}
