import ctypes.util
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
os.environ.setdefault("WANDB_SILENT", "true")
if "MUJOCO_GL" not in os.environ and ctypes.util.find_library("OSMesa"):
    os.environ["MUJOCO_GL"] = "osmesa"  # as the Makefile does; without it MuJoCo envs still run, unrendered

from helpers import register_test_envs  # noqa: E402

register_test_envs()


@pytest.fixture
def compose():
    """compose(*overrides) -> the composed config, as `pg-lab` would see it (no run started)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from pg_lab.config import register_schema
    from pg_lab.train import CONF_DIR

    register_schema()

    def _compose(*overrides: str, return_hydra_config: bool = False):
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            return hydra_compose("config", overrides=list(overrides), return_hydra_config=return_hydra_config)

    return _compose


@pytest.fixture
def train_in_process(tmp_path):
    """train_in_process(*overrides, run_dir=None) -> final_return_mean: pg_lab.train.train() in this
    process, with Hydra's runtime config set as the entrypoint would (for tests that patch or inspect)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    from pg_lab.config import register_schema
    from pg_lab.rundir import RunDir
    from pg_lab.train import CONF_DIR, train

    register_schema()

    def _train(*overrides: str, run_dir: Path | None = None):
        run_dir = run_dir or tmp_path / "run"
        run_dir.mkdir(parents=True, exist_ok=True)
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            cfg = hydra_compose("config", overrides=["wandb.mode=disabled", "progress_bar=false", *overrides],
                                return_hydra_config=True)
            with open_dict(cfg):
                cfg.hydra.runtime.output_dir = str(run_dir)
            HydraConfig.instance().set_config(cfg)
            with open_dict(cfg):
                del cfg["hydra"]
            return train(cfg, RunDir(run_dir))

    yield _train
    HydraConfig.instance().cfg = None  # a later test's composed config must not see this launch's overrides
