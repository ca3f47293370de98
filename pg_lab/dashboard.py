"""`pg-lab-dashboard SWEEP_DIR`: the W&B workspace a researcher would click together for a sweep, as code.

    pg-lab-dashboard outputs/sweeps/my_study            # offline: writes the views, prints how to publish them
    pg-lab-dashboard outputs/sweeps/my_study --publish  # saves them to W&B (entity/project from the runs' config)

One saved workspace view per task of the sweep: its runs (the sweep's W&B group, the task's env id) grouped by
configuration (W&B's job type: the overrides less the seed), so the seeds of a configuration collapse into a
mean line and a standard-error band. Sections: returns, losses, diagnostics (those the runs logged: grad SNR
and variance, explained variance, action std, clip fractions, ...), time, and the evaluation videos
(`pg-lab-eval --wandb`). Built with W&B's own workspace library (wandb-workspaces). The views are always
written to <sweep>/wandb_workspace/<task>.json; `--publish` saves them (from the sweep directory, or from
those files with `--from-json` on a machine that has only them) once the runs are synced (`wandb sync`).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from pg_lab.rundir import RunDir
from pg_lab.tracking import namespaced

RETURN, LENGTH = "charts/episode_return_mean", "charts/episode_length_mean"
SECTION_TITLES = {"reward": "Reward terms", "losses": "Losses", "diagnostics": "Diagnostics", "time": "Time"}
VIDEO_KEY = "eval/video"  # what pg-lab-eval --wandb logs


@dataclass
class Task:
    """What the sweep's runs of one env have in common: where they live in W&B and what they logged."""
    env_id: str
    group: str
    entity: str | None
    project: str
    configurations: set[str] = field(default_factory=set)
    metrics: set[str] = field(default_factory=set)  # namespaced as in W&B: "diagnostics/grad_snr"
    videos: bool = False


def sweep_tasks(sweep_dir: Path) -> dict[str, Task]:
    """The sweep's tasks, read from its job directories (their recorded config and metrics)."""
    tasks: dict[str, Task] = {}
    for hydra_dir in sorted(sweep_dir.rglob(".hydra")):
        run = RunDir(hydra_dir.parent)
        if not run.config.exists() or run.is_replaced():
            continue
        cfg = run.read_config()
        env_id = str(cfg.env.id)
        group = cfg.wandb.group or cfg.name
        task = tasks.setdefault(env_id, Task(env_id, group, cfg.wandb.entity, cfg.wandb.project))
        task.configurations.add(run.group())
        for row in run.read_metrics()[:1]:
            task.metrics |= set(namespaced(row)) - {"step", "update"}  # the names W&B has them under
        task.videos |= (run.path / "eval.mp4").exists()
    return tasks


def build_view(task: Task, entity: str, project: str, sweep_name: str):
    """The workspace view of one task: runs filtered to the sweep and task, grouped by configuration."""
    import wandb_workspaces.reports.v2 as wr
    import wandb_workspaces.workspaces as ws

    def curve(metric: str) -> wr.LinePlot:
        return wr.LinePlot(title=metric.split("/", 1)[1].replace("_", " "), x="step", y=[metric],
                           groupby_aggfunc="mean", groupby_rangefunc="stderr", smoothing_type="none",
                           legend_template="${group}")

    sections = [ws.Section(name=f"{task.env_id}: return vs env steps", is_open=True, panels=[
        wr.LinePlot(title=f"{task.env_id}: episode return (mean over seeds, ± s.e.)", x="step", y=[RETURN],
                    groupby_aggfunc="mean", groupby_rangefunc="stderr", smoothing_type="none"),
        *(curve(m) for m in (LENGTH, "charts/return_recent_mean") if m in task.metrics),
    ])]
    for prefix, title in SECTION_TITLES.items():
        metrics = sorted(m for m in task.metrics if m.startswith(prefix + "/"))
        if metrics:
            sections.append(ws.Section(name=title, is_open=prefix == "diagnostics", panels=[curve(m) for m in metrics]))
    if task.videos:
        sections.append(ws.Section(name="Evaluation videos", is_open=True,
                                   panels=[wr.MediaBrowser(title="deterministic evaluation", media_keys=[VIDEO_KEY])]))
    return ws.Workspace(
        entity=entity, project=project, name=f"{sweep_name}: {task.env_id}", sections=sections,
        runset_settings=ws.RunsetSettings(
            filters=[ws.Metric("Group") == task.group, ws.Config("env.id") == task.env_id],
            groupby=[ws.Metric("JobType")]))


def write_views(sweep_dir: Path, entity: str | None = None, project: str | None = None) -> list[Path]:
    """Build the sweep's views and write each as JSON under <sweep>/wandb_workspace/; returns the files."""
    tasks = sweep_tasks(sweep_dir)
    if not tasks:
        raise SystemExit(f"pg-lab-dashboard: no runs under {sweep_dir}")
    out = sweep_dir / "wandb_workspace"
    out.mkdir(exist_ok=True)
    files = []
    for task in tasks.values():
        view = build_view(task, entity or task.entity or "<your-entity>", project or task.project, sweep_dir.name)
        path = out / f"{task.env_id.replace('/', '_')}.json"
        path.write_text(json.dumps(json.loads(view._to_model().model_dump_json()), indent=1))
        files.append(path)
    return files


def load_view(path: Path, entity: str | None = None, project: str | None = None):
    from wandb_workspaces.workspaces import Workspace
    from wandb_workspaces.workspaces.internal import View

    view = Workspace._from_model(View.model_validate_json(path.read_text()))
    if entity:
        view.entity = entity
    if project:
        view.project = project
    return view


def publish(files: list[Path], entity: str | None, project: str | None) -> None:
    for path in files:
        view = load_view(path, entity, project)
        if view.entity.startswith("<"):
            raise SystemExit("pg-lab-dashboard: give --entity (the runs' config names none)")
        saved = view.save()
        print(f"saved {path.stem}: {getattr(saved, 'url', '')}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="pg-lab-dashboard", description=__doc__.split("\n\n")[0])
    p.add_argument("sweep", type=Path, help="a sweep directory (outputs/sweeps/<name>)")
    p.add_argument("--entity", help="W&B entity (default: the runs' wandb.entity)")
    p.add_argument("--project", help="W&B project (default: the runs' wandb.project)")
    p.add_argument("--publish", action="store_true", help="save the views to W&B (needs a connection and a key)")
    p.add_argument("--from-json", action="store_true", help="publish <sweep>/wandb_workspace/*.json as written")
    args = p.parse_args(argv)
    if args.from_json:
        files = sorted((args.sweep / "wandb_workspace").glob("*.json"))
        if not files:
            raise SystemExit(f"pg-lab-dashboard: no views in {args.sweep / 'wandb_workspace'}")
    else:
        files = write_views(args.sweep, args.entity, args.project)
        for f in files:
            print(f"wrote {f}")
    if args.publish:
        publish(files, args.entity, args.project)
    else:
        again = " ".join(["pg-lab-dashboard", str(args.sweep), "--publish", "--from-json",
                          *(["--entity", args.entity] if args.entity else []),
                          *(["--project", args.project] if args.project else [])])
        print(f"offline: nothing sent. Once the runs are synced (wandb sync {args.sweep}/*/wandb/offline-run-*), "
              f"publish the views with:\n  {again}", file=sys.stderr)


if __name__ == "__main__":
    main()
