"""The bounded-head study's report on synthetic runs whose outcome is known."""

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from pg_lab.study import average_p_improvement, iqm, main, stratified_bootstrap


def fake_run(root: Path, env_id: str, policy: str, optimizer: str, seed: int, level: float,
             steps: int = 10000) -> None:
    overrides = [f"env={env_id.lower()}", f"optimizer={optimizer}", f"policy={policy}", f"seed={seed}"]
    d = root / ",".join(overrides)
    (d / ".hydra").mkdir(parents=True)
    (d / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (d / ".hydra" / "config.yaml").write_text(yaml.safe_dump({"env": {"id": env_id}, "seed": seed}))
    offset = np.random.default_rng(seed).normal(0, 1.0)
    xs = np.arange(1000, steps + 1, 1000)
    with open(d / "metrics.jsonl", "w") as f:
        for x in xs:
            row = {"step": int(x), "return_recent_mean": level * x / steps + offset, "near_bound_frac": 0.1}
            if policy in ("gaussian", "capg"):
                row["clip_frac"] = 0.05
            f.write(json.dumps(row) + "\n")
    (d / "summary.json").write_text(json.dumps({"status": "finished", "final_return_mean": level + offset,
                                                "total_steps": int(xs[-1]), "wall_time_s": 1.0}))


@pytest.fixture
def study_dir(tmp_path):
    """Beta well ahead of the Gaussian under natural, level with it under adam, on both tasks."""
    root = tmp_path / "sweep"
    for env in ("Humanoid-v5", "InvertedPendulum-v5"):
        for seed in range(5):
            fake_run(root, env, "gaussian", "adam", seed, 100.0)
            fake_run(root, env, "beta", "adam", seed, 100.0)
            fake_run(root, env, "gaussian", "natural", seed, 100.0)
            fake_run(root, env, "beta", "natural", seed, 200.0)
    return root


def test_iqm_is_the_mean_of_the_middle_half():
    assert iqm(np.array([-1000.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 1000.0])) == pytest.approx(3.5)


def test_stratified_bootstrap_resamples_within_tasks():
    a, b = np.array([0.0, 0.0, 0.0]), np.array([1.0, 1.0, 1.0, 1.0])
    point, lo, hi = stratified_bootstrap([a, b], np.mean)
    # within-task resampling keeps 3 zeros and 4 ones: no spread at all; pooled resampling would vary
    assert (point, lo, hi) == pytest.approx((4 / 7, 4 / 7, 4 / 7))


def test_probability_of_improvement_averages_over_tasks():
    hi, lo = np.array([2.0, 3.0, 4.0]), np.array([0.0, 1.0, 1.5])
    p, plo, phi = average_p_improvement([(hi, lo), (lo, hi)])
    assert p == pytest.approx(0.5)
    assert average_p_improvement([(hi, lo), (hi, lo)])[0] == pytest.approx(1.0)


def test_report_reads_the_claims_off_the_intervals(study_dir, tmp_path, capsys):
    report = tmp_path / "docs" / "study.md"
    stale = tmp_path / "docs" / "study" / "iqm_1_tasks_2_arms.png"  # from a regeneration with fewer tasks
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"old")
    main([str(study_dir), "--report", str(report), "--formats", "png"])
    assert not stale.exists()
    text = report.read_text()
    rows = {line.split(" | ")[0] + "|" + line.split(" | ")[1]: line for line in text.splitlines()
            if line.startswith("| Humanoid") or line.startswith("| InvertedPendulum")}
    # beta ahead under natural: Humanoid's "faster" claim holds, InvertedPendulum's "slightly worse" is reversed
    assert "supported" in rows["| Humanoid: the Beta learns about 2× faster|natural"]
    assert "contradicted" in rows["| InvertedPendulum: the Beta is slightly worse|natural"]
    assert "not resolved" in rows["| InvertedPendulum: the Beta is slightly worse|adam"]
    assert "IQM" in text and "P(A > B)" in text
    assert "| beta + natural | beta + adam | 2 | 1.00 [1.00, 1.00] |" in text
    figures = [line.split("(")[1].rstrip(")") for line in text.splitlines() if line.startswith("![")]
    assert len(figures) >= 6 and all((report.parent / f).is_file() for f in figures)
    assert "the Beta beats the clipped Gaussian across 2 tasks" in text  # under natural
    assert "the Beta cannot be told apart from the clipped Gaussian" in text  # under adam
    # the natural-gradient argument is read off both intervals, not off the two point estimates
    assert "under Adam (as predicted: the intervals do not overlap)" in text
    assert "Humanoid: the Beta learns about 2× faster [natural]: supported" in capsys.readouterr().out
