import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("MUJOCO_GL", "osmesa")

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
