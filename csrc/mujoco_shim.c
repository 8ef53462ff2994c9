/* Minimal C shim over MuJoCo (>= 2.2) for the `mujoco` cargo feature: load a model, step it,
 * and read/write qpos, qvel, ctrl and the bodies' inertial properties, so the Rust side needs
 * no knowledge of the mjModel/mjData struct layouts. */
#include <mujoco/mujoco.h>
#include <string.h>

void* mixpg_mj_load_xml(const char* path, char* error, int error_len) {
  return mj_loadXML(path, NULL, error, error_len);
}

void* mixpg_mj_make_data(const void* m) { return mj_makeData((const mjModel*)m); }

void mixpg_mj_delete(void* m, void* d) {
  if (d) mj_deleteData((mjData*)d);
  if (m) mj_deleteModel((mjModel*)m);
}

int mixpg_mj_nq(const void* m) { return ((const mjModel*)m)->nq; }
int mixpg_mj_nv(const void* m) { return ((const mjModel*)m)->nv; }
int mixpg_mj_nu(const void* m) { return ((const mjModel*)m)->nu; }
int mixpg_mj_nbody(const void* m) { return ((const mjModel*)m)->nbody; }
int mixpg_mj_version(void) { return mj_version(); }

/* Set qpos (nq), qvel (nv), zero qacc_warmstart and time, then mj_forward. */
void mixpg_mj_set_state(const void* m_, void* d_, const double* qpos, const double* qvel) {
  const mjModel* m = (const mjModel*)m_;
  mjData* d = (mjData*)d_;
  mj_resetData(m, d);
  memcpy(d->qpos, qpos, sizeof(mjtNum) * m->nq);
  memcpy(d->qvel, qvel, sizeof(mjtNum) * m->nv);
  mj_forward(m, d);
}

void mixpg_mj_get_state(const void* m_, const void* d_, double* qpos, double* qvel) {
  const mjModel* m = (const mjModel*)m_;
  const mjData* d = (const mjData*)d_;
  memcpy(qpos, d->qpos, sizeof(mjtNum) * m->nq);
  memcpy(qvel, d->qvel, sizeof(mjtNum) * m->nv);
}

/* Set ctrl (nu) and call mj_step `nstep` times. */
void mixpg_mj_step(const void* m_, void* d_, const double* ctrl, int nstep) {
  const mjModel* m = (const mjModel*)m_;
  mjData* d = (mjData*)d_;
  memcpy(d->ctrl, ctrl, sizeof(mjtNum) * m->nu);
  for (int i = 0; i < nstep; i++) mj_step(m, d);
}

/* Body mass, CoM position (3) and principal inertia (3) in the body frame. */
double mixpg_mj_body_inertial(const void* m_, int body, double* ipos, double* inertia) {
  const mjModel* m = (const mjModel*)m_;
  memcpy(ipos, m->body_ipos + 3 * body, sizeof(mjtNum) * 3);
  memcpy(inertia, m->body_inertia + 3 * body, sizeof(mjtNum) * 3);
  return m->body_mass[body];
}

/* Joint-space inertia matrix, dense nv x nv (row-major), at the current state. */
void mixpg_mj_full_m(const void* m_, const void* d_, double* dense) {
  mj_fullM((const mjModel*)m_, dense, ((const mjData*)d_)->qM);
}
