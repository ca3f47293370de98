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
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from pg_lab.builder import build_algorithm, env_factory
from pg_lab.rundir import RunDir


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


def evaluate(run_dir: RunDir, episodes: int = 5, video: Path | None = None, video_episodes: int = 1,
             seed: int = 10_000, max_steps: int | None = None, stochastic: bool = False,
             full_render: bool = False, progress: bool = False) -> dict:
    """Build the env through the run's own env config (its `_target_`) and the policy through the same
    builder as training, load the checkpoint, and run `episodes` episodes."""
    cfg = run_dir.read_config()
    env = env_factory(cfg).make(render_mode="rgb_array" if video else None)
    if video and not full_render and os.environ.get("MUJOCO_GL") == "osmesa":
        fast_render(env)
    algorithm = build_algorithm(cfg, env.observation_space, env.action_space, torch.device("cpu"))
    algorithm.load_state_dict(run_dir.load_checkpoint())
    policy = algorithm.policy.eval()
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
    (run_dir.path / "eval.json").write_text(json.dumps(report, indent=2))
    return report


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
    args = p.parse_args(argv)
    run_dir = RunDir(args.run_dir)
    for needed in (run_dir.config, run_dir.checkpoint):
        if not needed.is_file():
            p.error(f"{needed} not found: RUN_DIR must be a pg-lab run directory with a checkpoint")
    video = args.video if args.video is None or args.video.is_absolute() else run_dir.path / args.video
    report = evaluate(run_dir, args.episodes, video, args.video_episodes, args.seed, args.max_steps,
                      args.stochastic, args.full_render, progress=True)
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
