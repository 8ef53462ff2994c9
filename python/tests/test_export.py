"""``mixpg.export`` / ``mixpg export --format onnx``: the ONNX model run by onnxruntime acts as
``mixpg.load_policy`` does within 1e-5 for any batch size (deterministic policies, SAC squashed
or clipped); bad input is a clear error."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

import mixpg

ort = pytest.importorskip("onnxruntime")


@pytest.mark.parametrize(
    "overrides",
    [
        {"algo.name": "mpg_v2", "task.name": "pendulum", "network.hidden": [64, 48]},
        {"algo.name": "td3", "task.name": "path_tracking"},
        {"algo.name": "sac"},
        {"algo.name": "sac", "algo.squash": False},
    ],
    ids=["mpg_v2-pendulum", "td3-path_tracking", "sac", "sac-unsquashed"],
)
def test_the_onnx_model_acts_as_the_saved_policy(tmp_path, small_config, overrides):
    run = mixpg.train(small_config, tmp_path / "run", seed=2, iterations=20, overrides=overrides)
    out = mixpg.export(run, tmp_path / "policy.onnx", format="onnx")
    assert out == tmp_path / "policy.onnx"
    policy = mixpg.load_policy(run)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    [inp], [outp] = session.get_inputs(), session.get_outputs()
    assert (inp.name, outp.name) == ("obs", "action")
    assert inp.shape[1] == policy.obs_dim and outp.shape[1] == policy.act_dim
    info = mixpg.task_info(policy.task)
    for n in (1, 7, 256):
        # States the task starts from, every third pushed far out (an unsquashed mean clips).
        obs = mixpg.VecEnv(policy.task, n, n).reset()
        obs[::3] *= 20.0
        (actions,) = session.run(["action"], {"obs": obs})
        expected = policy(obs)
        assert actions.shape == expected.shape == (n, policy.act_dim)
        assert np.max(np.abs(actions - expected)) <= 1e-5
        assert np.all(actions >= np.array(info["action_low"], dtype=np.float32))
        assert np.all(actions <= np.array(info["action_high"], dtype=np.float32))


def test_the_cli_writes_the_same_model(tmp_path, cli, small_config):
    run = mixpg.train(small_config, tmp_path / "run", seed=0, iterations=20)
    mixpg.export(run, tmp_path / "py.onnx")
    subprocess.run([cli, "export", "--run", run, "--format", "onnx", "--out",
                    tmp_path / "cli.onnx"], check=True, capture_output=True)
    assert (tmp_path / "cli.onnx").read_bytes() == (tmp_path / "py.onnx").read_bytes()


def test_bad_input_is_a_clear_error(tmp_path, small_config):
    run = mixpg.train(small_config, tmp_path / "run", seed=0, iterations=20)
    with pytest.raises(ValueError, match="unknown export format `tflite`"):
        mixpg.export(run, tmp_path / "p", format="tflite")
    with pytest.raises(RuntimeError, match="does not exist"):
        mixpg.export(run, tmp_path / "missing" / "p.onnx")
    with pytest.raises(RuntimeError, match="config.toml"):
        mixpg.export(tmp_path, tmp_path / "p.onnx")
