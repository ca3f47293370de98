#!/usr/bin/env bash
# One call on a GPU machine (no network there): install pg_lab's runtime dependencies from wheels carried in
# WHEELS (downloaded beforehand for that machine's Python; see below), check that device=cuda trains, resumes
# bit-exactly and agrees with the CPU, and time the training loop on both devices at the MuJoCo defaults.
#
#   here:  pip download --no-deps --python-version 3.12 --only-binary=:all: --platform manylinux_2_28_x86_64 \
#            --platform any -d .gpu_wheels gymnasium mujoco mujoco-core mujoco-studio hydra-core omegaconf ...
#   there: WHEELS=.gpu_wheels OUT=/some/dir bash scripts/gpu_smoke.sh
# Writes $OUT/gpu_smoke.txt (what it printed) and the runs' summaries.
set -uo pipefail
WHEELS=${WHEELS:-.gpu_wheels}
OUT=${OUT:-/tmp/gpu_smoke}
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu_smoke.txt") 2>&1
PY=${PYTHON:-python3}
$PY -m pip install -q --no-index --no-deps --find-links "$WHEELS" "$WHEELS"/*.whl 2>&1 | grep -v -i "warning" | tail -3
# no rendering here (MuJoCo would look for EGL, which this machine may lack)
export PYTHONPATH=$PWD MUJOCO_GL=disable WANDB_MODE=disabled
nvidia-smi -L
$PY -c "import torch, gymnasium, mujoco; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'gymnasium', gymnasium.__version__, 'mujoco', mujoco.__version__)"

run() {  # name, overrides...
  local name=$1; shift
  $PY -m pg_lab "$@" wandb.mode=disabled progress_bar=false hydra.run.dir="$OUT/$name" > "$OUT/$name.log" 2>&1
  echo "$name: rc=$? $(tail -1 "$OUT/$name.log")"
}
common=(env=half_cheetah seed=1 total_steps=200000)
run cpu "${common[@]}" device=cpu
run cuda "${common[@]}" device=cuda
# resume on the GPU: SIGTERM a run once it has checkpointed, relaunch it, compare with the straight run
$PY -m pg_lab "${common[@]}" device=cuda checkpoint_every=1 wandb.mode=disabled progress_bar=false \
  hydra.run.dir="$OUT/cuda_resumed" > "$OUT/cuda_resumed.log" 2>&1 &
pid=$!
for _ in $(seq 1 600); do [[ -f $OUT/cuda_resumed/checkpoint.pt ]] && break; sleep 0.2; done
sleep 8; kill -TERM $pid; wait $pid; echo "cuda_resumed: stopped with rc=$? (143 expected)"
run cuda_resumed "${common[@]}" device=cuda checkpoint_every=1
$PY - "$OUT" <<'PY'
import json, sys, torch
out = sys.argv[1]
def load(name):
    return torch.load(f"{out}/{name}/checkpoint.pt", map_location="cpu", weights_only=False)
def diff(a, b):
    return max((a["policy"][k].double() - b["policy"][k].double()).abs().max().item() for k in a["policy"])
for name in ("cpu", "cuda"):
    s = json.load(open(f"{out}/{name}/summary.json"))
    print(f"{name}: {s['status']} {s['total_steps']} steps, {s['steps_per_s']:.0f} steps/s, final return "
          f"{s['final_return_mean']:.1f}")
print("cuda: SIGTERM + resume vs straight, max |policy diff|:", diff(load("cuda"), load("cuda_resumed")))
print("cuda vs cpu, max |policy diff| after 200k steps (not expected to be 0):", diff(load("cuda"), load("cpu")))
PY
$PY -m pytest -q -p no:cacheprovider tests/test_algorithm.py tests/test_step_batching.py tests/test_returns.py \
  tests/test_distributions.py -k "not async and not evaluation and not new_baseline" 2>&1 | tail -3
