//! The policy as an ONNX model (IR version 8, opset 13), protobuf written field by field:
//! `Mul(obs, obs_scale)`, then per layer `Gemm` (and `Elu` between layers), `Tanh` and
//! `Mul(·, high)` when the policy squashes, and `Max(·, low)`, `Min(·, high)` for the clip.

use super::PolicyGraph;
use crate::runtime::protobuf::Message;

/// `TensorProto.DataType.FLOAT`.
const FLOAT: i64 = 1;
/// `AttributeProto.AttributeType.FLOAT`.
const ATTR_FLOAT: i64 = 1;

/// A float initializer of shape `dims` (`TensorProto`: dims 1, data_type 2, name 8, raw_data 9).
fn initializer(name: &str, dims: &[usize], values: &[f32]) -> Message {
    let raw: Vec<u8> = values.iter().flat_map(|x| x.to_le_bytes()).collect();
    dims.iter()
        .fold(Message::new(), |m, &d| m.int(1, d as i64))
        .int(2, FLOAT)
        .string(8, name)
        .bytes(9, &raw)
}

/// A node (`NodeProto`: input 1, output 2, name 3, op_type 4, attribute 5).
fn node(op: &str, inputs: &[&str], output: &str, attributes: Vec<Message>) -> Message {
    let m = inputs.iter().fold(Message::new(), |m, i| m.string(1, i));
    let m = m.string(2, output).string(3, output).string(4, op);
    attributes.into_iter().fold(m, |m, a| m.message(5, a))
}

/// A float attribute (`AttributeProto`: name 1, f 2, type 20).
fn float_attribute(name: &str, v: f32) -> Message {
    Message::new()
        .string(1, name)
        .float(2, v)
        .int(20, ATTR_FLOAT)
}

/// A float tensor input or output `[N, width]` with a symbolic batch dimension
/// (`ValueInfoProto` → `TypeProto.tensor_type` → `TensorShapeProto.dim`).
fn value_info(name: &str, width: usize) -> Message {
    let shape = Message::new()
        .message(1, Message::new().string(2, "N"))
        .message(1, Message::new().int(1, width as i64));
    let tensor = Message::new().int(1, FLOAT).message(2, shape);
    Message::new()
        .string(1, name)
        .message(2, Message::new().message(1, tensor))
}

/// The encoded `ModelProto`.
pub(super) fn model(g: &PolicyGraph) -> Vec<u8> {
    let mut inits = vec![initializer("obs_scale", &[g.obs_dim()], &g.obs_scale)];
    let mut nodes = vec![node("Mul", &["obs", "obs_scale"], "scaled_obs", vec![])];
    let mut x = "scaled_obs".to_string();
    let last = g.layers.len() - 1;
    for (l, layer) in g.layers.iter().enumerate() {
        let (w, b, z) = (format!("w{l}"), format!("b{l}"), format!("z{l}"));
        inits.push(initializer(&w, &[layer.input, layer.output], &layer.w));
        inits.push(initializer(&b, &[layer.output], &layer.b));
        nodes.push(node("Gemm", &[&x, &w, &b], &z, vec![]));
        x = z;
        if l < last {
            let h = format!("h{l}");
            nodes.push(node("Elu", &[&x], &h, vec![float_attribute("alpha", 1.0)]));
            x = h;
        }
    }
    inits.push(initializer("action_low", &[g.act_dim()], &g.low));
    inits.push(initializer("action_high", &[g.act_dim()], &g.high));
    if g.squash {
        nodes.push(node("Tanh", &[&x], "tanh", vec![]));
        nodes.push(node(
            "Mul",
            &["tanh", "action_high"],
            "scaled_action",
            vec![],
        ));
        x = "scaled_action".to_string();
    }
    nodes.push(node("Max", &[&x, "action_low"], "above_low", vec![]));
    nodes.push(node("Min", &["above_low", "action_high"], "action", vec![]));

    // GraphProto: node 1, name 2, initializer 5, doc_string 10, input 11, output 12.
    let graph = nodes
        .into_iter()
        .fold(Message::new(), |m, n| m.message(1, n))
        .string(2, "mixpg_policy");
    let graph = inits
        .into_iter()
        .fold(graph, |m, t| m.message(5, t))
        .string(10, &g.title)
        .message(11, value_info("obs", g.obs_dim()))
        .message(12, value_info("action", g.act_dim()));
    // ModelProto: ir_version 1, producer_name 2, producer_version 3, graph 7, opset_import 8.
    Message::new()
        .int(1, 8)
        .string(2, "mixpg")
        .string(3, env!("CARGO_PKG_VERSION"))
        .message(7, graph)
        .message(8, Message::new().string(1, "").int(2, 13))
        .into_bytes()
}
