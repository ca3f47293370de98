"""`pg-lab-eval RUN_DIR`: load a run's checkpoint, run deterministic episodes, report, record a video.

    pg-lab-eval outputs/runs/2026-11-26/10-00-00 --episodes 5 --video --wandb   # video: <run dir>/eval.mp4

Deterministic means the distribution's mean action (argmax for categorical, tanh(μ) for the squashed
Gaussian, α/(α+β) for Beta). Prints each episode's return, length, forward speed (for locomotion envs
that report x_position) and whether it ended in a fall (termination before the time limit), writes
eval.json into the run directory and, for envs that render, an MP4 of the first episode(s).
Offscreen rendering uses MUJOCO_GL=osmesa if OSMesa is installed, else egl, unless you set MUJOCO_GL; under
osmesa, shadows and reflections are off unless --full-render.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from pg_lab.builder import build_algorithm, env_factory
from pg_lab.rundir import OMITTED_AT_DEFAULT, RunDir


def fast_render(env) -> None:
    """Software GL (osmesa) spends most of a frame on shadows and reflections: without them the quadruped
    renders at 14 frames/s instead of 3.7 here."""
    renderer = getattr(env.unwrapped, "mujoco_renderer", None)
    if renderer is None:
        return
    import mujoco
    env.reset(seed=0)
    env.render()  # creates the offscreen viewer
    scene = renderer._get_viewer("rgb_array").scn
    for flag in (mujoco.mjtRndFlag.mjRND_SHADOW, mujoco.mjtRndFlag.mjRND_REFLECTION):
        scene.flags[flag] = 0


_MISSING = object()


def parse_env_kwargs(items: list[str]) -> dict[str, Any]:
    """`["randomization.friction=[0.5,1.25]", "terrain=rough"]` -> {dotted key: value}, each value read as YAML."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--env-kwargs: expected KEY=VALUE (e.g. randomization.push_interval_s=4), got {item!r}")
        out[key] = yaml.safe_load(value)
    return out


def with_env_kwargs(cfg: DictConfig, env_kwargs: dict[str, Any]) -> DictConfig:
    """The run's config with env.kwargs changed for evaluation (e.g. domain randomisation switched on); a key that
    the run's env.kwargs does not have is refused, naming it (unless the key came after the run: a run recorded
    before it ran at its OMITTED_AT_DEFAULT value, e.g. terrain_roughness)."""
    cfg = copy.deepcopy(cfg)
    for key, value in env_kwargs.items():
        if OmegaConf.select(cfg, f"env.kwargs.{key}", default=_MISSING) is _MISSING and \
                f"env.kwargs.{key}" not in OMITTED_AT_DEFAULT:
            raise ValueError(f"--env-kwargs: this run's env.kwargs has no key {key!r} (it has: "
                             f"{', '.join(cfg.env.get('kwargs', {}))})")
        OmegaConf.update(cfg, f"env.kwargs.{key}", value, merge=False)
    return cfg


def load(run_dir: RunDir, render: bool, full_render: bool = False, checkpoint: Path | None = None,
         env_kwargs: dict[str, Any] | None = None):
    """The run's env (through its own env config, with `env_kwargs` changed; the CPU env also for a run trained
    with env.backend=warp, the same task) and its policy from the checkpoint (or another file of the run's, e.g. a
    snapshot), in evaluation mode."""
    cfg = with_env_kwargs(run_dir.read_config(), env_kwargs or {})
    env = env_factory(cfg).make(render_mode="rgb_array" if render else None)
    if render and not full_render and os.environ.get("MUJOCO_GL") == "osmesa":
        fast_render(env)
    algorithm = build_algorithm(cfg, env.observation_space, env.action_space, torch.device("cpu"))
    state = run_dir.load_checkpoint() if checkpoint is None else \
        torch.load(checkpoint, map_location="cpu", weights_only=False)
    algorithm.load_state_dict(state)
    return env, algorithm.policy.eval()


def evaluate(run_dir: RunDir, episodes: int = 5, video: Path | None = None, video_episodes: int = 1,
             seed: int = 10_000, max_steps: int | None = None, stochastic: bool = False,
             full_render: bool = False, progress: bool = False, checkpoint: Path | None = None,
             env_kwargs: dict[str, Any] | None = None, label: str = "env_kwargs") -> dict:
    """Build the env through the run's own env config (its `_target_`) and the policy through the same
    builder as training, load the checkpoint (`checkpoint`: another file of the run's; then no eval.json is
    written), and run `episodes` episodes. `env_kwargs` changes the env's settings for the evaluation (the report
    says which, and goes to eval_<label>.json instead: eval_env_kwargs.json unless a label is given)."""
    env, policy = load(run_dir, video is not None, full_render, checkpoint, env_kwargs)
    dt = getattr(env.unwrapped, "dt", None)
    results, frames = [], []
    torch.manual_seed(seed)
    limit = max_steps or (env.spec.max_episode_steps if env.spec else None)
    bar = tqdm(total=episodes * limit if limit else None, unit="step", disable=not progress, desc="evaluating")
    for ep in range(episodes):
        obs, info = env.reset(seed=seed + ep)
        ret, length, done, terminated = 0.0, 0, False, False
        x0 = x = info.get("x_position")  # MuJoCo locomotion envs report the trunk's x position
        while not done:
            if video and ep < video_episodes:
                frames.append(env.render())
            with torch.no_grad():
                action = policy.act(torch.as_tensor(obs, dtype=torch.float32)[None], deterministic=not stochastic)
            obs, reward, terminated, truncated, info = env.step(policy.to_env(action)[0])
            ret, length = ret + float(reward), length + 1
            bar.update()
            x = info.get("x_position", x)
            done = terminated or truncated or (max_steps is not None and length >= max_steps)
        speed = float(x - x0) / (length * dt) if x0 is not None and dt else None
        results.append({"return": ret, "length": length, "forward_speed": speed, "fall": bool(terminated)})
    bar.close()
    if video and frames:
        import imageio.v2 as imageio
        fps = env.metadata.get("render_fps") or (round(1 / dt) if dt else 30)
        video.parent.mkdir(parents=True, exist_ok=True)
        imageio.mimwrite(video, frames, fps=fps, macro_block_size=8)
    env.close()
    speeds = [r["forward_speed"] for r in results if r["forward_speed"] is not None]
    report = {
        "episodes": results,
        "return_mean": float(np.mean([r["return"] for r in results])),
        "return_std": float(np.std([r["return"] for r in results])),
        "length_mean": float(np.mean([r["length"] for r in results])),
        "forward_speed_mean": float(np.mean(speeds)) if speeds else None,
        "falls": int(sum(r["fall"] for r in results)),
        "video": str(video) if video and frames else None,
        "deterministic": not stochastic,
    }
    if env_kwargs:
        report["env_kwargs"] = env_kwargs
    if checkpoint is None:
        name = f"eval_{label}.json" if env_kwargs else "eval.json"
        (run_dir.path / name).write_text(json.dumps(report, indent=2))
    return report


DEFAULT_COMMANDS = [(vx, vy, 0.0) for vx in (-1.0, -0.5, 0.0, 0.5, 1.0, 1.5) for vy in (0.0,)] + \
    [(0.5, -0.5, 0.0), (0.5, 0.5, 0.0), (0.0, 0.0, -1.0), (0.0, 0.0, 1.0)]


def overlay(frame: np.ndarray, lines: list[str]) -> np.ndarray:
    """Text drawn in the frame's top-left corner (Pillow, which matplotlib already needs)."""
    from PIL import Image, ImageDraw
    img = Image.fromarray(frame)
    draw = ImageDraw.Draw(img)
    draw.rectangle([0, 0, 250, 14 * len(lines) + 6], fill=(255, 255, 255))
    for i, text in enumerate(lines):
        draw.text((5, 3 + 14 * i), text, fill=(0, 0, 0))
    return np.asarray(img)


def evaluate_commands(run_dir: RunDir, commands: list[tuple[float, float, float]] | None = None,
                      seconds: float = 10.0, settle: float = 2.0, seed: int = 20_000, video: Path | None = None,
                      plot: Path | None = None, progress: bool = False, checkpoint: Path | None = None,
                      env_kwargs: dict[str, Any] | None = None, label: str = "env_kwargs") -> dict:
    """Velocity-command tracking: one deterministic episode per command (vx, vy, yaw rate), the command fixed
    for the episode. Tracking error = mean over the steps after `settle` seconds of |v_xy − command_xy| (m/s);
    the yaw-rate error likewise. Writes eval_commands.json, a plot of achieved against commanded velocity, and
    a video (all commands one after another) with the commanded and actual velocity drawn on each frame.
    `checkpoint`: another file of the run's (a snapshot); then no eval_commands.json is written. `env_kwargs` as for
    `evaluate` (the report goes to eval_commands_<label>.json)."""
    cfg = run_dir.read_config()
    env, policy = load(run_dir, video is not None, checkpoint=checkpoint, env_kwargs=env_kwargs)
    if not hasattr(env.unwrapped, "set_command"):
        raise SystemExit(f"{cfg.env.id} takes no velocity command (use env=quadruped_velocity, or "
                         "env.kwargs.task=velocity)")
    dt = env.unwrapped.dt
    steps, skip = int(round(seconds / dt)), int(round(settle / dt))
    results, frames = [], []
    for i, command in enumerate(tqdm(commands or DEFAULT_COMMANDS, desc="commands", disable=not progress)):
        env.reset(seed=seed + i)
        obs = env.unwrapped.set_command(*command)
        measured, fell = [], False
        for _ in range(steps):
            with torch.no_grad():
                action = policy.act(torch.as_tensor(obs, dtype=torch.float32)[None], deterministic=True)
            obs, _, terminated, truncated, info = env.step(policy.to_env(action)[0])
            measured.append(info["velocity"])
            if video:
                v = info["velocity"]
                frames.append(overlay(env.render(), [f"command vx {command[0]:+.2f} vy {command[1]:+.2f} "
                                                     f"yaw {command[2]:+.2f}",
                                                     f"actual  vx {v[0]:+.2f} vy {v[1]:+.2f} yaw {v[2]:+.2f}"]))
            if terminated or truncated:
                fell = bool(terminated)
                break
        m = np.array(measured[skip:] if len(measured) > skip else measured)
        c = np.asarray(command)
        results.append({"command": list(command), "mean_velocity": m.mean(0).tolist(),
                        "tracking_error_xy": float(np.linalg.norm(m[:, :2] - c[:2], axis=1).mean()),
                        "tracking_error_yaw": float(np.abs(m[:, 2] - c[2]).mean()), "fall": fell,
                        "steps": len(measured)})
    env.close()
    report = {"commands": results, "tracking_error_xy_mean": float(np.mean([r["tracking_error_xy"] for r in results])),
              "tracking_error_yaw_mean": float(np.mean([r["tracking_error_yaw"] for r in results])),
              "falls": int(sum(r["fall"] for r in results)), "seconds": seconds, "settle": settle}
    if env_kwargs:
        report["env_kwargs"] = env_kwargs
    if video and frames:
        import imageio.v2 as imageio
        video.parent.mkdir(parents=True, exist_ok=True)
        imageio.mimwrite(video, frames, fps=round(1 / dt), macro_block_size=8)
        report["video"] = str(video)
    if plot:
        report["plot"] = str(plot_tracking(results, plot))
    if checkpoint is None:
        name = f"eval_commands_{label}.json" if env_kwargs else "eval_commands.json"
        (run_dir.path / name).write_text(json.dumps(report, indent=2))
    return report


def plot_tracking(results: list[dict], out: Path) -> Path:
    """Achieved against commanded vx, vy and yaw rate (one point per command; a fall is a red cross)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 3, figsize=(10, 3.4), dpi=110)
    for k, (ax, name) in enumerate(zip(axes, ("vx (m/s)", "vy (m/s)", "yaw rate (rad/s)"))):
        c = np.array([r["command"][k] for r in results])
        a = np.array([r["mean_velocity"][k] for r in results])
        fell = np.array([r["fall"] for r in results])
        lim = [min(c.min(), a.min()) - 0.2, max(c.max(), a.max()) + 0.2]
        ax.plot(lim, lim, color="grey", linestyle=":")
        ax.scatter(c[~fell], a[~fell], s=18)
        ax.scatter(c[fell], a[fell], s=30, marker="x", color="red", label="fell")
        ax.set_xlabel(f"commanded {name}")
        ax.set_ylabel(f"achieved {name}")
        ax.grid(alpha=0.3)
    fig.suptitle("velocity tracking (deterministic policy, mean after the settling time)", fontsize=10)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out


def log_to_wandb(run_dir: RunDir, report: dict) -> None:
    """Add the evaluation (and the video) to the run's own W&B run (offline runs: `wandb sync` later)."""
    import wandb
    cfg = run_dir.read_config()
    run_id = run_dir.read_wandb_id()
    mode = "offline" if cfg.wandb.mode == "disabled" else cfg.wandb.mode
    run = wandb.init(dir=str(run_dir), id=run_id, resume="allow", mode=mode, project=cfg.wandb.project,
                     entity=cfg.wandb.entity, job_type="eval" if run_id is None else None)
    row = {f"eval/{k}": v for k, v in report.items() if isinstance(v, (int, float))}
    if report["video"]:
        row["eval/video"] = wandb.Video(report["video"], format="mp4")
    run.log(row)
    run.finish()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="pg-lab-eval", description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir", type=Path, help="a run directory (holds .hydra/ and checkpoint.pt)")
    p.add_argument("--episodes", type=int, default=5)
    p.add_argument("--video", type=Path, nargs="?", const=Path("eval.mp4"), default=None,
                   help="record an MP4: --video alone writes RUN_DIR/eval.mp4; a relative PATH is in RUN_DIR too")
    p.add_argument("--full-render", action="store_true",
                   help="keep shadows and reflections under software GL (osmesa), about 4x slower")
    p.add_argument("--video-episodes", type=int, default=1, help="how many episodes the video shows")
    p.add_argument("--max-steps", type=int, default=None, help="cut episodes at this many steps")
    p.add_argument("--seed", type=int, default=10_000, help="reset seed of the first episode")
    p.add_argument("--stochastic", action="store_true", help="sample actions instead of the mean")
    p.add_argument("--wandb", action="store_true", help="log the results and video to the run's W&B run")
    p.add_argument("--commands", nargs="*", default=None, metavar="VX,VY,YAW",
                   help="velocity-command tracking instead (env=quadruped_velocity): one episode per command; "
                        "no value: a grid over forward, lateral and turning commands. Writes eval_commands.json, "
                        "tracking.png and, with --video, the commands' episodes with the velocities drawn on")
    p.add_argument("--seconds", type=float, default=10.0, help="episode length per command (--commands)")
    p.add_argument("--env-kwargs", nargs="+", default=[], metavar="KEY=VALUE",
                   help="evaluate with some of the run's env.kwargs changed, values in YAML, e.g. domain "
                        "randomisation: randomization.friction=[0.5,1.25] randomization.push_interval_s=4; the "
                        "report says which and goes to eval_env_kwargs.json (eval_commands_env_kwargs.json)")
    p.add_argument("--label", default=None, metavar="NAME",
                   help="with --env-kwargs: name the report eval_NAME.json (eval_commands_NAME.json) instead, so "
                        "that several such evaluations of a run (e.g. randomised, rough terrain) are kept side by side")
    args = p.parse_args(argv)
    if args.label is not None and (not args.env_kwargs or not re.fullmatch(r"[a-z0-9_]+", args.label)
                                   or args.label == "commands"):
        p.error(f"--label: a name of lowercase letters, digits and _ (not 'commands'), with --env-kwargs; got "
                f"{args.label!r}" + ("" if args.env_kwargs else " without --env-kwargs"))
    label = args.label or "env_kwargs"
    run_dir = RunDir(args.run_dir)
    for needed in (run_dir.config, run_dir.checkpoint):
        if not needed.is_file():
            p.error(f"{needed} not found: RUN_DIR must be a pg-lab run directory with a checkpoint")
    try:
        env_kwargs = parse_env_kwargs(args.env_kwargs)
        with_env_kwargs(run_dir.read_config(), env_kwargs)
    except ValueError as e:
        p.error(str(e))
    video = args.video if args.video is None or args.video.is_absolute() else run_dir.path / args.video
    if args.commands is not None:
        try:
            commands = [tuple(float(x) for x in c.split(",")) for c in args.commands] or None
        except ValueError:
            p.error(f"--commands: expected VX,VY,YAW triples such as 1.0,0,0, got {args.commands}")
        if commands and any(len(c) != 3 for c in commands):
            p.error(f"--commands: expected VX,VY,YAW triples such as 1.0,0,0, got {args.commands}")
        report = evaluate_commands(run_dir, commands, args.seconds, seed=args.seed, video=video,
                                   plot=None if env_kwargs else run_dir.path / "tracking.png", progress=True,
                                   env_kwargs=env_kwargs, label=label)
        for r in report["commands"]:
            c, v = r["command"], r["mean_velocity"]
            print(f"command ({c[0]:+.2f}, {c[1]:+.2f}, {c[2]:+.2f}) -> ({v[0]:+.2f}, {v[1]:+.2f}, {v[2]:+.2f}): "
                  f"error {r['tracking_error_xy']:.2f} m/s, yaw {r['tracking_error_yaw']:.2f} rad/s"
                  + ("  FELL" if r["fall"] else ""))
        print(f"mean tracking error {report['tracking_error_xy_mean']:.3f} m/s (yaw "
              f"{report['tracking_error_yaw_mean']:.3f} rad/s), falls {report['falls']}/{len(report['commands'])}"
              + (f"; plot {report['plot']}" if report.get("plot") else "")
              + (f"; video {report['video']}" if report.get("video") else ""))
        return
    report = evaluate(run_dir, args.episodes, video, args.video_episodes, args.seed, args.max_steps,
                      args.stochastic, args.full_render, progress=True, env_kwargs=env_kwargs, label=label)
    for i, r in enumerate(report["episodes"]):
        speed = f"{r['forward_speed']:.2f} m/s" if r["forward_speed"] is not None else "-"
        print(f"episode {i}: return {r['return']:.1f}  length {r['length']}  forward speed {speed}"
              f"{'  FELL' if r['fall'] else ''}")
    speed = report["forward_speed_mean"]
    print(f"mean return {report['return_mean']:.1f} ± {report['return_std']:.1f} over {args.episodes} episodes; "
          f"falls {report['falls']}" + (f"; forward speed {speed:.2f} m/s" if speed is not None else "")
          + (f"; video {report['video']}" if report["video"] else ""))
    if args.wandb:
        log_to_wandb(run_dir, report)


if __name__ == "__main__":
    sys.exit(main())
