"""`python -m pg_lab.study SWEEP [SWEEP ...] --report REPORT.md`: the bounded-head study's report.

From the runs of `experiment=beta_vs_gaussian` (any sweep whose jobs differ by env, policy, optimizer and seed) to
what a reviewer asks for, following Agarwal et al. (NeurIPS 2021, "Deep RL at the edge of the statistical
precipice", the rliable protocol), with numpy and scipy:

- per task: learning curves (mean, 95% bootstrap band), final return and area under the curve with 95% CIs, and
  the fraction of action components at a bound (clipped, or within 1% of it) over training;
- across tasks: each run's final return min-max normalised within its task (0 = the worst run of any arm on the
  task, 1 = the best), aggregated by the interquartile mean (IQM) with stratified bootstrap CIs (seeds resampled
  within each task), and the probability of improvement P(A > B) (Mann-Whitney, averaged over tasks) with
  stratified bootstrap CIs;
- Chou, Maturana & Scherer's (ICML 2017) claims, each beside what was measured under each optimizer, with a verdict
  read off the intervals.

An arm is a (policy, optimizer) pair. Aggregates only pool tasks where every arm compared has runs.
"""

from __future__ import annotations

import argparse
import functools
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import stats

from pg_lab.compare import FORMATS, Run, bootstrap_ci, difference_ci, load_runs, save_figure
from pg_lab.rundir import RunDir

DIAGNOSTICS = ("clip_frac", "near_bound_frac")
RESAMPLES = 2000
HEADS = ("gaussian", "capg", "squashed_gaussian", "beta")
OPTIMIZERS = ("adam", "natural")


@dataclass
class Cell:
    """The runs of one arm on one task."""
    task: str
    arm: tuple[str, str]  # (policy, optimizer)
    runs: list[Run]

    @property
    def finals(self) -> np.ndarray:
        return np.array([r.final if r.final is not None else r.values[-1] for r in self.runs], dtype=float)


def arm_of(run: Run) -> tuple[str, str]:
    """(policy, optimizer) as the run's overrides chose them (the config's defaults where not overridden)."""
    chosen = dict(kv.split("=", 1) for kv in run.group.split(",") if "=" in kv)
    return chosen.get("policy", "default"), chosen.get("optimizer", "adam")


def label(arm: tuple[str, str]) -> str:
    return f"{arm[0]} + {arm[1]}"


def iqm(x: np.ndarray, axis: int = -1) -> float | np.ndarray:
    """Interquartile mean: the mean of the middle 50% (robust to outlier runs, more efficient than the median)."""
    return stats.trim_mean(np.asarray(x, dtype=float), 0.25, axis=axis)


def normalise(cells: dict[tuple, Cell]) -> dict[tuple, np.ndarray]:
    """Each task's final returns scaled to [0, 1] by the worst and best run of any arm on that task."""
    out = {}
    for task in {t for t, _ in cells}:
        allv = np.concatenate([c.finals for (t, _), c in cells.items() if t == task])
        lo, hi = allv.min(), allv.max()
        for (t, arm), c in cells.items():
            if t == task:
                out[(t, arm)] = (c.finals - lo) / (hi - lo) if hi > lo else np.full(len(c.finals), 0.5)
    return out


def stratified_bootstrap(per_task: list[np.ndarray], statistic, resamples: int = RESAMPLES,
                         seed: int = 0) -> tuple[float, float, float]:
    """statistic(pooled scores, axis=-1), with a 95% percentile CI from resampling runs within each task."""
    rng = np.random.default_rng(seed)
    point = float(statistic(np.concatenate(per_task), axis=-1))
    pooled = np.concatenate([x[rng.integers(0, len(x), (resamples, len(x)))] for x in per_task], axis=1)
    lo, hi = np.percentile(statistic(pooled, axis=-1), [2.5, 97.5])
    return point, float(lo), float(hi)


def p_improvement(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """P(X > Y) + P(X = Y)/2 between the runs of two arms on one task (the Mann-Whitney U statistic / (n m)),
    over the last axis; leading axes are bootstrap replicates."""
    diff = np.asarray(x, dtype=float)[..., :, None] - np.asarray(y, dtype=float)[..., None, :]
    return ((diff > 0) + 0.5 * (diff == 0)).mean(axis=(-2, -1))


def average_p_improvement(pairs: list[tuple[np.ndarray, np.ndarray]], resamples: int = RESAMPLES,
                          seed: int = 0) -> tuple[float, float, float]:
    """P(A > B) averaged over tasks, with a 95% CI from resampling each arm's runs within each task."""
    rng = np.random.default_rng(seed)
    point = float(np.mean([p_improvement(x, y) for x, y in pairs]))
    reps = np.mean([p_improvement(x[rng.integers(0, len(x), (resamples, len(x)))],
                                  y[rng.integers(0, len(y), (resamples, len(y)))]) for x, y in pairs], axis=0)
    lo, hi = np.percentile(reps, [2.5, 97.5])
    return point, float(lo), float(hi)


def curves(cells: list[Cell], points: int = 100, key: str | None = None) -> tuple[np.ndarray, dict]:
    """The cells' curves (the return, or a per-update diagnostic) interpolated on a common step grid."""
    def series(r: Run):
        if key is None:
            return r.steps, r.values
        rows = [(x["step"], x[key]) for x in _metrics(r.path) if x.get(key) is not None]
        return (np.array([a for a, _ in rows], float), np.array([b for _, b in rows], float)) if rows else None
    data = {c.arm: [s for s in map(series, c.runs) if s is not None] for c in cells}
    data = {a: s for a, s in data.items() if s}
    if not data:
        return np.array([]), {}
    horizon = min(s[0][-1] for ss in data.values() for s in ss)
    start = max(s[0][0] for ss in data.values() for s in ss)
    grid = np.linspace(start, horizon, points)
    return grid, {a: np.stack([np.interp(grid, x, y) for x, y in ss]) for a, ss in data.items()}


@functools.cache
def _metrics(path: Path) -> list[dict]:
    """metrics.jsonl rows, read once per run directory."""
    return RunDir(path).read_metrics()


def steps_to(grid: np.ndarray, curve: np.ndarray, threshold: float) -> float:
    """The first step at which a run's curve reaches `threshold` (inf if it never does)."""
    hit = np.nonzero(curve >= threshold)[0]
    return float(grid[hit[0]]) if len(hit) else np.inf


def fmt(x: float, lo: float, hi: float, spec: str = ".2f") -> str:
    return f"{x:{spec}} [{lo:{spec}}, {hi:{spec}}]" if np.isfinite(lo) else f"{x:{spec}} (no CI)"


def _plot(out: Path, formats, draw, *args, size: tuple[float, float] = (6.4, 4.2)) -> str:
    """draw(ax, *args) on a new figure, saved as out.<format> for each format; returns the PNG's name."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=size, dpi=110)
    draw(ax, *args)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, [out.with_suffix(f".{f}") for f in formats])
    return out.with_suffix(".png").name


def _plot_curves(ax, grid, cs: dict, title: str, ylabel: str) -> None:
    for arm in sorted(cs, key=lambda a: (HEADS.index(a[0]) if a[0] in HEADS else 9, a[1])):
        c = cs[arm]
        lo, hi = bootstrap_ci(c, axis=0, resamples=1000)
        line, = ax.plot(grid, c.mean(0), label=f"{label(arm)} (n={len(c)})",
                        linestyle="-" if arm[1] == "adam" else "--")
        if len(c) > 1:
            ax.fill_between(grid, lo, hi, color=line.get_color(), alpha=0.15, linewidth=0)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("environment steps")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=7)


def _interval_plot(ax, rows: list[tuple[str, float, float, float]], xlabel: str, ref: float | None = None,
                   title: str = "") -> None:
    ys = np.arange(len(rows))[::-1]
    for y, (_, x, lo, hi) in zip(ys, rows):
        ax.plot([lo, hi], [y, y], linewidth=6, alpha=0.4, solid_capstyle="butt")
        ax.plot([x], [y], "k|", markersize=14)
    ax.set_yticks(ys, [r[0] for r in rows], fontsize=8)
    ax.set_xlabel(xlabel)
    if ref is not None:
        ax.axvline(ref, color="grey", linestyle=":")
    ax.set_title(title, fontsize=7)


def per_task(cells: dict, tasks: list[str], arms: list, figures: Path, formats, points: int) -> tuple[list, dict]:
    """Each task's curves and bound-fraction figures, and per arm: its cell, final returns, AUCs, near-bound."""
    rows, figs = [], {}
    for task in tasks:
        tc = [cells[(task, a)] for a in arms if (task, a) in cells]
        grid, cs = curves(tc, points)
        safe = task.replace("/", "_")
        figs[task] = [_plot(figures / f"curves_{safe}", formats, _plot_curves, grid, cs,
                            f"{task}: mean return of the last 20 training episodes, 95% CI", "return")]
        for diag, what in (("near_bound_frac", "action components within 1% of a bound (clipped ones included)"),
                           ("clip_frac", "action components clipped (gaussian, capg)")):
            g2, c2 = curves(tc, points, key=diag)
            if c2:
                figs[task].append(_plot(figures / f"{diag}_{safe}", formats, _plot_curves, g2, c2,
                                        f"{task}: {what}", "fraction"))
        for c in tc:
            nb = np.array([r.extras.get("near_bound_frac", np.nan) for r in c.runs])
            rows.append((task, c.arm, c, c.finals, cs[c.arm].mean(1), nb))
    return rows, figs


def aggregates(cells: dict, tasks: list[str], arms: list, figures: Path, formats) -> tuple[list, list, list]:
    """IQM and mean of normalised scores per arm (every head x optimizer where all ran, then gaussian vs beta on
    the tasks where those ran), and the probability of improvement for the contrasts the study asks about."""
    norm = normalise(cells)

    def common_tasks(group):
        return [t for t in tasks if all((t, a) in cells for a in group)]
    full = [a for a in arms if a[0] in HEADS]
    gb = [a for a in full if a[0] in ("gaussian", "beta")]
    arm_sets = [("every head x optimizer", full)] if common_tasks(full) else []
    if gb and common_tasks(gb) != common_tasks(full):
        arm_sets.append(("gaussian vs beta", gb))
    agg_rows, figs = [], []
    for name, group in arm_sets:
        ts = common_tasks(group)
        rows = [(label(a), *stratified_bootstrap([norm[(t, a)] for t in ts], iqm)) for a in group]
        means = {label(a): stratified_bootstrap([norm[(t, a)] for t in ts], np.mean) for a in group}
        agg_rows.append((name, ts, rows, means))
        figs.append(_plot(figures / f"iqm_{len(ts)}_tasks_{len(group)}_arms", formats, _interval_plot, rows,
                          "IQM of min-max normalised final return (95% stratified CI)", None,
                          f"{tasks_(ts)}: " + ", ".join(ts), size=(8.0, 1.0 + 0.4 * len(rows))))
    pairs = [((head, opt), ("gaussian", opt)) for opt in OPTIMIZERS for head in ("beta", "capg", "squashed_gaussian")]
    pairs += [((head, "natural"), (head, "adam")) for head in HEADS]
    poi_rows = []
    for a, b in pairs:
        ts = common_tasks([a, b])
        if ts:
            p = average_p_improvement([(cells[(t, a)].finals, cells[(t, b)].finals) for t in ts])
            poi_rows.append((a, b, ts, p))
    if poi_rows:
        figs.append(_plot(figures / "probability_of_improvement", formats, _interval_plot,
                          [(f"P({label(a)} > {label(b)}), {tasks_(ts)}", *p) for a, b, ts, p in poi_rows],
                          "probability of improvement (95% stratified CI)", 0.5, size=(9.0, 1.0 + 0.4 * len(poi_rows))))
    return agg_rows, poi_rows, figs


def study(roots: list[Path], report: Path, figures: Path | None = None, formats=FORMATS,
          command: str | None = None, points: int = 100, note: str | None = None) -> dict:
    runs, skipped = load_runs(roots, extras=DIAGNOSTICS)
    if not runs:
        raise SystemExit(f"no finished runs under {', '.join(map(str, roots))}")
    figures = figures or report.with_suffix("")
    figures.mkdir(parents=True, exist_ok=True)
    rel = figures.relative_to(report.parent) if figures.is_relative_to(report.parent) else figures.resolve()
    cells: dict[tuple, Cell] = {}
    for r in runs:
        cells.setdefault((r.task, arm_of(r)), Cell(r.task, arm_of(r), [])).runs.append(r)
    tasks = sorted({t for t, _ in cells})
    arms = sorted({a for _, a in cells}, key=lambda a: (HEADS.index(a[0]) if a[0] in HEADS else 9, a[1]))
    per_task_rows, figs = per_task(cells, tasks, arms, figures, formats, points)
    agg_rows, poi_rows, agg_figs = aggregates(cells, tasks, arms, figures, formats)
    produced = {Path(name).stem for names in figs.values() for name in names} | {Path(n).stem for n in agg_figs}
    for old in figures.iterdir():  # an earlier regeneration's figure (an aggregate over fewer tasks, say)
        if old.suffix.lstrip(".") in formats and old.stem not in produced:
            old.unlink()
    claims = chou_claims(cells, tasks, points)
    compute = sum(float((RunDir(r.path).read_summary() or {}).get("wall_time_s", 0.0)) for r in runs)

    md: list[str] = []
    md.append("# Bounded actions: Beta vs Gaussian (and CAPG, the squashed Gaussian), under Adam and the natural "
              "gradient\n")
    md.append("Chou, Maturana & Scherer (ICML 2017) argued that a Beta policy beats a clipped Gaussian on "
              "bounded actions: the clipped Gaussian's gradient is biased near the bounds, and with TRPO the Beta "
              "learned about 2× faster on Humanoid, slightly better on InvertedDoublePendulum and slightly worse on "
              "InvertedPendulum. Fujita & Maeda (ICML 2018) answered with CAPG, an unbiased clipped-action "
              "estimator with lower variance. This report measures those claims with REINFORCE + GAE at each "
              "task's learning defaults, changing only the head and the optimizer.\n")
    if command:
        md.append(f"Regenerate the report (the runs: `bash scripts/beta_vs_gaussian_study.sh`, or the full grid "
                  f"`pg-lab -m experiment=beta_vs_gaussian`):\n\n```bash\n{command}\n```\n")
    md.append(f"{len(runs)} finished runs, {len(tasks)} tasks, {len(arms)} arms; compute: "
              f"{compute / 3600:.1f} CPU-hours of wall clock (the sum of the runs' own `wall_time_s`, one core "
              "each). Final return = the mean return of a run's last 20 training episodes at its budget. Intervals "
              f"are 95% percentile bootstrap CIs ({RESAMPLES} resamples) over seeds; aggregates resample seeds "
              "within each task (stratified bootstrap).\n")
    md.append("Seeds per cell (task × arm; `—`: not run, by the cut or not yet):\n")
    md.append("| task | " + " | ".join(label(a) for a in arms) + " |\n|---|" + "---|" * len(arms))
    for task in tasks:
        md.append(f"| {task} | " + " | ".join(str(len(cells[(task, a)].runs)) if (task, a) in cells else "—"
                                             for a in arms) + " |")
    md.append("")
    if note:
        md.append(note.strip() + "\n")
    md.append("## Verdict\n")
    md.append(verdict(claims, poi_rows) + "\n")
    md.append("## Chou et al.'s claims beside the measurements\n")
    md.append("| claim (Chou et al. 2017) | optimizer | measured (beta − gaussian) | verdict |\n|---|---|---|---|")
    for c in claims:
        md.append(f"| {c['claim']} | {c['optimizer']} | {c['measured']} | {c['verdict']} |")
    md.append("| the clipped Gaussian's gradient is biased near the bounds | — | bandit with the exact gradient by "
              "quadrature: every head's mean estimate matches it, see [bandit.md](bandit.md) | contradicted for "
              "the estimator that scores the unclipped sample (pg_lab's `gaussian`); CAPG's gain is variance |")
    md.append("")
    md.append("## Across tasks\n")
    for name, ts, rows, means in agg_rows:
        md.append(f"**{name}** on {tasks_(ts)} ({', '.join(ts)}):\n")
        md.append("| arm | IQM, normalised final return [95% CI] | mean [95% CI] |\n|---|---|---|")
        for lab, x, lo, hi in rows:
            md.append(f"| {lab} | {fmt(x, lo, hi)} | {fmt(*means[lab])} |")
        md.append("")
    if poi_rows:
        md.append("| A | B | tasks | P(A > B) averaged over tasks [95% CI] |\n|---|---|---|---|")
        for a, b, ts, p in poi_rows:
            md.append(f"| {label(a)} | {label(b)} | {len(ts)} | {fmt(*p)} |")
        md.append("")
    md += [f"![{f}]({rel}/{f})\n" for f in agg_figs]
    md.append("## Per task\n")
    md.append("Final return and area under the curve (the curve's mean height over the common step range); "
              "`near bound` is the median over updates of the fraction of action components within 1% of a "
              "bound as the env receives them (a clipped Gaussian action counts).\n")
    for task in tasks:
        md.append(f"### {task}\n")
        md.append("| arm | seeds | final return [95% CI] | area under curve [95% CI] | near bound [95% CI] |"
                  "\n|---|---|---|---|---|")
        for t, arm, c, fin, auc, nb in per_task_rows:
            if t != task:
                continue
            seeds = " ".join(str(r.seed) for r in sorted(c.runs, key=lambda r: r.seed))
            nbs = fmt(np.nanmean(nb), *bootstrap_ci(nb), ".3f") if np.isfinite(nb).all() else "—"
            md.append(f"| {label(arm)} | {len(c.runs)} ({seeds}) | {fmt(fin.mean(), *bootstrap_ci(fin), '.1f')} | "
                      f"{fmt(auc.mean(), *bootstrap_ci(auc), '.1f')} | {nbs} |")
        md.append("")
        md += [f"![{f}]({rel}/{f})\n" for f in figs[task]]
    few = [f"{t} {label(a)} (n={len(c.runs)})" for (t, a), c in sorted(cells.items()) if len(c.runs) < 5]
    if few or skipped:
        md.append("## Runs missing or left out\n")
        if few:
            md.append("Cells with fewer than 5 seeds (their intervals are too narrow to trust): " + "; ".join(few)
                      + ".\n")
        md += [f"- `{d}`: {why}" for d, why in skipped]
        md.append("")
    report.write_text("\n".join(md))
    return {"cells": cells, "claims": claims, "poi": poi_rows, "aggregates": agg_rows, "skipped": skipped}


CLAIMS = (  # (task id, claim, the sign of beta − gaussian it predicts)
    ("Humanoid-v5", "Humanoid: the Beta learns about 2× faster", +1),
    ("InvertedDoublePendulum-v5", "InvertedDoublePendulum: the Beta is slightly better", +1),
    ("InvertedPendulum-v5", "InvertedPendulum: the Beta is slightly worse", -1),
)


def chou_claims(cells: dict, tasks: list[str], points: int) -> list[dict]:
    out = []
    for task, claim, sign in CLAIMS:
        for opt in OPTIMIZERS:
            b, g = cells.get((task, ("beta", opt))), cells.get((task, ("gaussian", opt)))
            if b is None or g is None:
                out.append({"claim": claim, "optimizer": opt, "measured": "not run", "verdict": "not measured"})
                continue
            grid, cs = curves([b, g], points)
            auc_b, auc_g = cs[("beta", opt)].mean(1), cs[("gaussian", opt)].mean(1)
            d_fin = b.finals.mean() - g.finals.mean()
            lo, hi = difference_ci(b.finals, g.finals, RESAMPLES)
            alo, ahi = difference_ci(auc_b, auc_g, RESAMPLES)
            # "faster": steps for the mean curve to climb half-way from its start to the weaker arm's final level
            start = min(cs[a][:, 0].mean() for a in cs)
            target = start + 0.5 * (min(b.finals.mean(), g.finals.mean()) - start)
            tb = steps_to(grid, cs[("beta", opt)].mean(0), target)
            tg = steps_to(grid, cs[("gaussian", opt)].mean(0), target)
            speed = tg / tb if np.isfinite(tb) and np.isfinite(tg) and tb > 0 else np.nan
            measured = (f"final {d_fin:+.1f} [{lo:+.1f}, {hi:+.1f}]; AUC {auc_b.mean() - auc_g.mean():+.1f} "
                        f"[{alo:+.1f}, {ahi:+.1f}]; P(beta > gaussian) {float(p_improvement(b.finals, g.finals)):.2f}; "
                        f"n={len(b.runs)}/{len(g.runs)}")
            if "faster" in claim:
                measured += f"; speed-up to the half-way return {speed:.2f}×" if np.isfinite(speed) else ""
                ref_lo, ref_hi = alo, ahi  # speed: the area under the curve
            else:
                ref_lo, ref_hi = lo, hi
            if np.isnan(ref_lo):
                verdict = "too few seeds"
            elif sign * ref_lo > 0 and sign * ref_hi > 0:
                verdict = "supported"
            elif sign * ref_lo < 0 and sign * ref_hi < 0:
                verdict = "contradicted (the opposite holds)"
            else:
                verdict = "not resolved (the CI includes 0)"
            if "faster" in claim and verdict == "supported" and np.isfinite(speed) and speed < 1.5:
                verdict = f"partly: the Beta is faster, {speed:.1f}× rather than 2×"
            out.append({"claim": claim, "optimizer": opt, "measured": measured, "verdict": verdict,
                        "final_diff": (d_fin, lo, hi), "speed": speed})
    return out


def tasks_(ts: list[str]) -> str:
    return f"{len(ts)} task{'s' if len(ts) != 1 else ''}"


def verdict(claims: list[dict], poi_rows: list) -> str:
    lines = []
    for a, b, ts, (p, lo, hi) in poi_rows:
        if a[0] == "beta" and b[0] == "gaussian":
            if lo > 0.5:
                word = "beats"
            elif hi < 0.5:
                word = "loses to"
            else:
                word = "cannot be told apart from"
            lines.append(f"- Under {a[1]}, the Beta {word} the clipped Gaussian across {tasks_(ts)}: "
                         f"P(beta > gaussian) = {p:.2f} [{lo:.2f}, {hi:.2f}].")
    by_opt = {(a[1]): (p, lo, hi) for a, b, ts, (p, lo, hi) in poi_rows if a[0] == "beta" and b[0] == "gaussian"}
    if len(by_opt) == 2:
        (pa, alo, ahi), (pn, nlo, nhi) = by_opt["adam"], by_opt["natural"]
        if nlo > ahi:
            reading = "as predicted: the intervals do not overlap"
        elif nhi < alo:
            reading = "against the prediction: the intervals do not overlap"
        else:
            reading = (f"{'in' if pn > pa else 'against'} the predicted direction, but the intervals overlap: "
                       "not resolved")
        lines.append(f"- Chou et al.'s argument that the Beta needs a natural-gradient step predicts a larger Beta "
                     f"advantage under `optimizer=natural`: P(beta > gaussian) is {pn:.2f} [{nlo:.2f}, {nhi:.2f}] "
                     f"there against {pa:.2f} [{alo:.2f}, {ahi:.2f}] under Adam ({reading}).")
    for a, b, ts, (p, lo, hi) in poi_rows:
        if a[0] == "capg" and b[0] == "gaussian":
            lines.append(f"- CAPG vs the clipped Gaussian under {a[1]}: P(capg > gaussian) = {p:.2f} "
                         f"[{lo:.2f}, {hi:.2f}] over {tasks_(ts)}.")
    counts: dict[str, int] = {}
    for c in claims:
        kind = c["verdict"].split(" (")[0].split(":")[0]
        counts[kind] = counts.get(kind, 0) + 1
    lines.append("- Chou et al.'s per-task claims (each under both optimizers): "
                 + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) + ".")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m pg_lab.study", description=__doc__.split("\n\n")[0])
    p.add_argument("dirs", nargs="+", type=Path, help="sweep directories of the study")
    p.add_argument("--report", type=Path, required=True, help="the Markdown report to write")
    p.add_argument("--figures", type=Path, default=None, help="figure directory (default: beside the report)")
    p.add_argument("--formats", nargs="+", default=["png", "svg"], choices=list(FORMATS))
    p.add_argument("--points", type=int, default=100)
    p.add_argument("--note", default=None, help="a paragraph for the report: what was cut from the grid, and why")
    args = p.parse_args(argv)
    shown = list(argv if argv is not None else sys.argv[1:])
    if "--note" in shown:  # the paragraph itself is in the report; say where it comes from instead
        i = shown.index("--note")
        shown[i:i + 2] = ["--note", "<what was cut: the paragraph scripts/beta_vs_gaussian_study.sh passes>"]
    command = "python -m pg_lab.study " + " ".join(shlex.quote(a) for a in shown)
    result = study(args.dirs, args.report, args.figures, tuple(args.formats), command, args.points, args.note)
    for c in result["claims"]:
        print(f"{c['claim']} [{c['optimizer']}]: {c['verdict']}")
    print(f"report: {args.report}")


if __name__ == "__main__":
    main()
