"""pg-lab-dashboard: a sweep's W&B workspace views, built offline with wandb-workspaces and read back."""

import json
from pathlib import Path

import pytest
import yaml

from pg_lab.dashboard import load_view, main, publish, write_views


def fake_job(sweep: Path, env_id: str, policy: str, seed: int, video: bool = False) -> None:
    d = sweep / f"env={env_id},policy={policy},seed={seed}"
    (d / ".hydra").mkdir(parents=True)
    (d / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"env={env_id}", f"policy={policy}", f"seed={seed}"]))
    (d / ".hydra" / "config.yaml").write_text(yaml.safe_dump({
        "env": {"id": env_id}, "seed": seed, "name": sweep.name,
        "wandb": {"group": None, "entity": None, "project": "pg_lab"}}))
    (d / "metrics.jsonl").write_text(json.dumps({"step": 512, "update": 1, "episode_return_mean": 10.0,
                                                 "episode_length_mean": 10.0, "policy_loss": 0.1,
                                                 "grad_snr": 0.5, "steps_per_s": 100.0,
                                                 "reward/forward": 1.0}) + "\n")
    if video:
        (d / "eval.mp4").write_bytes(b"\0")


@pytest.fixture
def sweep(tmp_path):
    root = tmp_path / "my_study"
    for seed in (0, 1):
        for policy in ("gaussian", "beta"):
            fake_job(root, "Hopper-v5", policy, seed, video=seed == 0)
            fake_job(root, "Walker2d-v5", policy, seed)
    return root


def test_one_view_per_task_grouped_by_configuration_with_seeds_collapsed(sweep, capsys):
    main([str(sweep)])
    files = sorted((sweep / "wandb_workspace").glob("*.json"))
    assert [f.stem for f in files] == ["Hopper-v5", "Walker2d-v5"]
    assert "--publish --from-json" in capsys.readouterr().err
    hopper = load_view(files[0])
    assert hopper.name == "my_study: Hopper-v5" and hopper.project == "pg_lab"
    assert [g.name for g in hopper.runset_settings.groupby] == ["JobType"]  # seeds of a configuration together
    filters = str(hopper.runset_settings.filters)
    assert "'my_study'" in filters and "'Hopper-v5'" in filters
    sections = {s.name: s for s in hopper.sections}
    assert set(sections) == {"Hopper-v5: return vs env steps", "Reward terms", "Losses", "Diagnostics", "Time",
                             "Evaluation videos"}
    assert [p.y[0].name for p in sections["Reward terms"].panels] == ["reward/forward"]  # as tracking logs it
    ret = sections["Hopper-v5: return vs env steps"].panels[0]
    assert ret.groupby_aggfunc == "mean" and ret.groupby_rangefunc == "stderr"
    assert [p.y[0].name for p in sections["Diagnostics"].panels] == ["diagnostics/grad_snr"]
    assert "Evaluation videos" not in {s.name for s in load_view(files[1]).sections}  # no eval.mp4 there


def test_entity_and_project_are_set_and_publishing_without_an_entity_is_refused(sweep):
    (f,) = [p for p in write_views(sweep, entity="lab", project="proj") if p.stem == "Hopper-v5"]
    view = load_view(f)
    assert (view.entity, view.project) == ("lab", "proj")
    files = write_views(sweep)
    with pytest.raises(SystemExit, match="--entity"):
        publish(files, None, None)
