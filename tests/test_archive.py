"""Finished runs' records kept in git: archived, restored, not run again, read by the reports as before."""

import json
import logging
import shutil

import numpy as np

from pg_lab.archive import METRICS_GZ, main, restore, save
from pg_lab.compare import load_runs
from pg_lab.rundir import RunDir


def test_a_finished_run_archived_then_restored_reads_the_same_and_is_not_run_again(tmp_path, train_in_process,
                                                                                   caplog):
    runs, archive = tmp_path / "outputs", tmp_path / "archive"
    done = runs / "env=cartpole,seed=0"
    final = train_in_process("total_steps=2000", run_dir=done)
    unfinished = runs / "env=cartpole,seed=1"
    shutil.copytree(done, unfinished)
    RunDir(unfinished).write_summary({"status": "interrupted", "total_steps": 1000})
    original = RunDir(done).read_metrics()
    summary = (done / "summary.json").read_text()

    assert save(runs, archive) == [archive / "env=cartpole,seed=0"]  # the interrupted run is not archived
    kept = sorted(str(p.relative_to(archive)) for p in archive.rglob("*") if p.is_file())
    assert kept == [f"env=cartpole,seed=0/{name}" for name in
                    (".hydra/config.yaml", ".hydra/overrides.yaml", METRICS_GZ, "summary.json")]
    first = (archive / "env=cartpole,seed=0" / METRICS_GZ).read_bytes()
    save(runs, archive)
    assert (archive / "env=cartpole,seed=0" / METRICS_GZ).read_bytes() == first  # same run, same bytes: no git diff

    shutil.rmtree(runs)  # a new checkout: outputs/ is gone
    assert restore(archive, runs) == [done]
    assert (done / "summary.json").read_text() == summary and not RunDir(done).has_checkpoint()
    rows = RunDir(done).read_metrics()
    assert [r.keys() for r in rows] == [r.keys() for r in original]
    for key in ("return_recent_mean", "policy_loss", "entropy"):
        a, b = (np.array([r[key] for r in x], float) for x in (rows, original))
        np.testing.assert_allclose(a, b, rtol=1e-5)
        if key == "policy_loss":
            assert not np.array_equal(a, b)  # rounded to DIGITS significant digits: smaller files
    (run,), _ = load_runs([runs])
    assert run.final == final and np.isclose(run.values[-1], original[-1]["return_recent_mean"], rtol=1e-5)

    metrics_before = (done / "metrics.jsonl").read_text()
    with caplog.at_level(logging.INFO, logger="pg_lab"):
        again = train_in_process("total_steps=2000", run_dir=done)
    assert again == final and "restored without a checkpoint: nothing to do" in caplog.text
    assert (done / "summary.json").read_text() == summary and (done / "metrics.jsonl").read_text() == metrics_before


def test_restore_leaves_a_local_record_alone(tmp_path, capsys):
    archive, runs = tmp_path / "archive", tmp_path / "outputs"
    for name, status in (("a", "finished"), ("b", "finished")):
        d = archive / name
        (d / ".hydra").mkdir(parents=True)
        (d / ".hydra" / "config.yaml").write_text("seed: 0\n")
        (d / "summary.json").write_text(json.dumps({"status": status}))
        (d / METRICS_GZ).write_bytes(b"")
    local = runs / "b"
    local.mkdir(parents=True)
    (local / "summary.json").write_text(json.dumps({"status": "interrupted"}))  # e.g. a rerun in progress
    main(["restore", str(runs), str(archive)])
    assert "restored 1 run record(s)" in capsys.readouterr().out
    assert (runs / "a" / ".hydra" / "config.yaml").is_file()
    assert json.loads((local / "summary.json").read_text()) == {"status": "interrupted"}
    assert not (local / ".hydra").exists()


def test_save_rewrites_only_records_that_changed(tmp_path):
    runs, archive = tmp_path / "outputs", tmp_path / "archive"
    for name in ("a", "b"):
        d = runs / name
        (d / ".hydra").mkdir(parents=True)
        (d / ".hydra" / "config.yaml").write_text("seed: 0\n")
        (d / "summary.json").write_text(json.dumps({"status": "finished", "total_steps": 10}))
        (d / "metrics.jsonl").write_text(json.dumps({"step": 10, "return_recent_mean": 1.5}) + "\n")
    assert len(save(runs, archive)) == 2
    assert save(runs, archive) == []  # nothing changed: nothing rewritten
    (runs / "b" / "eval.json").write_text('{"forward_speed_mean": 1.2}')  # evaluated after it was archived
    assert save(runs, archive) == [archive / "b"]
    assert (archive / "b" / "eval.json").read_text() == '{"forward_speed_mean": 1.2}'
    (runs / "b" / "eval_rough.json").write_text('{"falls": 0}')  # a labelled evaluation (pg-lab-eval --label)
    assert save(runs, archive) == [archive / "b"]
    assert (archive / "b" / "eval_rough.json").read_text() == '{"falls": 0}'
    restored = tmp_path / "restored"
    restore(archive, restored)
    assert (restored / "b" / "eval_rough.json").read_text() == '{"falls": 0}'
