# `make run` and `make test` set everything up on first use (a virtualenv in .venv) and then do their job.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build of torch is what this project needs to run and test; on the project's machines
# `torch==2.13.0` is that build. Elsewhere, set TORCH= (empty) to keep whatever pip picks for you.
TORCH ?= torch==2.13.0
export WANDB_SILENT ?= true
# offscreen MuJoCo rendering through OSMesa where the library is installed (the setup below installs it on
# Debian); elsewhere leave MUJOCO_GL to the user (egl on a GPU machine), since an unusable backend breaks make()
ifeq ($(origin MUJOCO_GL),undefined)
ifneq ($(shell ldconfig -p 2>/dev/null | grep -c libOSMesa),0)
export MUJOCO_GL := osmesa
export PYOPENGL_PLATFORM := osmesa
endif
endif

.PHONY: setup run test test-slow test-plain test-slurm test-warp lint clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@# offscreen MuJoCo rendering on a CPU machine (MUJOCO_GL=osmesa) needs Debian's libosmesa6
	@dpkg -s libosmesa6 >/dev/null 2>&1 || ! command -v apt-get >/dev/null || \
	  { apt-get update -qq && apt-get install -y -qq libosmesa6 >/dev/null; } || \
	  echo "warning: could not install libosmesa6; MuJoCo videos need MUJOCO_GL=egl or osmesa"
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(if $(TORCH),$(BIN)/python -m pip install -q "$(TORCH)")
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

# The main job: a short REINFORCE run on CartPole, W&B offline (no account or network needed).
run: setup
	$(BIN)/pg-lab total_steps=50000

test: setup
	$(BIN)/pytest -q -n auto

test-slow: setup
	$(BIN)/pytest -q -n auto -m slow

# `make test` forks pg_lab's commands from a process that has imported torch once (tests/cli.py); this runs the
# same tests with every command started as a plain subprocess, as a check that the shortcut hides nothing
test-plain: setup
	PG_LAB_TEST_FORK=0 $(BIN)/pytest -q -n auto

# The MuJoCo Warp backend (env.backend=warp) on the CPU: installs the gpu extra (mujoco-warp, warp-lang) into the
# same virtualenv; MuJoCo Warp compiles its kernels on first use (about 1.5 min on 2 cores, cached in ~/.cache/warp)
$(VENV)/.installed-gpu: $(VENV)/.installed
	$(BIN)/python -m pip install -q -e '.[dev,gpu]'
	touch $@

test-warp: $(VENV)/.installed-gpu
	$(BIN)/pytest -q -m warp

# A real single-node Slurm on this machine (root; Debian's packages): sweeps through hydra/launcher=slurm and a
# re-queued job that resumes. The cluster is taken down again however the tests end.
test-slurm: setup
	scripts/local_slurm.sh up
	$(BIN)/pytest -q -m slurm; rc=$$?; scripts/local_slurm.sh down; exit $$rc

lint: setup
	$(BIN)/ruff check pg_lab tests scripts

clean:
	rm -rf $(VENV) .pytest_cache
