//! The real MuJoCo (feature `mujoco`, Debian's `libmujoco-dev`) running the reference
//! inverted-pendulum XML, through the small C shim in `csrc/mujoco_shim.c`. Used to cross-check
//! the Rust simulator; not needed by anything else.

use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::path::Path;

use super::FRAME_SKIP;

unsafe extern "C" {
    fn mixpg_mj_load_xml(path: *const c_char, error: *mut c_char, error_len: c_int) -> *mut c_void;
    fn mixpg_mj_make_data(m: *const c_void) -> *mut c_void;
    fn mixpg_mj_delete(m: *mut c_void, d: *mut c_void);
    fn mixpg_mj_nq(m: *const c_void) -> c_int;
    fn mixpg_mj_nv(m: *const c_void) -> c_int;
    fn mixpg_mj_nu(m: *const c_void) -> c_int;
    fn mixpg_mj_nbody(m: *const c_void) -> c_int;
    fn mixpg_mj_version() -> c_int;
    fn mixpg_mj_set_state(m: *const c_void, d: *mut c_void, qpos: *const f64, qvel: *const f64);
    fn mixpg_mj_get_state(m: *const c_void, d: *const c_void, qpos: *mut f64, qvel: *mut f64);
    fn mixpg_mj_step(m: *const c_void, d: *mut c_void, ctrl: *const f64, nstep: c_int);
    fn mixpg_mj_body_inertial(
        m: *const c_void,
        body: c_int,
        ipos: *mut f64,
        inertia: *mut f64,
    ) -> f64;
    fn mixpg_mj_full_m(m: *const c_void, d: *const c_void, dense: *mut f64);
}

/// Path of the shipped reference XML.
pub fn default_xml() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/inverted_pendulum.xml")
}

/// MuJoCo's version number (e.g. 222 for 2.2.2).
pub fn version() -> i32 {
    // SAFETY: a pure query without arguments.
    unsafe { mixpg_mj_version() }
}

/// One MuJoCo model and data for the 2-DoF, 1-actuator pendulum.
pub struct MujocoPendulum {
    model: *mut c_void,
    data: *mut c_void,
}

/// Inertial properties of one body as MuJoCo compiled them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BodyInertial {
    /// Mass (kg).
    pub mass: f64,
    /// CoM in the body frame.
    pub ipos: [f64; 3],
    /// Principal inertia about the CoM.
    pub inertia: [f64; 3],
}

impl MujocoPendulum {
    /// Load an XML file; it must have 2 position and velocity coordinates and 1 actuator.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let cpath = CString::new(path.to_string_lossy().as_bytes())?;
        let mut err = vec![0 as c_char; 1000];
        // SAFETY: valid NUL-terminated path and an error buffer of the stated length.
        let model = unsafe { mixpg_mj_load_xml(cpath.as_ptr(), err.as_mut_ptr(), 1000) };
        if model.is_null() {
            // SAFETY: MuJoCo NUL-terminates the error message within the buffer.
            let msg = unsafe { CStr::from_ptr(err.as_ptr()) };
            anyhow::bail!("mj_loadXML({}): {}", path.display(), msg.to_string_lossy());
        }
        // SAFETY: `model` is a valid mjModel.
        let data = unsafe { mixpg_mj_make_data(model) };
        let sim = Self { model, data };
        anyhow::ensure!(!data.is_null(), "mj_makeData failed");
        // SAFETY: valid model pointer.
        let dims = unsafe { (mixpg_mj_nq(model), mixpg_mj_nv(model), mixpg_mj_nu(model)) };
        anyhow::ensure!(
            dims == (2, 2, 1),
            "expected nq = nv = 2, nu = 1, got {dims:?}"
        );
        Ok(sim)
    }

    /// Set `[p, θ, ṗ, θ̇]` (resets the rest of mjData and runs `mj_forward`).
    pub fn set_state(&mut self, s: [f64; 4]) {
        // SAFETY: nq = nv = 2 checked at load; the arrays have 2 elements each.
        unsafe { mixpg_mj_set_state(self.model, self.data, s[..2].as_ptr(), s[2..].as_ptr()) }
    }

    /// Current `[p, θ, ṗ, θ̇]`.
    pub fn state(&self) -> [f64; 4] {
        let mut s = [0.0; 4];
        let (qpos, qvel) = s.split_at_mut(2);
        // SAFETY: nq = nv = 2 checked at load.
        unsafe { mixpg_mj_get_state(self.model, self.data, qpos.as_mut_ptr(), qvel.as_mut_ptr()) };
        s
    }

    /// One environment step: `ctrl = action` (no clipping here), `FRAME_SKIP` calls of `mj_step`.
    pub fn step(&mut self, action: f64) {
        let ctrl = [action];
        // SAFETY: nu = 1 checked at load.
        unsafe { mixpg_mj_step(self.model, self.data, ctrl.as_ptr(), FRAME_SKIP as c_int) }
    }

    /// Number of bodies (including the world body 0).
    pub fn num_bodies(&self) -> usize {
        // SAFETY: valid model pointer.
        unsafe { mixpg_mj_nbody(self.model) as usize }
    }

    /// Inertial properties of body `body` (< `num_bodies()`).
    pub fn body_inertial(&self, body: usize) -> BodyInertial {
        assert!(body < self.num_bodies());
        let (mut ipos, mut inertia) = ([0.0; 3], [0.0; 3]);
        // SAFETY: body index checked; 3-element output arrays.
        let mass = unsafe {
            mixpg_mj_body_inertial(
                self.model,
                body as c_int,
                ipos.as_mut_ptr(),
                inertia.as_mut_ptr(),
            )
        };
        BodyInertial {
            mass,
            ipos,
            inertia,
        }
    }

    /// The dense 2 × 2 joint-space inertia matrix at the current state.
    pub fn mass_matrix(&self) -> [[f64; 2]; 2] {
        let mut dense = [0.0; 4];
        // SAFETY: nv = 2, so the dense matrix has 4 elements.
        unsafe { mixpg_mj_full_m(self.model, self.data, dense.as_mut_ptr()) };
        [[dense[0], dense[1]], [dense[2], dense[3]]]
    }
}

impl Drop for MujocoPendulum {
    fn drop(&mut self) {
        // SAFETY: pointers come from mj_loadXML / mj_makeData and are freed once.
        unsafe { mixpg_mj_delete(self.model, self.data) }
    }
}
