//! The policy as one dependency-free Rust file: weights as `static` arrays and
//! `pub fn mixpg_policy(obs: &[f32; OBS], act: &mut [f32; ACT])`, no heap.

use std::fmt::Write;

use super::{PolicyGraph, buffers, float_list};

/// The Rust source.
pub(super) fn source(g: &PolicyGraph) -> String {
    let (obs, act) = (g.obs_dim(), g.act_dim());
    let widest = g.layers.iter().map(|l| l.output).fold(obs, usize::max);
    let mut s = String::new();
    let _ = write!(
        s,
        "//! {title}.\n//!\n//! `mixpg_policy(&obs, &mut act)`: the deterministic action (in the task's \
         units, within\n//! its bounds) for one observation. No dependencies, no heap.\n\n\
         /// Observation dimension.\npub const OBS: usize = {obs};\n\
         /// Action dimension.\npub const ACT: usize = {act};\n\n",
        title = g.title
    );
    let mut array = |name: &str, values: &[f32]| {
        let _ = write!(
            s,
            "static {name}: [f32; {}] = [\n{}];\n",
            values.len(),
            float_list(values, "", 8)
        );
    };
    array("OBS_SCALE", &g.obs_scale);
    for (l, layer) in g.layers.iter().enumerate() {
        array(&format!("W{l}"), &layer.w);
        array(&format!("B{l}"), &layer.b);
    }
    array("ACTION_LOW", &g.low);
    array("ACTION_HIGH", &g.high);
    let _ = write!(
        s,
        "
/// `y = x·w + b` for row-major `w` `[x.len()][y.len()]`, then ELU when `elu`.
fn dense(x: &[f32], w: &[f32], b: &[f32], y: &mut [f32], elu: bool) {{
    y.fill(0.0);
    for (xi, row) in x.iter().zip(w.chunks_exact(y.len())) {{
        for (yj, wij) in y.iter_mut().zip(row) {{
            *yj += xi * wij;
        }}
    }}
    for (yj, bj) in y.iter_mut().zip(b) {{
        *yj += bj;
        if elu && *yj <= 0.0 {{
            *yj = yj.exp() - 1.0;
        }}
    }}
}}

/// The policy's action for one observation.
pub fn mixpg_policy(obs: &[f32; OBS], act: &mut [f32; ACT]) {{
    let mut a = [0.0f32; {widest}];
    let mut b = [0.0f32; {widest}];
    for ((ai, o), k) in a.iter_mut().zip(obs).zip(&OBS_SCALE) {{
        *ai = o * k;
    }}
"
    );
    let last = g.layers.len() - 1;
    for (l, layer) in g.layers.iter().enumerate() {
        let (from, to) = buffers(l);
        let _ = writeln!(
            s,
            "    dense(&{from}[..{}], &W{l}, &B{l}, &mut {to}[..{}], {});",
            layer.input,
            layer.output,
            l < last
        );
    }
    let out = buffers(last).1;
    let value = if g.squash {
        format!("ACTION_HIGH[i] * {out}[i].tanh()")
    } else {
        format!("{out}[i]")
    };
    let _ = write!(
        s,
        "    for i in 0..ACT {{
        act[i] = ({value}).clamp(ACTION_LOW[i], ACTION_HIGH[i]);
    }}
}}
"
    );
    s
}
