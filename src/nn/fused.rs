//! Hand-written forward and backward passes of the networks on the host, on top of the `gemm`
//! crate: the fast path selected by `network.kernels = "fused"`.
//!
//! Each layer is one GEMM followed by one pass that adds the bias and applies ELU in place;
//! the backward pass of ELU reads the saved output (`ELU'(x) = out + 1` for `x < 0`). All
//! activations live in a reusable tape ([`MlpTape`], [`GaussianTape`]), so after the first call
//! with a given batch size no pass allocates. Parameters are read straight from
//! [`ParamSet::values`](super::ParamSet::values), in the same layout as the burn path
//! (`w` `[in, out]`, `b` `[1, out]`), which stays the reference these passes are tested against.
//!
//! GEMMs use every thread of the current rayon pool when it has more than one and the product
//! is large; a one-thread pool gives one-thread, reproducible passes.

use std::cell::RefCell;

use gemm::Parallelism;

use super::net::{DetPolicy, GaussianPolicy, LOG_STD_MAX, LOG_STD_MIN, Mlp, QNet};

/// Multiply-adds below which a GEMM always runs on one thread.
const PARALLEL_MIN_FLOPS: usize = 128 * 128 * 128;

/// `dst[m, n] (+)= a[m, k] · b[k, n]`, `dst` row-major; `a` and `b` given by their row and
/// column strides (so a transpose is a stride swap). Accumulates into `dst` when `accumulate`.
#[allow(clippy::too_many_arguments)]
fn matmul(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    a: &[f32],
    [a_rs, a_cs]: [usize; 2],
    b: &[f32],
    [b_rs, b_cs]: [usize; 2],
    accumulate: bool,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(dst.len() >= m * n, "matmul: destination too small");
    if k == 0 {
        if !accumulate {
            dst[..m * n].fill(0.0);
        }
        return;
    }
    assert!(
        (m - 1) * a_rs + (k - 1) * a_cs < a.len(),
        "matmul: lhs too small"
    );
    assert!(
        (k - 1) * b_rs + (n - 1) * b_cs < b.len(),
        "matmul: rhs too small"
    );
    if matmul_thin(m, n, k, dst, a, [a_rs, a_cs], b, [b_rs, b_cs], accumulate) {
        return;
    }
    let threads = rayon::current_num_threads();
    let parallelism = if threads > 1 && m * n * k >= PARALLEL_MIN_FLOPS {
        Parallelism::Rayon(threads)
    } else {
        Parallelism::None
    };
    // SAFETY: the asserts above keep every index the strides reach inside the slices; `dst`
    // is exclusively borrowed and does not alias `a` or `b`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.as_ptr(),
            a_cs as isize,
            a_rs as isize,
            b.as_ptr(),
            b_cs as isize,
            b_rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// Defines `fn $name` whose body is compiled three times (for AVX-512, for AVX2 and portable)
/// and runs the widest version the CPU has. All three give the same results: the body is plain
/// Rust, which the compiler never contracts into FMAs.
macro_rules! multiversion {
    ($(#[$doc:meta])* fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $body:block) => {
        $(#[$doc])*
        fn $name($($arg: $ty),*) {
            #[inline(always)]
            fn portable($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                fn avx512($($arg: $ty),*) {
                    portable($($arg),*)
                }
                #[target_feature(enable = "avx2")]
                fn avx2($($arg: $ty),*) {
                    portable($($arg),*)
                }
                match $crate::nn::fused::widest_isa() {
                    // SAFETY: `widest_isa` returns only a set the CPU has.
                    $crate::nn::fused::Isa::Avx512 => return unsafe { avx512($($arg),*) },
                    // SAFETY: as above.
                    $crate::nn::fused::Isa::Avx2 => return unsafe { avx2($($arg),*) },
                    $crate::nn::fused::Isa::Portable => {}
                }
            }
            portable($($arg),*)
        }
    };
}

pub(crate) use multiversion;

/// The instruction sets [`multiversion!`] compiles each kernel for.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Isa {
    Avx512,
    Avx2,
    Portable,
}

#[cfg(target_arch = "x86_64")]
impl Isa {
    /// Whether this CPU can run the set.
    fn supported(self) -> bool {
        match self {
            Isa::Avx512 => std::arch::is_x86_feature_detected!("avx512f"),
            Isa::Avx2 => std::arch::is_x86_feature_detected!("avx2"),
            Isa::Portable => true,
        }
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
thread_local! {
    /// A narrower set the tests pin on their thread, to run every version on one CPU.
    static PINNED_ISA: std::cell::Cell<Option<Isa>> = const { std::cell::Cell::new(None) };
}

/// The widest set the CPU has (in tests, the one pinned on this thread, if any).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) fn widest_isa() -> Isa {
    #[cfg(test)]
    if let Some(isa) = PINNED_ISA.with(|p| p.get()) {
        return isa;
    }
    [Isa::Avx512, Isa::Avx2]
        .into_iter()
        .find(|isa| isa.supported())
        .unwrap_or(Isa::Portable)
}

/// An output at most this wide makes a product "thin": [`matmul_thin`] computes it with plain
/// loops, 2–3× faster there than `gemm`'s partly filled micro-kernels (a layer's output of one
/// Q value or a few actions, the input gradient of a few observations). Products thin in `m`
/// or `k` stay on `gemm`, which handles them well.
const THIN: usize = 8;

/// [`matmul`] by plain vectorised loops when the output is thin and the layout is one of the
/// two the networks produce; returns whether it did. Results are deterministic and match
/// `gemm`'s to rounding (tested below).
#[allow(clippy::too_many_arguments)]
fn matmul_thin(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    a: &[f32],
    [a_rs, a_cs]: [usize; 2],
    b: &[f32],
    [b_rs, b_cs]: [usize; 2],
    accumulate: bool,
) -> bool {
    let dst = &mut dst[..m * n];
    if n <= THIN && a_cs == 1 {
        // A few columns, each a dot product with `a`'s contiguous rows.
        let mut cols = vec![0.0f32; n * k];
        for (j, col) in cols.chunks_exact_mut(k).enumerate() {
            col.iter_mut()
                .enumerate()
                .for_each(|(kk, c)| *c = b[kk * b_rs + j * b_cs]);
        }
        columns_by_dot(k, dst, a, a_rs, &cols, accumulate);
        true
    } else if n <= THIN && a_rs == 1 {
        // A few columns of `aᵀ·b` (a weight gradient): accumulated over `k` as axpys.
        let mut cols = vec![0.0f32; n * m];
        columns_by_axpy(m, k, &mut cols, a, a_cs, b, [b_rs, b_cs]);
        for (r, row) in dst.chunks_exact_mut(n).enumerate() {
            for (j, d) in row.iter_mut().enumerate() {
                let v = cols[j * m + r];
                *d = if accumulate { *d + v } else { v };
            }
        }
        true
    } else {
        false
    }
}

multiversion! {
    /// `dst[i, j] (+)= a[i, :] · cols[j]` with `a`'s rows contiguous at stride `a_rs` and the
    /// columns of `b` gathered into `cols` (`[n][k]`).
    fn columns_by_dot(
        k: usize,
        dst: &mut [f32],
        a: &[f32],
        a_rs: usize,
        cols: &[f32],
        accumulate: bool,
    ) {
        let n = cols.len() / k;
        const LANES: usize = 16;
        for (i, out) in dst.chunks_exact_mut(n).enumerate() {
            let row = &a[i * a_rs..i * a_rs + k];
            for (j, col) in cols.chunks_exact(k).enumerate() {
                let mut acc = [0.0f32; LANES];
                for (x, y) in row.chunks_exact(LANES).zip(col.chunks_exact(LANES)) {
                    for l in 0..LANES {
                        acc[l] += x[l] * y[l];
                    }
                }
                // A pairwise sum of the lanes (a few shuffles), not a chain of 16 adds.
                let mut width = LANES / 2;
                while width > 0 {
                    for l in 0..width {
                        acc[l] += acc[l + width];
                    }
                    width /= 2;
                }
                let tail = k - k % LANES;
                let mut sum = acc[0];
                sum += row[tail..].iter().zip(&col[tail..]).map(|(x, y)| x * y).sum::<f32>();
                let d = &mut out[j];
                *d = if accumulate { *d + sum } else { sum };
            }
        }
    }
}

multiversion! {
    /// `cols[j] = Σ_kk a[kk, :] · b[kk, j]` into `cols` (`[n][m]`), `aᵀ`'s rows contiguous at
    /// stride `a_cs`.
    fn columns_by_axpy(
        m: usize,
        k: usize,
        cols: &mut [f32],
        a: &[f32],
        a_cs: usize,
        b: &[f32],
        b_strides: [usize; 2],
    ) {
        let [b_rs, b_cs] = b_strides;
        for kk in 0..k {
            let a_row = &a[kk * a_cs..kk * a_cs + m];
            for (j, col) in cols.chunks_exact_mut(m).enumerate() {
                let c = b[kk * b_rs + j * b_cs];
                col.iter_mut().zip(a_row).for_each(|(d, x)| *d += c * x);
            }
        }
    }
}

/// `exp(x)` for `x ≤ 0` (Cephes' polynomial, ~1 ulp), branch-free and with integer bit
/// tricks instead of float-to-int casts, so the ELU loops vectorise.
#[inline(always)]
fn exp_nonpositive(x: f32) -> f32 {
    const ROUND: f32 = 12_582_912.0; // 1.5·2²³: adding it rounds to an integer
    let x = x.max(-87.0);
    let t = x * std::f32::consts::LOG2_E + ROUND;
    let n = t - ROUND;
    // In [2²³, 2²⁴) one ulp is 1, so the bits of `t` are those of ROUND plus the integer n.
    let n_bits = t.to_bits().wrapping_sub(ROUND.to_bits());
    let r = x - n * 0.693_359_4 + n * 2.121_944_4e-4;
    let p = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
        + 1.666_666_5e-1)
        * r
        + 0.5;
    let y = p * r * r + r + 1.0;
    y * f32::from_bits(n_bits.wrapping_add(127) << 23)
}

multiversion! {
    /// Adds the bias `b` to every row of `x` and, when `elu`, applies ELU, in one pass.
    fn bias_act_inplace(x: &mut [f32], b: &[f32], elu: bool) {
        for row in x.chunks_exact_mut(b.len()) {
            if elu {
                for (v, c) in row.iter_mut().zip(b) {
                    let y = *v + c;
                    let e = exp_nonpositive(y.min(0.0)) - 1.0;
                    *v = if y > 0.0 { y } else { e };
                }
            } else {
                row.iter_mut().zip(b).for_each(|(v, c)| *v += c);
            }
        }
    }
}

multiversion! {
    /// ELU backward in place from the saved outputs `y`: `d ← d·ELU'`, with
    /// `ELU'(x) = 1` for `x > 0` and `y + 1` otherwise.
    fn elu_backward_inplace(d: &mut [f32], y: &[f32]) {
        for (d, y) in d.iter_mut().zip(y) {
            let slope = if *y > 0.0 { 1.0 } else { y + 1.0 };
            *d *= slope;
        }
    }
}

multiversion! {
    /// Adds the column sums of `g` (rows of `db.len()`) into `db`: a bias gradient.
    fn add_column_sums(db: &mut [f32], g: &[f32]) {
        for row in g.chunks_exact(db.len()) {
            db.iter_mut().zip(row).for_each(|(d, x)| *d += x);
        }
    }
}

/// Scratch buffers of a backward pass. Every tape has its own; a caller running many tapes'
/// backward passes in turn (BPTT) shares one, which stays in cache.
#[derive(Default, Clone)]
pub struct Scratch {
    /// The gradient w.r.t. the network's output, set by the caller.
    grad: Vec<f32>,
    /// `hidden[l]`: the gradient w.r.t. hidden layer `l`'s output. One buffer per layer, so
    /// each keeps its size between calls and is never re-filled.
    hidden: Vec<Vec<f32>>,
    /// The gradient w.r.t. the scaled input.
    next: Vec<f32>,
    input: Vec<f32>,
    /// Transposed copies of the weights (`[out, in]`), when set by [`Scratch::transpose`]:
    /// the input-gradient GEMMs then read them in the layout that packs fastest.
    weights_t: Vec<Vec<f32>>,
}

impl Scratch {
    /// Keeps transposed copies of the weights in `params` of `mlp` for the backward passes
    /// run with this scratch, until the next call; the caller calls it again whenever the
    /// parameters change (BPTT: once per gradient, for its H + 1 backward passes).
    pub fn transpose(&mut self, mlp: &Mlp, params: &[Vec<f32>]) {
        let layers = mlp.n_layers();
        self.weights_t.resize_with(layers, Vec::new);
        for (l, wt) in self.weights_t.iter_mut().enumerate() {
            let (i, o) = (mlp.sizes[l], mlp.sizes[l + 1]);
            let w = &params[2 * l];
            wt.resize(i * o, 0.0);
            // In 16×16 tiles, so both the reads and the writes stay within a few cache lines.
            const TILE: usize = 16;
            for r0 in (0..i).step_by(TILE) {
                for c0 in (0..o).step_by(TILE) {
                    for r in r0..(r0 + TILE).min(i) {
                        for c in c0..(c0 + TILE).min(o) {
                            wt[c * i + r] = w[r * o + c];
                        }
                    }
                }
            }
        }
    }
}

/// Saved activations of one forward pass; reused between calls.
#[derive(Default, Clone)]
pub struct MlpTape {
    batch: usize,
    /// The scaled input `[batch, in]`.
    input: Vec<f32>,
    /// Each layer's output: ELU-activated for hidden layers, linear for the last.
    layers: Vec<Vec<f32>>,
    /// `tanh` of the output (deterministic policy).
    tanh: Vec<f32>,
    /// The head's result (the action of a deterministic policy).
    head: Vec<f32>,
    scratch: RefCell<Scratch>,
}

impl std::fmt::Debug for MlpTape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MlpTape")
            .field("batch", &self.batch)
            .finish_non_exhaustive()
    }
}

impl MlpTape {
    /// The batch size of the last forward pass.
    pub fn batch(&self) -> usize {
        self.batch
    }
}

impl Mlp {
    fn n_layers(&self) -> usize {
        self.sizes.len() - 1
    }

    /// Input size.
    pub fn in_dim(&self) -> usize {
        self.sizes[0]
    }

    /// Output size.
    pub fn out_dim(&self) -> usize {
        self.sizes[self.n_layers()]
    }

    /// Forward pass on the unscaled input already in `tape.input`.
    fn forward_tape(&self, params: &[Vec<f32>], batch: usize, tape: &mut MlpTape) {
        let layers = self.n_layers();
        assert_eq!(params.len(), 2 * layers, "MLP parameter count");
        assert_eq!(tape.input.len(), batch * self.in_dim(), "MLP input size");
        tape.batch = batch;
        let scale = &self.in_scale_host;
        for row in tape.input.chunks_exact_mut(scale.len()) {
            row.iter_mut().zip(scale).for_each(|(x, s)| *x *= s);
        }
        tape.layers.resize_with(layers, Vec::new);
        for l in 0..layers {
            let (i, o) = (self.sizes[l], self.sizes[l + 1]);
            let (prev, rest) = tape.layers.split_at_mut(l);
            let out = &mut rest[0];
            let inp: &[f32] = if l == 0 { &tape.input } else { &prev[l - 1] };
            out.resize(batch * o, 0.0);
            let (w, b) = (&params[2 * l], &params[2 * l + 1]);
            assert_eq!((w.len(), b.len()), (i * o, o), "MLP parameter shape");
            matmul(batch, o, i, out, inp, [i, 1], w, [o, 1], false);
            bias_act_inplace(out, b, l + 1 < layers);
        }
    }

    /// Host forward `[batch, in] → [batch, out]`, saving what backward needs in `tape`.
    pub fn forward_host<'t>(
        &self,
        params: &[Vec<f32>],
        x: &[f32],
        batch: usize,
        tape: &'t mut MlpTape,
    ) -> &'t [f32] {
        tape.input.clear();
        tape.input.extend_from_slice(x);
        self.forward_tape(params, batch, tape);
        &tape.layers[self.n_layers() - 1]
    }

    /// Backward from the output gradient `[batch, out]` given in `s.grad`.
    fn backward_tape(
        &self,
        params: &[Vec<f32>],
        tape: &MlpTape,
        s: &mut Scratch,
        mut d_params: Option<&mut [Vec<f32>]>,
        d_x: Option<&mut [f32]>,
    ) {
        let batch = tape.batch;
        let layers = self.n_layers();
        let Scratch {
            grad,
            hidden,
            next,
            weights_t,
            ..
        } = s;
        hidden.resize_with(layers, Vec::new);
        for l in (0..layers).rev() {
            let (i, o) = (self.sizes[l], self.sizes[l + 1]);
            let inp: &[f32] = if l == 0 {
                &tape.input
            } else {
                &tape.layers[l - 1]
            };
            let (below, at) = hidden.split_at_mut(l);
            let d_out: &[f32] = if l + 1 == layers { grad } else { &at[0] };
            if let Some(dp) = d_params.as_deref_mut() {
                matmul(
                    i,
                    o,
                    batch,
                    &mut dp[2 * l],
                    inp,
                    [1, i],
                    d_out,
                    [o, 1],
                    true,
                );
                add_column_sums(&mut dp[2 * l + 1], d_out);
            }
            if l == 0 && d_x.is_none() {
                return;
            }
            let d_in = if l > 0 { &mut below[l - 1] } else { &mut *next };
            d_in.resize(batch * i, 0.0);
            match weights_t.get(l) {
                Some(wt) => matmul(batch, i, o, d_in, d_out, [o, 1], wt, [i, 1], false),
                None => matmul(
                    batch,
                    i,
                    o,
                    d_in,
                    d_out,
                    [o, 1],
                    &params[2 * l],
                    [1, o],
                    false,
                ),
            }
            if l > 0 {
                elu_backward_inplace(d_in, inp);
            }
        }
        if let Some(dx) = d_x {
            assert_eq!(dx.len(), next.len(), "MLP input gradient size");
            let scale = &self.in_scale_host;
            for (dst, src) in dx
                .chunks_exact_mut(scale.len())
                .zip(next.chunks_exact(scale.len()))
            {
                for ((d, g), c) in dst.iter_mut().zip(src).zip(scale) {
                    *d = g * c;
                }
            }
        }
    }

    /// Backward from `d_out` `[batch, out]`: adds parameter gradients into `d_params` (same
    /// layout as params) when given, writes the input gradient into `d_x` when given.
    pub fn backward_host(
        &self,
        params: &[Vec<f32>],
        tape: &MlpTape,
        d_out: &[f32],
        d_params: Option<&mut [Vec<f32>]>,
        d_x: Option<&mut [f32]>,
    ) {
        assert_eq!(
            d_out.len(),
            tape.batch * self.out_dim(),
            "MLP output gradient"
        );
        let mut s = tape.scratch.borrow_mut();
        s.grad.clear();
        s.grad.extend_from_slice(d_out);
        self.backward_tape(params, tape, &mut s, d_params, d_x);
    }
}

impl DetPolicy {
    /// Host forward: actions `[batch, act]` for observations `[batch, obs]`.
    pub fn forward_host<'t>(
        &self,
        params: &[Vec<f32>],
        obs: &[f32],
        batch: usize,
        tape: &'t mut MlpTape,
    ) -> &'t [f32] {
        self.mlp.forward_host(params, obs, batch, tape);
        let MlpTape {
            layers, tanh, head, ..
        } = tape;
        let z = &layers[layers.len() - 1];
        tanh.clear();
        tanh.extend(z.iter().map(|v| v.tanh()));
        head.clear();
        let d = self.bounds.half_host.len();
        head.extend(
            tanh.iter()
                .enumerate()
                .map(|(i, t)| self.bounds.map_host(i % d, *t)),
        );
        head
    }

    /// Backward from `d_act` `[batch, act]` (see [`Mlp::backward_host`]).
    pub fn backward_host(
        &self,
        params: &[Vec<f32>],
        tape: &MlpTape,
        d_act: &[f32],
        d_params: Option<&mut [Vec<f32>]>,
        d_obs: Option<&mut [f32]>,
    ) {
        let mut s = tape.scratch.borrow_mut();
        self.backward_host_in(&mut s, params, tape, d_act, d_params, d_obs);
    }

    /// [`Self::backward_host`] with the scratch buffers `s` instead of the tape's own.
    pub fn backward_host_in(
        &self,
        s: &mut Scratch,
        params: &[Vec<f32>],
        tape: &MlpTape,
        d_act: &[f32],
        d_params: Option<&mut [Vec<f32>]>,
        d_obs: Option<&mut [f32]>,
    ) {
        assert_eq!(d_act.len(), tape.tanh.len(), "policy action gradient");
        let half = &self.bounds.half_host;
        let d = half.len();
        s.grad.clear();
        s.grad.extend(
            d_act
                .iter()
                .zip(&tape.tanh)
                .enumerate()
                .map(|(i, (g, t))| g * half[i % d] * (1.0 - t * t)),
        );
        self.mlp.backward_tape(params, tape, s, d_params, d_obs);
    }
}

impl QNet {
    /// Host forward: Q values `[batch]` of observations `[batch, obs]` and actions
    /// `[batch, act]`.
    pub fn forward_host<'t>(
        &self,
        params: &[Vec<f32>],
        obs: &[f32],
        act: &[f32],
        batch: usize,
        tape: &'t mut MlpTape,
    ) -> &'t [f32] {
        let n_in = self.mlp.in_dim();
        assert!(
            batch > 0 && obs.len().is_multiple_of(batch),
            "Q observation size"
        );
        let (o, a) = (obs.len() / batch, act.len() / batch);
        assert_eq!((o + a, act.len()), (n_in, batch * a), "Q input size");
        tape.input.clear();
        for (so, sa) in obs.chunks_exact(o).zip(act.chunks_exact(a)) {
            tape.input.extend_from_slice(so);
            tape.input.extend_from_slice(sa);
        }
        self.mlp.forward_tape(params, batch, tape);
        &tape.layers[tape.layers.len() - 1]
    }

    /// Backward from `d_q` `[batch]`: parameter gradients added into `d_params`, input
    /// gradients written into `d_obs` and `d_act` (each when given).
    pub fn backward_host(
        &self,
        params: &[Vec<f32>],
        tape: &MlpTape,
        d_q: &[f32],
        d_params: Option<&mut [Vec<f32>]>,
        d_obs: Option<&mut [f32]>,
        d_act: Option<&mut [f32]>,
    ) {
        let batch = tape.batch;
        assert_eq!(d_q.len(), batch, "Q output gradient");
        let mut s = tape.scratch.borrow_mut();
        s.grad.clear();
        s.grad.extend_from_slice(d_q);
        if d_obs.is_none() && d_act.is_none() {
            self.mlp.backward_tape(params, tape, &mut s, d_params, None);
            return;
        }
        let n_in = self.mlp.in_dim();
        let mut dx = std::mem::take(&mut s.input);
        dx.resize(batch * n_in, 0.0);
        self.mlp
            .backward_tape(params, tape, &mut s, d_params, Some(&mut dx));
        let o = d_obs
            .as_ref()
            .map(|d| d.len() / batch)
            .unwrap_or_else(|| n_in - d_act.as_ref().map_or(0, |d| d.len() / batch));
        if let Some(d) = d_obs {
            for (dst, row) in d.chunks_exact_mut(o).zip(dx.chunks_exact(n_in)) {
                dst.copy_from_slice(&row[..o]);
            }
        }
        if let Some(d) = d_act {
            for (dst, row) in d.chunks_exact_mut(n_in - o).zip(dx.chunks_exact(n_in)) {
                dst.copy_from_slice(&row[o..]);
            }
        }
        s.input = dx;
    }
}

/// Saved state of one Gaussian-policy sample; reused between calls.
#[derive(Default)]
pub struct GaussianTape {
    /// The network's tape.
    mlp: MlpTape,
    /// Standard-normal noise `[batch, act]`.
    eps: Vec<f32>,
    /// Clipped log-std.
    log_std: Vec<f32>,
    /// Whether the raw log-std was inside the clip range (the clip passes gradients there).
    inside: Vec<bool>,
    /// Pre-squash action `u = mean + std·ε`.
    u: Vec<f32>,
    /// The action (`high ⊙ tanh(u)` when squashed, else `u`).
    action: Vec<f32>,
    /// `log π(a|s)` `[batch]`.
    log_prob: Vec<f32>,
    d_out: RefCell<Vec<f32>>,
}

impl GaussianTape {
    /// The action of the last sample `[batch, act]`.
    pub fn action(&self) -> &[f32] {
        &self.action
    }

    /// `log π(a|s)` of the last sample `[batch]`.
    pub fn log_prob(&self) -> &[f32] {
        &self.log_prob
    }
}

/// `log(1 + e^x)`, stable for any `x`.
fn softplus(x: f32) -> f32 {
    x.max(0.0) + (-x.abs()).exp().ln_1p()
}

impl GaussianPolicy {
    /// Host reparameterised sample for observations `[batch, obs]` and standard-normal noise
    /// `eps` `[batch, act]`; read the action and `log π` from the tape.
    pub fn sample_host(
        &self,
        params: &[Vec<f32>],
        obs: &[f32],
        eps: &[f32],
        batch: usize,
        tape: &mut GaussianTape,
    ) {
        let d = self.act_dim;
        assert_eq!(eps.len(), batch * d, "Gaussian noise size");
        let half_log_2pi = 0.5 * (2.0 * std::f32::consts::PI).ln();
        let t = &mut *tape;
        let out = self.mlp.forward_host(params, obs, batch, &mut t.mlp);
        t.eps.clear();
        t.eps.extend_from_slice(eps);
        t.log_std.resize(batch * d, 0.0);
        t.inside.resize(batch * d, false);
        t.u.resize(batch * d, 0.0);
        t.action.resize(batch * d, 0.0);
        t.log_prob.resize(batch, 0.0);
        for r in 0..batch {
            let row = &out[r * 2 * d..(r + 1) * 2 * d];
            let mut lp = 0.0f32;
            let mut log_det = 0.0f32;
            for j in 0..d {
                let k = r * d + j;
                let raw = row[d + j];
                let ls = raw.clamp(LOG_STD_MIN, LOG_STD_MAX);
                t.inside[k] = (LOG_STD_MIN..=LOG_STD_MAX).contains(&raw);
                t.log_std[k] = ls;
                let u = row[j] + ls.exp() * eps[k];
                t.u[k] = u;
                lp += -0.5 * eps[k] * eps[k] - ls - half_log_2pi;
                if self.squash {
                    log_det += 2.0 * (std::f32::consts::LN_2 - u - softplus(-2.0 * u));
                    t.action[k] = self.bounds.map_host(j, u.tanh());
                } else {
                    t.action[k] = u;
                }
            }
            t.log_prob[r] = if self.squash {
                lp - (log_det + self.log_half)
            } else {
                lp
            };
        }
    }

    /// Host deterministic action (the squashed mean) `[batch, act]`, written into `out`.
    pub fn mode_host(
        &self,
        params: &[Vec<f32>],
        obs: &[f32],
        batch: usize,
        tape: &mut MlpTape,
        out: &mut Vec<f32>,
    ) {
        let d = self.act_dim;
        let z = self.mlp.forward_host(params, obs, batch, tape);
        out.clear();
        for row in z.chunks_exact(2 * d) {
            for (j, &m) in row[..d].iter().enumerate() {
                out.push(if self.squash {
                    self.bounds.map_host(j, m.tanh())
                } else {
                    m
                });
            }
        }
    }

    /// Backward of a sample from `d_action` `[batch, act]` and `d_log_prob` `[batch]`:
    /// parameter gradients added into `d_params`, observation gradients written into `d_obs`.
    pub fn sample_backward_host(
        &self,
        params: &[Vec<f32>],
        tape: &GaussianTape,
        d_action: &[f32],
        d_log_prob: &[f32],
        d_params: Option<&mut [Vec<f32>]>,
        d_obs: Option<&mut [f32]>,
    ) {
        let d = self.act_dim;
        let batch = tape.mlp.batch;
        assert_eq!(
            (d_action.len(), d_log_prob.len()),
            (batch * d, batch),
            "Gaussian sample gradient sizes"
        );
        let mut g = tape.d_out.borrow_mut();
        g.resize(batch * 2 * d, 0.0);
        for r in 0..batch {
            let dlp = d_log_prob[r];
            for j in 0..d {
                let k = r * d + j;
                let u = tape.u[k];
                let du = if self.squash {
                    let th = u.tanh();
                    // a = mid + half·tanh u; log π gains −log|da/du| whose u-derivative is
                    // −2 tanh u.
                    d_action[k] * self.bounds.half_host[j] * (1.0 - th * th) + dlp * 2.0 * th
                } else {
                    d_action[k]
                };
                let ls = tape.log_std[k];
                let d_ls = du * tape.eps[k] * ls.exp() - dlp;
                g[r * 2 * d + j] = du;
                g[r * 2 * d + d + j] = if tape.inside[k] { d_ls } else { 0.0 };
            }
        }
        self.mlp
            .backward_host(params, &tape.mlp, &g, d_params, d_obs);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `a·b` by definition, in f64.
    #[allow(clippy::too_many_arguments)]
    fn naive(
        m: usize,
        n: usize,
        k: usize,
        a: &[f32],
        [a_rs, a_cs]: [usize; 2],
        b: &[f32],
        [b_rs, b_cs]: [usize; 2],
    ) -> Vec<f64> {
        let mut out = vec![0.0f64; m * n];
        for i in 0..m {
            for j in 0..n {
                out[i * n + j] = (0..k)
                    .map(|kk| a[i * a_rs + kk * a_cs] as f64 * b[kk * b_rs + j * b_cs] as f64)
                    .sum();
            }
        }
        out
    }

    #[test]
    fn thin_products_match_the_definition_in_every_layout() {
        let mut seed = 1u32;
        let mut next = move || {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5
        };
        // (m, n, k) of the networks' thin products: outputs of 1–2 units, inputs of 2–8.
        let shapes = [
            (256, 2, 256),
            (256, 1, 64),
            (6, 256, 256),
            (256, 256, 2),
            (256, 8, 256),
        ];
        for &(m, n, k) in &shapes {
            for transpose_a in [false, true] {
                for transpose_b in [false, true] {
                    let a: Vec<f32> = (0..m * k).map(|_| next()).collect();
                    let b: Vec<f32> = (0..k * n).map(|_| next()).collect();
                    let sa = if transpose_a { [1, m] } else { [k, 1] };
                    let sb = if transpose_b { [1, k] } else { [n, 1] };
                    let want = naive(m, n, k, &a, sa, &b, sb);
                    for accumulate in [false, true] {
                        let start: Vec<f32> = (0..m * n).map(|_| next()).collect();
                        let mut dst = start.clone();
                        matmul(m, n, k, &mut dst, &a, sa, &b, sb, accumulate);
                        for (i, (d, w)) in dst.iter().zip(&want).enumerate() {
                            let w = w + if accumulate { start[i] as f64 } else { 0.0 };
                            assert!(
                                (*d as f64 - w).abs() <= 1e-5 * (1.0 + w.abs()),
                                "{m}x{n}x{k} ta={transpose_a} tb={transpose_b} \
                                 acc={accumulate} [{i}]: {d} vs {w}"
                            );
                        }
                    }
                }
            }
        }
    }

    /// Runs `f` with the kernels pinned to `isa` on this thread.
    #[cfg(target_arch = "x86_64")]
    fn pinned<R>(isa: Isa, f: impl FnOnce() -> R) -> R {
        assert!(isa.supported(), "{isa:?} is not available here");
        PINNED_ISA.with(|p| p.set(Some(isa)));
        let out = f();
        PINNED_ISA.with(|p| p.set(None));
        out
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn every_instruction_set_gives_the_same_bits() {
        let mut seed = 7u32;
        let mut next = move || {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (seed >> 8) as f32 / (1u32 << 21) as f32 - 4.0
        };
        let (rows, cols) = (37, 67);
        let x: Vec<f32> = (0..rows * cols).map(|_| next()).collect();
        let b: Vec<f32> = (0..cols).map(|_| next()).collect();
        let w: Vec<f32> = (0..cols * 3).map(|_| next()).collect();
        let kernels = || {
            let mut act = x.clone();
            bias_act_inplace(&mut act, &b, true);
            let mut d = x.clone();
            elu_backward_inplace(&mut d, &act);
            let mut db = b.clone();
            add_column_sums(&mut db, &d);
            // The two thin layouts: `act · w` and `actᵀ · d[:, ..3]`-shaped.
            let mut out = vec![0.0f32; rows * 3];
            matmul(rows, 3, cols, &mut out, &act, [cols, 1], &w, [3, 1], false);
            let mut wg = vec![0.0f32; cols * 3];
            matmul(cols, 3, rows, &mut wg, &act, [1, cols], &out, [3, 1], false);
            [act, d, db, out, wg].map(|v| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>())
        };
        let isas: Vec<Isa> = [Isa::Avx512, Isa::Avx2, Isa::Portable]
            .into_iter()
            .filter(|isa| isa.supported())
            .collect();
        let reference = pinned(Isa::Portable, kernels);
        assert!(
            reference[0].iter().any(|&v| f32::from_bits(v) < 0.0),
            "ELU's negative branch"
        );
        for isa in isas {
            assert_eq!(pinned(isa, kernels), reference, "{isa:?} against portable");
        }
    }
}
