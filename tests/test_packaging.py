"""The wheel is the whole app: configs and models ship in it, and a lab's own config directory composes on top."""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
tomllib = pytest.importorskip("tomllib")


def test_every_config_directory_ships_as_a_package():
    """setuptools only ships directories it is told about: a new config group or model directory must be listed in
    pyproject."""
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    conf = ROOT / "conf"
    wanted = {"pg_lab.conf"} | {"pg_lab.conf." + ".".join(d.relative_to(conf).parts)
                                for d in conf.rglob("*") if d.is_dir() and any(d.glob("*.yaml"))}
    assets = ROOT / "pg_lab" / "envs" / "assets"
    wanted |= {"pg_lab.envs.assets." + ".".join(d.relative_to(assets).parts) for d in assets.rglob("*") if d.is_dir()}
    assert wanted <= listed, f"missing from [tool.setuptools] packages: {sorted(wanted - listed)}"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", str(ROOT),
                    "-w", str(out)], check=True, capture_output=True, cwd=out)
    return next(out.glob("pg_lab-*.whl"))


@pytest.mark.slow
def test_wheel_holds_every_config_and_model(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for path in ROOT.joinpath("conf").rglob("*.yaml"):
        assert f"pg_lab/conf/{path.relative_to(ROOT / 'conf').as_posix()}" in names
    for path in ROOT.joinpath("pg_lab", "envs", "assets").rglob("*"):
        if path.is_file():
            assert f"pg_lab/{path.relative_to(ROOT / 'pg_lab').as_posix()}" in names


@pytest.mark.slow
def test_installed_wheel_runs_elsewhere_with_a_lab_config_dir(wheel, tmp_path):
    """pip install the wheel (no source tree on the path), run from another directory, with a lab's own env
    file and preset (outside the package) that extend pg_lab's."""
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)],
                   check=True, capture_output=True)
    lab = tmp_path / "lab_conf"
    (lab / "env").mkdir(parents=True)
    (lab / "env" / "short_cartpole.yaml").write_text(
        "# @package _global_\ndefaults:\n  - cartpole\nenv:\n  max_episode_steps: 50\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site)}
    where = subprocess.run([sys.executable, "-c", "import pg_lab; print(pg_lab.__file__)"], env=env, cwd=elsewhere,
                           capture_output=True, text=True, check=True).stdout
    assert where.startswith(str(site)), where
    proc = subprocess.run([sys.executable, "-m", "pg_lab", "--config-dir", str(lab), "env=short_cartpole",
                           "total_steps=1024", "wandb.mode=disabled", "progress_bar=false", "hydra.run.dir=run"],
                          env=env, cwd=elsewhere, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    config = (elsewhere / "run" / ".hydra" / "config.yaml").read_text()
    assert "max_episode_steps: 50" in config and "CartPole-v1" in config
