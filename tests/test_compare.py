"""The comparison command on synthetic run directories whose curves are known."""

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from pg_lab.compare import bootstrap_ci, compare, main, probability_of_improvement, save_figure


def fake_run(root: Path, env_id: str, policy: str, seed: int, level: float, steps: int = 10000,
             status: str = "finished", noise: float = 5.0) -> Path:
    d = root / f"env={env_id},policy={policy},seed={seed}"
    (d / ".hydra").mkdir(parents=True)
    (d / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"policy={policy}", f"seed={seed}",
                                                                 "wandb.mode=offline"]))
    (d / ".hydra" / "config.yaml").write_text(yaml.safe_dump({"env": {"id": env_id}, "seed": seed}))
    rng = np.random.default_rng(seed + 100 * len(policy))
    offset = rng.normal(0, noise)
    xs = np.arange(1000, steps + 1, 1000)
    with open(d / "metrics.jsonl", "w") as f:
        for x in xs:  # a curve rising linearly to `level` (+ a per-seed offset)
            f.write(json.dumps({"step": int(x), "episode_return_mean": 0.0,
                                "return_recent_mean": level * x / steps + offset}) + "\n")
    if status is not None:
        (d / "summary.json").write_text(json.dumps({"status": status, "final_return_mean": level + offset,
                                                    "total_steps": int(xs[-1])}))
    return d


@pytest.fixture
def sweep(tmp_path):
    root = tmp_path / "sweep"
    for seed in range(6):
        fake_run(root, "Task-v0", "beta", seed, 100.0)
        fake_run(root, "Task-v0", "gaussian", seed, 60.0)
    fake_run(root, "Task-v0", "gaussian", 99, 60.0, status="failed")
    fake_run(root, "Task-v0", "beta", 98, 100.0, steps=20000)  # a longer run: cut to the common range
    return root


def test_recovers_known_means_and_contrast(sweep, tmp_path):
    out = tmp_path / "out"
    result = compare([sweep], out, contrast="policy", command="pg-lab-compare sweep --out out")
    rows = {r["group"]: r for r in result["table"]}
    beta, gauss = rows["policy=beta"], rows["policy=gaussian"]
    assert beta["seeds"] == 7 and gauss["seeds"] == 6  # the failed run is not averaged in
    assert beta["final_lo"] < beta["final_mean"] < beta["final_hi"]
    assert gauss["final_lo"] <= 60 <= gauss["final_hi"] + 5 and abs(gauss["final_mean"] - 60) < 6
    assert beta["steps"] == 10000  # the common horizon
    (pair,) = result["pairwise"]
    assert pair["diff_lo"] > 20 and pair["p_a_better"] == 1.0  # beta clearly above gaussian
    assert any("failed" in why for _, why in result["skipped"])
    assert any("cut" in n for n in result["notes"])


def test_writes_figures_tables_and_a_report_naming_every_group(sweep, tmp_path):
    out = tmp_path / "out"
    compare([sweep], out, contrast="policy", command="pg-lab-compare sweep --out out", title="Beta vs Gaussian")
    png = out / "curves_Task-v0.png"
    assert png.stat().st_size > 5000 and png.read_bytes()[:4] == b"\x89PNG"
    report = (out / "report.md").read_text()
    for expected in ("policy=beta | 7", "policy=gaussian | 6", "![curves_Task-v0.png](curves_Task-v0.png)",
                     "pg-lab-compare sweep --out out", "status failed", "P(A > B)"):
        assert expected in report
    assert (out / "table.csv").read_text().count("\n") == 3 and (out / "pairwise.csv").exists()


def test_intervals_shrink_with_more_seeds():
    from scipy.stats import norm
    widths = []
    for n in (4, 16, 64):  # samples with the same spread (normal quantiles), only more of them
        lo, hi = bootstrap_ci(10 + 3 * norm.ppf((np.arange(n) + 0.5) / n))
        assert lo < 10 < hi
        widths.append(hi - lo)
    assert widths[0] > widths[1] > widths[2]
    assert widths[1] / widths[2] == pytest.approx(2.0, rel=0.25)  # ~ 1/sqrt(n)
    lo, hi = bootstrap_ci(np.array([1.0]))
    assert np.isnan(lo) and np.isnan(hi)


def test_probability_of_improvement():
    assert probability_of_improvement(np.array([3.0, 4.0]), np.array([1.0, 2.0])) == 1.0
    assert probability_of_improvement(np.array([1.0, 2.0]), np.array([1.0, 2.0])) == 0.5


def test_command_line(sweep, tmp_path, capsys):
    main([str(sweep), "--out", str(tmp_path / "cli"), "--contrast", "policy"])
    assert "policy=beta" in capsys.readouterr().out and (tmp_path / "cli" / "report.md").exists()


def test_per_update_diagnostics_are_tabulated(tmp_path):
    root = tmp_path / "sweep"
    for seed in range(3):
        d = fake_run(root, "Task-v0", "beta", seed, 10.0)
        lines = [json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines()]
        for i, line in enumerate(lines):
            line["grad_var"] = float(i) + seed  # median over the 10 updates: 4.5 + seed
        (d / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    (row,) = compare([root], tmp_path / "out", extras=("grad_var",))["table"]
    assert row["grad_var_mean"] == pytest.approx(5.5)
    assert "grad_var (median over updates)" in (tmp_path / "out" / "report.md").read_text()


def test_figures_in_every_format_legends_without_shared_overrides_and_a_warning_under_five_seeds(tmp_path):
    root = tmp_path / "sweep"
    for seed in range(3):
        fake_run(root, "Task-v0", "beta", seed, 100.0)
        fake_run(root, "Task-v0", "gaussian", seed, 60.0)
    out = tmp_path / "out"
    result = compare([root], out)
    assert (out / "curves_Task-v0.pdf").read_bytes()[:4] == b"%PDF"
    svg = (out / "curves_Task-v0.svg").read_text()
    assert "<svg" in svg
    assert any("fewer than 5 seeds" in n and "n=3" in n for n in result["notes"])
    assert "fewer than 5 seeds" in (out / "report.md").read_text()


def test_legend_labels_drop_what_every_group_shares():
    from pg_lab.compare import legend_labels
    names = ["env=hopper,optimizer=adam,policy=beta", "env=hopper,optimizer=adam,policy=gaussian"]
    assert legend_labels(names) == {names[0]: "policy=beta", names[1]: "policy=gaussian"}
    assert legend_labels(["policy=beta"]) == {"policy=beta": "policy=beta"}  # one group keeps its name


def test_a_figure_saved_again_is_the_same_bytes(tmp_path):
    """Regenerated reports change in git only where their figures do: no dates, no random SVG ids."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def draw(name):
        fig, ax = plt.subplots()
        ax.plot([0, 1, 2], [1, 3, 2], label="a")
        ax.fill_between([0, 1, 2], [0, 2, 1], [2, 4, 3], alpha=0.2)
        ax.legend()
        paths = [tmp_path / f"{name}.{f}" for f in ("png", "svg", "pdf")]
        save_figure(fig, paths)
        return [p.read_bytes() for p in paths]

    first = draw("first")
    assert not plt.get_fignums()  # closed
    assert draw("second") == first
