"""scripts/bench_throughput.py --from-runs: a trained run measured in its own states, and left as it was."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "bench_throughput.py"
spec = importlib.util.spec_from_file_location("bench_throughput", SCRIPT)
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


@pytest.mark.slow  # a pg-lab subprocess: a few seconds
def test_from_runs_continues_the_checkpoints_episodes_and_resumes_a_copy(tmp_path, train_in_process, monkeypatch):
    import pg_lab.envs.state as state

    run = tmp_path / "run"
    train_in_process("env=half_cheetah", "env.num_envs=2", "algo.num_steps=16", "total_steps=64", run_dir=run)
    record = {p.name: p.read_bytes() for p in (run / "summary.json", run / "metrics.jsonl", run / "checkpoint.pt")}
    saved = torch.load(run / "checkpoint.pt", weights_only=False)["rollout"]["envs"]
    restored = []
    real = state.restore_env
    monkeypatch.setattr(state, "restore_env", lambda env, s: (restored.append(s), real(env, s))[1])

    [result] = bench.throughput_from([run], steps=32, raw_steps=64)

    # the single env continued each training env's episode, before and after the training (2 measurements)
    assert len(restored) == 4
    for got, want in zip(restored, saved * 2):
        np.testing.assert_array_equal(got["mjstate"], want["mjstate"])
    assert result["raw_policy_states"] > 0 and result["train"] > 0
    assert result["ratio"] == result["train"] / result["raw_policy_states"]
    # a copy was resumed: the run's own record is untouched
    assert {name: (run / name).read_bytes() for name in record} == record
