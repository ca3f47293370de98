#!/usr/bin/env bash
# env.backend=warp on a GPU machine, in one call: install MuJoCo Warp, check the CUDA path against the CPU env,
# measure env steps/s at 1k, 4k and 16k worlds, train each of RUNS (Go1 forward by default) at 4096 worlds for
# TRAIN_S seconds with a snapshot of the checkpoint every SNAP_S seconds, and evaluate the snapshots (time to
# 1 m/s with 0 falls; for the velocity task, time to a tracking error of 0.25 m/s with 0 falls).
#
# The machine has no network: wheels travel with the call (scripts/gpu_wheels.sh prepares them; warp-lang's
# wheel is larger than one call may carry, so its library's first part travels over an earlier call).
#   there:  OUT=/some/dir bash scripts/gpu_warp.sh
#   e.g. a second call on the warm machine:  STAGES= RUNS="go2 quadruped_velocity" TRAIN_S=240 bash scripts/gpu_warp.sh
# Writes $OUT/gpu_warp.txt (everything it printed), and each run's metrics and curve (<env>_metrics.jsonl,
# <env>_curve.json) and its run directory with the checkpoint and the training log (<env>_run.tgz).
# A run goes on from an earlier call's (or session's) <env>_run.tgz found in RESUME_DIR (carried there): it resumes
# from the checkpoint, and its snapshots count the wall clock of training from the first launch.
set -uo pipefail
OUT=${OUT:-/tmp/gpu_warp}
SITE=${SITE:-/tmp/site}        # where the wheels are installed
WHEELS=${WHEELS:-.gpu_c}       # the wheels and warp's Python files
PARTS=${PARTS:-/tmp/w}         # warp.so.xz.* carried by earlier calls
TRAIN_S=${TRAIN_S:-300}
SNAP_S=${SNAP_S:-20}
WORLDS=${WORLDS:-"1024 4096 16384"}
DEVICE=${DEVICE:-cuda}
TRAIN_ENVS=${TRAIN_ENVS:-4096}
RUNS=${RUNS-go1}               # env configs to train, one after another (go1 go2 quadruped_velocity); name:seconds
                               # overrides TRAIN_S for one run, e.g. RUNS="go1:150 quadruped_velocity:240";
                               # RUNS= (empty) trains nothing: install only, or the STAGES alone
STAGES=${STAGES-"tests envsteps"}  # before the training: leave out what a warm machine has done already; "solver"
                                   # adds env steps/s with fewer solver iterations
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu_warp.txt") 2>&1
start=$(date +%s)
stage() { echo; echo "== $1 ($(( $(date +%s) - start )) s)"; }

stage install
if [[ ! -f $SITE/.done ]]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$SITE" "$WHEELS"/*.whl \
    2>&1 | grep -v -i warning
  tar -xzf "$WHEELS/warp_py.tgz" -C "$SITE"
  cp "$WHEELS"/parts/warp.so.xz.* "$PARTS"/ 2>/dev/null; cat "$PARTS"/warp.so.xz.* | xz -d -T0 > "$SITE/warp/bin/warp.so" || exit 1
  touch "$SITE/.done"
fi
export PYTHONPATH=$SITE:$PWD MUJOCO_GL=disable WANDB_MODE=disabled PYTHONUNBUFFERED=1
nvidia-smi -L
python3 -c "import torch, warp, mujoco, mujoco_warp; warp.init(); print('torch', torch.__version__, 'warp', \
warp.__version__, 'mujoco', mujoco.__version__, 'mujoco_warp', mujoco_warp.__version__, 'devices', \
warp.get_cuda_device_count())" || exit 1

if [[ $STAGES == *tests* ]]; then
stage "the CUDA path against the CPU env (tests/test_warp.py on $DEVICE; compiles the kernels)"
PG_LAB_WARP_DEVICE=$DEVICE timeout 300 python3 -m pytest -q -p no:cacheprovider -m warp tests/test_warp.py \
  -k "compute_what or same_step or randomised or curriculum or stages" 2>&1 | grep -v "^Module" | tail -15
fi

if [[ $STAGES == *envsteps* ]]; then
stage "env steps/s"
# shellcheck disable=SC2086
timeout 150 python3 scripts/bench_gpu.py envsteps --device "$DEVICE" --worlds $WORLDS 2>&1 | grep -v "^Module"
fi

if [[ $STAGES == *solver* ]]; then
stage "env steps/s at 4096 worlds: the MJCF's solver against fewer iterations (env.kwargs.solver)"
for solver in "" "iterations=4 ls_iterations=8" "iterations=2 ls_iterations=4 cone=pyramidal"; do
  # shellcheck disable=SC2086
  timeout 100 python3 scripts/bench_gpu.py envsteps --device "$DEVICE" --worlds 4096 --solver $solver 2>&1 \
    | grep "env steps/s"
done
fi

for spec in $RUNS; do
env_name=${spec%%:*}; seconds=$TRAIN_S; [[ $spec == *:* ]] && seconds=${spec#*:}
stage "training: $env_name, $TRAIN_ENVS worlds, ${seconds} s"
run=/tmp/gpu_runs/$env_name snaps=/tmp/gpu_runs/${env_name}_snaps
rm -rf "$run" "$snaps"; mkdir -p "$snaps"
offset=0  # seconds of training before this call
if [[ -n ${RESUME_DIR:-} && -f $RESUME_DIR/${env_name}_run.tgz ]]; then
  tar -xzf "$RESUME_DIR/${env_name}_run.tgz" -C /tmp/gpu_runs
  offset=$(cat "$run/wall_s.txt"); echo "resuming $run after ${offset} s of training"
  launch=(python3 -m pg_lab resume="$run"); cp "$run/train_stdout.log" "$run.log"
else
  rm -f "$run.log"
  launch=(python3 -m pg_lab env="$env_name" experiment=legged_gpu device="$DEVICE" env.num_envs="$TRAIN_ENVS"
          total_steps="${TOTAL_STEPS:-50000000}" progress_bar=false hydra.run.dir="$run")
fi
"${launch[@]}" >> "$run.log" 2>&1 &
pid=$!
t0=$(date +%s)
while kill -0 $pid 2>/dev/null; do
  sleep "$SNAP_S"
  now=$(( $(date +%s) - t0 ))
  [[ -f $run/checkpoint.pt ]] && cp "$run/checkpoint.pt" "$snaps/$(( offset + now )).pt"
  if (( now >= seconds )); then kill -TERM $pid 2>/dev/null; fi
done
wait $pid; echo "training exit code $? (143: stopped at ${seconds} s)"
echo $(( offset + $(date +%s) - t0 )) > "$run/wall_s.txt"
grep -v "^Module" "$run.log" | tail -3
cp "$run/metrics.jsonl" "$OUT/${env_name}_metrics.jsonl"
cp "$run.log" "$run/train_stdout.log"
tar -czf "$OUT/${env_name}_run.tgz" -C /tmp/gpu_runs --exclude='*.pt.tmp' "$env_name"
python3 - "$run" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(f"{sys.argv[1]}/metrics.jsonl")]
a, b = rows[min(2, len(rows) - 1)], rows[-1]  # after the first updates (kernel compilation, graph capture)
rate = (b["step"] - a["step"]) / max(b["time_s"] - a["time_s"], 1e-9)
print(f"training (rollout + update): {rate:,.0f} env steps/s over updates {a['update']}-{b['update']}; "
      f"rollout {sum(r['rollout_s'] for r in rows[2:]):.0f} s, update {sum(r['update_s'] for r in rows[2:]):.0f} s")
for r in rows[:: max(1, len(rows) // 12)] + [b]:
    terms = {k[7:]: round(v / 0.02, 3) for k, v in r.items()
             if k in ("reward/forward_velocity", "reward/tracking_lin_vel", "reward/tracking_ang_vel")}
    print(f"  {r['time_s']:6.0f} s {r['step']:>12,} steps: reward terms per second {terms}, episode length "
          f"{r['episode_length_mean'] or 0:6.0f}, return {r['return_recent_mean'] or 0:8.2f}")
PY
stage "evaluating $env_name's snapshots on the CPU env"
timeout 200 python3 scripts/bench_gpu.py curve "$run" "$snaps" --workers 15 2>&1 | grep -v "^Module"
cp "$snaps/curve.json" "$OUT/${env_name}_curve.json" 2>/dev/null
done
stage done
