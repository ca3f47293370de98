"""`pg-lab-compare DIR [DIR ...] --out OUT`: from finished sweeps (or runs) to curves, a table with
bootstrap confidence intervals, pairwise contrasts and a Markdown report.

Runs are grouped by every override except the seed and the bookkeeping keys (pg_lab.rundir.grouping_key,
the same key as W&B's job_type); the task is the env. Learning curves (`return_recent_mean`: the mean
return of the last 20 episodes, per update) are aligned on a common env-step grid up to the shortest run
of the task. Failed or unfinished runs, and runs shorter than the others, are listed in the report, never
dropped silently.

Statistics come from scipy: `scipy.stats.bootstrap` (95% BCa or percentile intervals across seeds) for
means and for the difference of two groups' means, and the Mann-Whitney U statistic for the probability
of improvement P(X > Y).
"""

from __future__ import annotations

import argparse
import csv
import shlex
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml
from scipy import stats

from pg_lab.rundir import RunDir, grouping_key, override_key

METRIC = "return_recent_mean"


@dataclass
class Run:
    path: Path
    task: str
    group: str
    seed: int
    status: str
    steps: np.ndarray
    values: np.ndarray
    final: float | None
    total_steps: int
    extras: dict = field(default_factory=dict)  # per-update diagnostics, as their median over the run


@dataclass
class Group:
    task: str
    name: str
    runs: list[Run] = field(default_factory=list)


def load_runs(roots: list[Path], metric: str = METRIC,
              extras: tuple[str, ...] = ()) -> tuple[list[Run], list[tuple[Path, str]]]:
    """Every run directory under `roots`; also returns (dir, reason) for those that cannot be used."""
    runs, skipped = [], []
    for root in roots:
        for hydra_dir in sorted(root.rglob(".hydra")):
            run_dir = RunDir(hydra_dir.parent)
            if not run_dir.overrides.exists():
                continue
            if run_dir.is_replaced():
                skipped.append((run_dir.path, "an older record, replaced by a run of another config (fresh=true)"))
                continue
            cfg = yaml.safe_load(run_dir.config.read_text())
            # the task (env) is its own axis: group by the rest, as W&B's job_type does
            group = grouping_key(o for o in run_dir.read_overrides() if override_key(o) != "env")
            summary = run_dir.read_summary() or {"status": "no summary.json"}
            rows = run_dir.read_metrics()
            points = [(r["step"], r[metric]) for r in rows if r.get(metric) is not None]
            status = summary.get("status", "unknown")
            if status != "finished" or not points:
                skipped.append((run_dir.path, f"status {status}" + ("" if points else ", no learning curve")))
                continue
            steps, values = map(np.asarray, zip(*points))
            medians = {}
            for name in extras:
                seen = [r[name] for r in rows if r.get(name) is not None]
                medians[name] = float(np.median(seen)) if seen else np.nan
            runs.append(Run(run_dir.path, cfg["env"]["id"], group, int(cfg["seed"]), status, steps.astype(float),
                            values.astype(float), summary.get("final_return_mean"),
                            int(summary.get("total_steps", steps[-1])), medians))
    return runs, skipped


def group_runs(runs: list[Run]) -> dict[str, list[Group]]:
    tasks: dict[str, dict[str, Group]] = {}
    for run in runs:
        tasks.setdefault(run.task, {}).setdefault(run.group, Group(run.task, run.group)).runs.append(run)
    return {t: sorted(g.values(), key=lambda g: g.name) for t, g in sorted(tasks.items())}


def bootstrap_ci(samples: np.ndarray, axis: int = 0, resamples: int = 2000, seed: int = 0) -> tuple:
    """95% bootstrap CI of the mean along `axis` (NaN where fewer than 2 samples)."""
    samples = np.asarray(samples, dtype=float)
    if samples.shape[axis] < 2:
        nan = np.full(np.delete(samples.shape, axis), np.nan) if samples.ndim > 1 else np.nan
        return nan, nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # degenerate samples (all equal) give NaN intervals: that is the answer
        res = stats.bootstrap((samples,), np.mean, axis=axis, vectorized=True, n_resamples=resamples,
                              confidence_level=0.95, method="percentile", random_state=seed)
    return res.confidence_interval.low, res.confidence_interval.high


def difference_ci(x: np.ndarray, y: np.ndarray, resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    if len(x) < 2 or len(y) < 2:
        return np.nan, np.nan
    res = stats.bootstrap((x, y), lambda a, b, axis=-1: np.mean(a, axis=axis) - np.mean(b, axis=axis),
                          vectorized=True, n_resamples=resamples, method="percentile", random_state=seed)
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def probability_of_improvement(x: np.ndarray, y: np.ndarray) -> float:
    """P(X > Y) + P(X = Y)/2 over the seeds of two groups, from the Mann-Whitney U statistic."""
    return float(stats.mannwhitneyu(x, y, alternative="two-sided").statistic / (len(x) * len(y)))


def curves_on_grid(groups: list[Group], points: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    horizon = min(r.steps[-1] for g in groups for r in g.runs)
    start = max(r.steps[0] for g in groups for r in g.runs)
    grid = np.linspace(start, horizon, points)
    return grid, {g.name: np.stack([np.interp(grid, r.steps, r.values) for r in g.runs]) for g in groups}


FORMATS = ("png", "svg", "pdf")  # PNG for the Markdown report, SVG and PDF for papers
MIN_SEEDS = 5  # below this a 95% bootstrap interval is too narrow to mean much (percentile bootstrap, small n)


def legend_labels(names: list[str]) -> dict[str, str]:
    """Group names less the overrides every group shares: "env=hopper,policy=beta" -> "policy=beta"."""
    parts = {n: n.split(",") for n in names}
    common = set.intersection(*(set(p) for p in parts.values())) if len(names) > 1 else set()
    return {n: ",".join(kv for kv in p if kv not in common) or n for n, p in parts.items()}


# the date fields matplotlib stamps: without them (and with a fixed SVG id salt) the same figure is the same bytes,
# so a regenerated report changes in git only where its figures do
_NO_DATE = {".svg": {"Date": None}, ".pdf": {"CreationDate": None}}


def save_figure(fig, paths: list[Path]) -> None:
    """Save `fig` to each path (the format from its suffix), byte-for-byte reproducibly, and close it."""
    import matplotlib
    import matplotlib.pyplot as plt
    with matplotlib.rc_context({"svg.hashsalt": "pg_lab"}):
        for path in paths:
            fig.savefig(path, metadata=_NO_DATE.get(Path(path).suffix))
    plt.close(fig)


def plot_task(task: str, grid: np.ndarray, curves: dict[str, np.ndarray], out: Path,
              formats: tuple[str, ...] = FORMATS) -> list[Path]:
    """The task's curves, saved as out.<format> for each format; returns the files."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    labels = legend_labels(list(curves))
    for name, c in curves.items():
        mean = c.mean(0)
        lo, hi = bootstrap_ci(c, axis=0, resamples=1000)
        line, = ax.plot(grid, mean, label=f"{labels[name]} (n={len(c)})")
        if len(c) > 1:
            ax.fill_between(grid, lo, hi, color=line.get_color(), alpha=0.2, linewidth=0)
    ax.set_title(f"{task}\nmean return of the last 20 training episodes, 95% bootstrap CI", fontsize=10)
    ax.set_xlabel("environment steps")
    ax.set_ylabel("return")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    files = [out.with_suffix(f".{f}") for f in formats]
    save_figure(fig, files)
    return files


def fmt(mean: float, lo: float, hi: float, spec: str = ".1f") -> str:
    if np.isnan(lo):
        return f"{mean:{spec}} (no CI)"
    return f"{mean:{spec}} [{lo:{spec}}, {hi:{spec}}]"


def compare(roots: list[Path], out: Path, contrast: str | None = None, points: int = 100,
            command: str | None = None, title: str = "Comparison", extras: tuple[str, ...] = (),
            formats: tuple[str, ...] = FORMATS) -> dict:
    runs, skipped = load_runs(roots, extras=extras)
    if not runs:
        raise SystemExit(f"no finished runs with learning curves under {', '.join(map(str, roots))}")
    out.mkdir(parents=True, exist_ok=True)
    tasks = group_runs(runs)
    table, pairwise, notes, figures = [], [], [], []
    for task, groups in tasks.items():
        grid, curves = curves_on_grid(groups, points)
        short = [r for g in groups for r in g.runs if r.steps[-1] > grid[-1] * 1.05]
        if short:
            notes.append(f"{task}: curves compared up to {grid[-1]:.0f} steps, the shortest run's end; "
                         f"{len(short)} longer run(s) were cut there.")
        files = plot_task(task, grid, curves, out / f"curves_{task.replace('/', '_')}", formats)
        figures.append(next((f.name for f in files if f.suffix == ".png"), files[0].name))
        few = [g for g in groups if len(g.runs) < MIN_SEEDS]
        if few:
            notes.append(f"{task}: fewer than {MIN_SEEDS} seeds in " + ", ".join(f"{g.name} (n={len(g.runs)})"
                         for g in few) + ": their 95% intervals are too narrow to trust; run more seeds.")
        for g in groups:
            final = np.array([r.final if r.final is not None else r.values[-1] for r in g.runs])
            auc = curves[g.name].mean(1)  # area under the curve per env step (mean height)
            (flo, fhi), (alo, ahi) = bootstrap_ci(final), bootstrap_ci(auc)
            table.append({"task": task, "group": g.name, "seeds": len(g.runs),
                          "seed_list": " ".join(str(r.seed) for r in sorted(g.runs, key=lambda r: r.seed)),
                          "final_mean": final.mean(), "final_lo": flo, "final_hi": fhi,
                          "auc_mean": auc.mean(), "auc_lo": alo, "auc_hi": ahi, "steps": int(grid[-1])})
            for name in extras:
                per_seed = np.array([r.extras[name] for r in g.runs])
                lo, hi = bootstrap_ci(per_seed)
                table[-1].update({f"{name}_mean": per_seed.mean(), f"{name}_lo": lo, f"{name}_hi": hi})
        if contrast:
            by_value: dict[str, Group] = {}
            for g in groups:
                value = dict(kv.split("=", 1) for kv in g.name.split(",") if "=" in kv).get(contrast)
                rest = ",".join(kv for kv in g.name.split(",") if not kv.startswith(f"{contrast}="))
                if value is not None:
                    by_value[f"{value}|{rest}"] = g
            keys = sorted(by_value)
            for i, a in enumerate(keys):
                for b in keys[i + 1:]:
                    if a.split("|")[1] != b.split("|")[1]:
                        continue
                    ga, gb = by_value[a], by_value[b]
                    fa = np.array([r.final for r in ga.runs], dtype=float)
                    fb = np.array([r.final for r in gb.runs], dtype=float)
                    lo, hi = difference_ci(fa, fb)
                    pairwise.append({"task": task, "a": ga.name, "b": gb.name, "diff_mean": fa.mean() - fb.mean(),
                                     "diff_lo": lo, "diff_hi": hi, "p_a_better": probability_of_improvement(fa, fb),
                                     "seeds_a": len(fa), "seeds_b": len(fb)})
    _write_csv(out / "table.csv", table)
    if pairwise:
        _write_csv(out / "pairwise.csv", pairwise)
    md = _markdown(title, table, pairwise, figures, notes, skipped, command)
    (out / "report.md").write_text(md)
    (out / "table.md").write_text(_table_md(table))
    return {"table": table, "pairwise": pairwise, "skipped": skipped, "figures": figures, "notes": notes}


def _write_csv(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def _table_md(table: list[dict]) -> str:
    extras = [k[:-5] for k in table[0] if k.endswith("_mean") and k not in ("final_mean", "auc_mean")]
    lines = ["| task | group | seeds | final return, mean [95% CI] | area under curve, mean [95% CI] |"
             + "".join(f" {e} (median over updates), mean [95% CI] |" for e in extras),
             "|---|---|---|---|---|" + "---|" * len(extras)]
    for r in table:
        lines.append(f"| {r['task']} | {r['group']} | {r['seeds']} ({r['seed_list']}) | "
                     f"{fmt(r['final_mean'], r['final_lo'], r['final_hi'])} | "
                     f"{fmt(r['auc_mean'], r['auc_lo'], r['auc_hi'])} |"
                     + "".join(f" {fmt(r[e + '_mean'], r[e + '_lo'], r[e + '_hi'], '.3g')} |" for e in extras))
    return "\n".join(lines) + "\n"


def _markdown(title, table, pairwise, figures, notes, skipped, command) -> str:
    parts = [f"# {title}\n"]
    if command:
        parts.append(f"Regenerate with:\n\n```bash\n{command}\n```\n")
    parts.append("Final return = mean return of each run's last 20 training episodes; area under the curve = mean "
                 "height of the learning curve over the common step range. Intervals are 95% percentile "
                 "bootstrap CIs across seeds (scipy.stats.bootstrap, 2000 resamples).\n")
    parts.append(_table_md(table))
    if pairwise:
        parts.append("\n## Pairwise contrasts (final return)\n")
        parts.append("| task | A | B | A − B, mean [95% CI] | P(A > B) | seeds A/B |\n|---|---|---|---|---|---|")
        for p in pairwise:
            parts.append(f"| {p['task']} | {p['a']} | {p['b']} | {fmt(p['diff_mean'], p['diff_lo'], p['diff_hi'])} | "
                         f"{p['p_a_better']:.2f} | {p['seeds_a']}/{p['seeds_b']} |")
        parts.append("")
    parts.append("\n## Learning curves\n")
    parts += [f"![{f}]({f})\n" for f in figures]
    if notes or skipped:
        parts.append("\n## Runs left out or cut\n")
        parts += [f"- {n}" for n in notes]
        parts += [f"- `{d}`: {why}" for d, why in skipped]
        parts.append("")
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="pg-lab-compare", description=__doc__.split("\n\n")[0])
    p.add_argument("dirs", nargs="+", type=Path, help="sweep or run directories")
    p.add_argument("--out", type=Path, required=True, help="where the figures, tables and report.md go")
    p.add_argument("--contrast", default=None, help="the override to contrast pairwise, e.g. policy")
    p.add_argument("--points", type=int, default=100, help="points of the common step grid")
    p.add_argument("--title", default="Comparison")
    p.add_argument("--metrics", nargs="*", default=[], help="per-update diagnostics to tabulate, e.g. grad_var")
    p.add_argument("--formats", nargs="+", default=list(FORMATS), choices=["png", "svg", "pdf"],
                   help="figure formats (default: all three)")
    args = p.parse_args(argv)
    command = "pg-lab-compare " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    result = compare(args.dirs, args.out, args.contrast, args.points, command, args.title, tuple(args.metrics),
                     tuple(args.formats))
    print(_table_md(result["table"]))
    for note in result["notes"]:
        if "fewer than" in note:
            print(f"warning: {note}", file=sys.stderr)
    for d, why in result["skipped"]:
        print(f"left out: {d} ({why})")
    print(f"report: {args.out / 'report.md'}")


if __name__ == "__main__":
    main()
