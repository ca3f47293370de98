"""pg_lab's Optuna sweeper: search spaces, seeds per trial, shared storage that a relaunch continues, pruning,
and the best trial as a ready-to-run experiment file."""

import json
import time
from pathlib import Path

import cli
import optuna
import pytest
import yaml
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState
from test_sweeps import sweep

from hydra_plugins.pg_lab_sweepers.optuna_sweeper import OptunaSweeper
from pg_lab.resume import Pruned
from pg_lab.tuning import TrialReporter, experiment_file, incumbent, open_storage, search_space

optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_hydra_sweep_syntax_becomes_optuna_distributions():
    space, fixed = search_space(["optimizer.lr=tag(log, interval(1e-4, 1e-2))", "algo.ent_coef=interval(0, 0.01)",
                                 "env.num_envs=range(2, 10, 2)", "policy=gaussian,beta", "algo.num_steps=int(128)",
                                 "algo.gamma=choice(0.95, 0.99)", "total_steps=5000"])
    assert space["optimizer.lr"] == FloatDistribution(1e-4, 1e-2, log=True)
    assert space["algo.ent_coef"] == FloatDistribution(0.0, 0.01)
    assert space["env.num_envs"] == IntDistribution(2, 8, step=2)  # Hydra's range excludes its stop
    assert space["policy"] == CategoricalDistribution(["gaussian", "beta"])
    assert space["algo.gamma"] == CategoricalDistribution([0.95, 0.99])
    assert fixed == ["algo.num_steps=int(128)", "total_steps=5000"]


def test_seed_belongs_to_the_sweeper():
    with pytest.raises(ValueError, match="hydra.sweeper.seeds"):
        search_space(["seed=0,1"])


def test_best_trial_as_an_experiment_file(tmp_path, compose):
    overrides = ["experiment=baselines", "env=acrobot", "optimizer.lr=0.0021", "algo.gamma=0.97", "seed=1",
                 "optuna_trial=4", "progress_bar=false", "wandb.mode=disabled", "hydra.launcher.n_jobs=2"]
    text = experiment_file(overrides, {"env", "policy", "baseline", "optimizer", "experiment"}, study="s", trial=4,
                           value=1.5)
    assert text.startswith("# @package _global_")
    body = yaml.safe_load(text)
    assert body == {"defaults": ["/experiment/baselines", {"override /env": "acrobot"}],
                    "optimizer": {"lr": 0.0021}, "algo": {"gamma": 0.97}}
    (tmp_path / "experiment").mkdir()
    (tmp_path / "experiment" / "best_s.yaml").write_text(text)
    cfg = compose("experiment=best_s", f"hydra.searchpath=[file://{tmp_path}]")
    direct = compose("experiment=baselines", "env=acrobot", "optimizer.lr=0.0021", "algo.gamma=0.97")
    assert cfg == direct  # the file composes to the trial's config (less its seed)


def test_the_incumbent_is_the_launch_configs_own_values_of_the_searched_keys(compose):
    cfg = compose("experiment=tune_idp", "optimizer.lr=0.003", "baseline.lam=0.95", "algo.num_steps=256",
                  "env.num_envs=4", return_hydra_config=True)
    space, _ = search_space(["optimizer.lr=tag(log, interval(1e-3, 1e-2))", "baseline.lam=interval(0.9, 0.99)",
                             "algo.num_steps=choice(128, 256, 512)", "env.num_envs=choice(2, 8)",
                             "algo.gamma=interval(0.9, 0.95)", "policy=gaussian,beta"])
    params, outside = incumbent(cfg, space)
    # the launch config (as set above): lr 3e-3, lam 0.95, 256 steps; its 4 envs and gamma 0.99 are outside
    assert params == {"optimizer.lr": 0.003, "baseline.lam": 0.95, "algo.num_steps": 256, "policy": "gaussian"}
    assert outside == ["env.num_envs", "algo.gamma"]
    study = optuna.create_study(direction="maximize")
    study.enqueue_trial(params)
    first = study.ask(space).params  # what the sweeper asks first: these, and the rest sampled
    assert {k: first[k] for k in params} == params and set(first) == set(space)


def test_a_trial_cut_off_by_a_dead_sweeper_runs_again_with_its_parameters():
    study = optuna.create_study(direction="maximize")
    space = {"optimizer.lr": FloatDistribution(1e-4, 1e-2, log=True)}
    dead, alive = study.ask(space), study.ask(space)
    dead.set_user_attr("heartbeat", time.time() - 3600)
    alive.set_user_attr("heartbeat", time.time())
    sweeper = OptunaSweeper("s", None, "maximize", n_trials=3, n_jobs=1, seeds=[0], sampler=None, pruner=None,
                            reports=10, params={}, max_failure_rate=0.0, stale_after_s=60)
    sweeper._rerun_cut_off(study, space)
    trials = study.get_trials(deepcopy=False)
    assert trials[0].state == TrialState.FAIL and trials[0].user_attrs["rerun"]
    assert trials[1].state == TrialState.RUNNING  # another sweeper's: left alone
    assert trials[2].state == TrialState.WAITING  # enqueued; its parameters are fixed when asked, below
    assert sweeper._counted(study) == 1  # the live trial; neither the cut-off one nor its re-run (not run yet)
    again = study.ask(space)
    assert again.number == 2 and again.params == dead.params


def test_the_pruner_stops_a_trial_and_only_the_first_seed_reports(tmp_path):
    study = optuna.create_study(storage=open_storage(None, tmp_path), pruner=optuna.pruners.ThresholdPruner(lower=10))
    trial = study.ask()
    TrialReporter(trial, report=False, every=100)(100, 5.0)  # not the reporting seed: nothing reported
    assert study.trials[0].intermediate_values == {}
    reporter = TrialReporter(trial, report=True, every=100)
    reporter(50, 5.0)  # before its first report point: nothing
    assert study.trials[0].intermediate_values == {}
    reporter(100, 20.0)
    with pytest.raises(Pruned):
        reporter(230, 5.0)
    assert study.trials[0].intermediate_values == {100: 20.0, 200: 5.0}


def _sweep_args(n_trials: int) -> list[str]:
    return ["experiment=tune_cartpole", f"hydra.sweeper.n_trials={n_trials}", "hydra.sweeper.n_jobs=2",
            "hydra.sweeper.seeds=[0,1]", "hydra.sweeper.pruner.n_startup_trials=1",
            "hydra.sweeper.pruner.n_warmup_steps=1000", "hydra.sweeper.reports=4", "total_steps=3072"]


@pytest.mark.slow
def test_optuna_sweep_seeds_per_trial_pruning_best_file_and_a_relaunch_that_continues(tmp_path):
    proc = sweep(tmp_path, *_sweep_args(3))
    assert proc.returncode == 0, proc.stderr[-3000:]
    study = optuna.load_study(study_name="tune_cartpole", storage=open_storage(None, tmp_path))
    trials = study.get_trials()
    assert len(trials) == 3 and all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    for t in trials:
        dirs = [Path(d) for d in t.user_attrs["job_dirs"]]
        summaries = [json.loads((d / "summary.json").read_text()) for d in dirs]
        assert sorted(s["seed"] for s in summaries) == [0, 1]
        if t.state == TrialState.COMPLETE:  # the value is the mean over the trial's seeds
            assert t.value == pytest.approx(sum(s["final_return_mean"] for s in summaries) / 2)
            assert all(s["status"] == "finished" for s in summaries)
        else:
            assert all(s["status"] == "pruned" and s["total_steps"] < 3072 for s in summaries)
    assert trials[0].user_attrs["incumbent"] and trials[0].params == {  # CartPole's own setting, first
        "optimizer.lr": 0.003, "baseline.lr": 0.001, "algo.ent_coef": 0.0}
    results = yaml.safe_load((tmp_path / "optimization_results.yaml").read_text())
    assert results["best_value"] == study.best_value and results["best_params"] == study.best_params
    best = (tmp_path / "best" / "experiment" / "best_tune_cartpole.yaml").read_text()
    assert all(f"{k.split('.')[-1]}: {v}" in best for k, v in study.best_params.items())
    assert "pg-lab --config-dir" in proc.stderr + proc.stdout

    # the same command with a larger budget continues the study: one more trial, earlier jobs untouched
    first = {p: p.stat().st_mtime_ns for p in tmp_path.glob("*/summary.json")}
    proc = sweep(tmp_path, *_sweep_args(4))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(optuna.load_study(study_name="tune_cartpole", storage=open_storage(None, tmp_path)).trials) == 4
    assert all(p.stat().st_mtime_ns == m for p, m in first.items())
    assert len(list(tmp_path.glob("*/summary.json"))) == len(first) + 2


@pytest.mark.slow
def test_a_killed_sweeper_relaunched_reruns_its_cut_off_trial_and_the_jobs_resume(tmp_path):
    import os
    import signal
    import subprocess

    from test_entrypoint import PG_LAB

    args = [PG_LAB, "-m", "experiment=tune_cartpole", "hydra.sweeper.n_trials=2", "hydra.sweeper.n_jobs=1",
            "hydra.sweeper.seeds=[0]", "hydra.sweeper.pruner=null", "hydra.sweeper.stale_after_s=1",
            "total_steps=20000", "checkpoint_every=1", "wandb.mode=disabled", "progress_bar=false",
            f"hydra.sweep.dir={tmp_path}"]
    proc = cli.popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and not any(len(p.read_text().splitlines()) >= 5
                                             for p in tmp_path.glob("*/metrics.jsonl")):
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)  # the sweeper and its job, mid-trial
    proc.wait()
    (cut,) = [p.parent for p in tmp_path.glob("*/metrics.jsonl")]
    assert not (cut / "summary.json").exists()
    time.sleep(1.5)  # the dead sweeper's heartbeat goes stale
    done = cli.run(args, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    trials = optuna.load_study(study_name="tune_cartpole", storage=open_storage(None, tmp_path)).trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE, TrialState.COMPLETE]
    assert trials[1].params == trials[0].params and trials[1].user_attrs["rerun_of"] == 0
    assert json.loads((cut / "summary.json").read_text())["status"] == "finished"
    assert "resum" in (cut / "train.log").read_text().lower()  # continued from its checkpoint


@pytest.mark.slow
def test_a_sweep_stopped_by_a_signal_requeues_its_cut_off_trial_and_a_relaunch_resumes_its_jobs(tmp_path):
    import os
    import signal
    import subprocess

    from test_entrypoint import PG_LAB

    args = [PG_LAB, "-m", "experiment=tune_cartpole", "hydra.sweeper.n_trials=2", "hydra.sweeper.n_jobs=1",
            "hydra.sweeper.seeds=[0]", "hydra.sweeper.pruner=null", "total_steps=20000", "checkpoint_every=1",
            "wandb.mode=disabled", "progress_bar=false", f"hydra.sweep.dir={tmp_path}"]
    proc = cli.popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not any(len(p.read_text().splitlines()) >= 5
                                             for p in tmp_path.glob("*/metrics.jsonl")):
        time.sleep(0.1)
    os.kill(proc.pid, signal.SIGTERM)  # what Ctrl-C or a scheduler sends: the sweep stops, gracefully
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, stderr[-3000:]
    assert "run the same command to resume" in stderr and "trials failed" not in stderr
    (cut,) = [p.parent for p in tmp_path.glob("*/metrics.jsonl")]
    assert json.loads((cut / "summary.json").read_text())["status"] == "interrupted"
    study = optuna.load_study(study_name="tune_cartpole", storage=open_storage(None, tmp_path))
    first = study.trials[0]
    assert first.state == TrialState.FAIL and first.user_attrs["rerun"]  # cut off: not counted, queued again
    assert [t.state for t in study.trials[1:]] == [TrialState.WAITING]

    done = cli.run(args, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    trials = optuna.load_study(study_name="tune_cartpole", storage=open_storage(None, tmp_path)).trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE, TrialState.COMPLETE]
    assert trials[1].params == first.params and trials[1].user_attrs["rerun_of"] == 0
    assert trials[1].user_attrs["job_dirs"] == [str(cut)]
    assert json.loads((cut / "summary.json").read_text())["status"] == "finished"
    assert "resum" in (cut / "train.log").read_text().lower()  # continued from its checkpoint
