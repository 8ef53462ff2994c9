//! [`Task`]: a task as a value (its description, a factory of its true simulator and,
//! optionally, factories of its prior model), and the registry that names tasks for configs
//! and the command line. The built-in tasks are registered here through the same
//! [`Task`] values a crate that depends on mixpg builds for its own tasks.

use std::fmt;
use std::sync::{Arc, LazyLock, RwLock};

use anyhow::{Result, bail};

use super::{AutodiffModel, canonical_name};
use super::{
    Env, PriorModel, TaskSpec, TensorModel, check_same_shape, lqr, path_tracking, pendulum,
};

/// Builds a task's simulator with `num_agents` agents, seeded with `seed`.
pub type EnvFactory = dyn Fn(usize, u64) -> Result<Box<dyn Env>> + Send + Sync;
/// Builds a task's prior model.
pub type ModelFactory = dyn Fn() -> Result<Box<dyn PriorModel>> + Send + Sync;

/// A task: what the trainers, the grid, evaluation and `analyze-bias` need of it. Cheap to
/// clone (shared factories).
#[derive(Clone)]
pub struct Task {
    spec: Arc<TaskSpec>,
    env: Arc<EnvFactory>,
    model: Option<Arc<ModelFactory>>,
    exact_model: Option<Arc<ModelFactory>>,
}

impl fmt::Debug for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Task")
            .field("spec", &self.spec)
            .field("model", &self.model.is_some())
            .field("exact_model", &self.exact_model.is_some())
            .finish()
    }
}

impl Task {
    /// A task described by `spec` whose simulator `env(num_agents, seed)` builds (no prior
    /// model: the model-free algorithms only, until [`Task::with_model`]).
    pub fn new(
        spec: TaskSpec,
        env: impl Fn(usize, u64) -> Result<Box<dyn Env>> + Send + Sync + 'static,
    ) -> Result<Self> {
        spec.validate()?;
        Ok(Self {
            spec: Arc::new(spec),
            env: Arc::new(env),
            model: None,
            exact_model: None,
        })
    }

    /// The task with a prior model with a host step and its vector-Jacobian product (the
    /// fused core's speed); the model MPG and n-step ADP learn through.
    pub fn with_model(
        mut self,
        model: impl Fn() -> Result<Box<dyn PriorModel>> + Send + Sync + 'static,
    ) -> Self {
        self.model = Some(Arc::new(model));
        self
    }

    /// The task with a prior model written on burn tensors, differentiated by burn autodiff
    /// ([`AutodiffModel`]).
    pub fn with_tensor_model<M: TensorModel + 'static>(
        self,
        model: impl Fn() -> Result<M> + Send + Sync + 'static,
    ) -> Self {
        self.with_model(move || Ok(Box::new(AutodiffModel::new(model()?)) as Box<dyn PriorModel>))
    }

    /// The task with an exact model of its simulator: `task.model_mismatch = false` trains
    /// with it, and `analyze-bias` takes its reference gradient through it.
    pub fn with_exact_model(
        mut self,
        model: impl Fn() -> Result<Box<dyn PriorModel>> + Send + Sync + 'static,
    ) -> Self {
        self.exact_model = Some(Arc::new(model));
        self
    }

    /// The task description.
    pub fn spec(&self) -> &TaskSpec {
        &self.spec
    }

    /// The registered name.
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// The simulator with `num_agents` agents, seeded with `seed`.
    pub fn make_env(&self, num_agents: usize, seed: u64) -> Result<Box<dyn Env>> {
        let env = (self.env)(num_agents, seed)?;
        check_same_shape("simulator", env.spec(), &self.spec)?;
        if env.num_agents() != num_agents {
            bail!(
                "the simulator of task `{}` was asked for {num_agents} agents and has {}",
                self.spec.name,
                env.num_agents()
            );
        }
        Ok(env)
    }

    /// Whether the task has a prior model.
    pub fn has_model(&self) -> bool {
        self.model.is_some()
    }

    /// Whether the task has an exact model of its simulator.
    pub fn has_exact_model(&self) -> bool {
        self.exact_model.is_some()
    }

    /// The prior model (`mismatch`) or the exact model of the simulator (`!mismatch`).
    pub fn make_model(&self, mismatch: bool) -> Result<Box<dyn PriorModel>> {
        let (factory, what) = if mismatch {
            (&self.model, "a prior model")
        } else {
            (
                &self.exact_model,
                "an exact model (task.model_mismatch = false)",
            )
        };
        let Some(factory) = factory else {
            bail!(
                "task `{}` has no {what}; give it one (Task::with_model in Rust, `model=` in \
                 Python) or use a model-free algorithm (td3, sac, ddpg, ndpg)",
                self.spec.name
            );
        };
        let model = factory()?;
        check_same_shape("prior model", model.spec(), &self.spec)?;
        Ok(model)
    }
}

/// The built-in tasks as values.
fn builtin_tasks() -> Vec<Task> {
    let task = |spec: TaskSpec, env: Box<EnvFactory>, model: fn(bool) -> Box<dyn PriorModel>| {
        Task::new(spec, env)
            .expect("built-in task specs are valid")
            .with_model(move || Ok(model(true)))
            .with_exact_model(move || Ok(model(false)))
    };
    vec![
        task(
            path_tracking::spec(),
            Box::new(|n, seed| Ok(Box::new(path_tracking::PathTrackingEnv::new(n, seed)))),
            |mismatch| {
                Box::new(path_tracking::PathTrackingModel::new(
                    path_tracking::PathTrackingModelConfig::mismatch_flag(mismatch),
                ))
            },
        ),
        task(
            pendulum::spec(),
            Box::new(|n, seed| Ok(Box::new(pendulum::PendulumEnv::new(n, seed)))),
            |mismatch| {
                Box::new(pendulum::PendulumModel::new(if mismatch {
                    pendulum::PendulumModelConfig::mismatched()
                } else {
                    pendulum::PendulumModelConfig::exact()
                }))
            },
        ),
        task(
            lqr::spec(),
            Box::new(|n, seed| Ok(Box::new(lqr::LqrEnv::new(n, seed)))),
            |mismatch| Box::new(lqr::LqrModel::new(mismatch)),
        ),
    ]
}

static REGISTRY: LazyLock<RwLock<Vec<Task>>> = LazyLock::new(|| RwLock::new(builtin_tasks()));

/// Register `task` under its name, so that configs (`task.name`), grids and the command line
/// can name it; an error if the name is taken.
pub fn register(task: Task) -> Result<()> {
    let mut tasks = REGISTRY.write().unwrap_or_else(|e| e.into_inner());
    if tasks.iter().any(|t| t.name() == task.name()) {
        bail!("a task named `{}` is already registered", task.name());
    }
    tasks.push(task);
    Ok(())
}

/// The registered task named `name` (snake or kebab case; `inverted-pendulum` = `pendulum`).
pub fn lookup(name: &str) -> Result<Task> {
    let wanted = canonical_name(name);
    let tasks = REGISTRY.read().unwrap_or_else(|e| e.into_inner());
    match tasks.iter().find(|t| t.name() == wanted) {
        Some(t) => Ok(t.clone()),
        None => bail!(
            "unknown task `{name}` (registered: {}); a task of your own is registered with \
             mixpg::env::register, or trained from Python with mixpg.train(..., env=...)",
            tasks.iter().map(Task::name).collect::<Vec<_>>().join(", ")
        ),
    }
}

/// Every registered task, the built-in ones first.
pub fn registered() -> Vec<Task> {
    REGISTRY.read().unwrap_or_else(|e| e.into_inner()).clone()
}
