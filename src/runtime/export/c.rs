//! The policy as one dependency-free C99 file: weights as `static const float` arrays and
//! `void mixpg_policy(const float *obs, float *act)`, no heap and nothing from libm but `expf`.

use std::fmt::Write;

use super::{PolicyGraph, buffers, float_list};

/// The C source.
pub(super) fn source(g: &PolicyGraph) -> String {
    let (obs, act) = (g.obs_dim(), g.act_dim());
    let widest = g.layers.iter().map(|l| l.output).fold(obs, usize::max);
    let mut s = String::new();
    let _ = write!(
        s,
        "/* {title}.\n * void mixpg_policy(const float *obs, float *act): obs[{obs}] in, act[{act}] \
         out (action units, within the bounds).\n * C99, no heap, only expf from libm: \
         cc -std=c99 -c policy.c (link with -lm). */\n\
         #include <math.h>\n\n\
         #define MIXPG_OBS_DIM {obs}\n#define MIXPG_ACT_DIM {act}\n\n",
        title = g.title
    );
    let mut array = |name: &str, values: &[f32]| {
        let _ = write!(
            s,
            "static const float {name}[{}] = {{\n{}}};\n",
            values.len(),
            float_list(values, "f", 8)
        );
    };
    array("mixpg_obs_scale", &g.obs_scale);
    for (l, layer) in g.layers.iter().enumerate() {
        array(&format!("mixpg_w{l}"), &layer.w);
        array(&format!("mixpg_b{l}"), &layer.b);
    }
    array("mixpg_action_low", &g.low);
    array("mixpg_action_high", &g.high);
    s.push_str(
        "
/* y = x w + b for row-major w [n_in][n_out]; ELU (alpha 1) when elu is set. */
static void mixpg_dense(const float *x, const float *w, const float *b, float *y, int n_in,
                        int n_out, int elu) {
    int i, j;
    for (j = 0; j < n_out; j++) {
        y[j] = 0.0f;
    }
    for (i = 0; i < n_in; i++) {
        for (j = 0; j < n_out; j++) {
            y[j] += x[i] * w[i * n_out + j];
        }
    }
    for (j = 0; j < n_out; j++) {
        y[j] += b[j];
        if (elu && y[j] <= 0.0f) {
            y[j] = expf(y[j]) - 1.0f;
        }
    }
}

",
    );
    if g.squash {
        s.push_str(TANH);
    }
    s.push_str(
        "void mixpg_policy(const float *obs, float *act);

void mixpg_policy(const float *obs, float *act) {
",
    );
    let _ = write!(s, "    float a[{widest}], b[{widest}];\n    int i;\n");
    s.push_str("    for (i = 0; i < MIXPG_OBS_DIM; i++) {\n        a[i] = obs[i] * mixpg_obs_scale[i];\n    }\n");
    let last = g.layers.len() - 1;
    for (l, layer) in g.layers.iter().enumerate() {
        let (from, to) = buffers(l);
        let _ = writeln!(
            s,
            "    mixpg_dense({from}, mixpg_w{l}, mixpg_b{l}, {to}, {}, {}, {});",
            layer.input,
            layer.output,
            i32::from(l < last)
        );
    }
    let out = buffers(last).1;
    let squash = if g.squash {
        format!("mixpg_action_high[i] * mixpg_tanh({out}[i])")
    } else {
        format!("{out}[i]")
    };
    let _ = write!(
        s,
        "    for (i = 0; i < MIXPG_ACT_DIM; i++) {{
        float v = {squash};
        v = v < mixpg_action_low[i] ? mixpg_action_low[i] : v;
        act[i] = v > mixpg_action_high[i] ? mixpg_action_high[i] : v;
    }}
}}
"
    );
    s
}

/// `tanh` from `expf` alone.
const TANH: &str = "/* tanh from expf: (1 - e^(-2|x|)) / (1 + e^(-2|x|)) with the sign of x. */
static float mixpg_tanh(float x) {
    float ax = x < 0.0f ? -x : x;
    float e = expf(-2.0f * ax);
    float t = (1.0f - e) / (1.0f + e);
    return x < 0.0f ? -t : t;
}

";
