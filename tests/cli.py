"""`subprocess.run` and `subprocess.Popen` for pg_lab's own commands, without paying Python's start-up each time.

A `pg-lab` process spends about 3 s of CPU before it does anything: importing torch, and torch._dynamo, which
torch.optim imports on an optimizer's first use. About 60 tests start one, to check what only a real process
shows (exit codes, signals, run-directory locks, what it prints). Here those commands run in a process forked
from a server that has imported torch and pg_lab once (the standard library's `multiprocessing` forkserver).
The child is a real process of its own, with its own pid, environment, working directory, stdin/stdout/stderr
and exit code.
It runs the console script's entry function (`pg_lab.train:main`, `pg_lab.evaluate:main`), as the installed
script does.

Anything else (`wandb`, `pip`, `python -c ...`) runs as a plain subprocess. So does everything when
PG_LAB_TEST_FORK=0, which runs the suite the slow way, as a check on this module. Tests of the console
scripts themselves (`python -m pg_lab`, `pg-lab --help`, an installed wheel) call `subprocess` directly.
"""

from __future__ import annotations

import atexit
import importlib
import importlib.util
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import traceback
from pathlib import Path

ENABLED = os.environ.get("PG_LAB_TEST_FORK", "1") != "0"
ENTRY_POINTS = {"pg-lab": "pg_lab.train:main", "pg-lab-eval": "pg_lab.evaluate:main"}
MODULES = {"pg_lab": "pg_lab.train:main", "pg_lab.evaluate": "pg_lab.evaluate:main"}
# imported once by the server: torch, Hydra, and pg_lab's entry with what it imports (gymnasium, MuJoCo and its
# Gymnasium envs), about 0.6 s of CPU a command. pg_lab.envs and MuJoCo read MUJOCO_GL (and PyOpenGL its platform)
# at import, as the server did from the environment it started in: a command whose environment differs there runs
# as a plain subprocess, like any other setting read at import (IMPORT_TIME_ENV).
PRELOAD = ["numpy", "torch", "torch._dynamo", "torch.optim", "omegaconf", "hydra", "pg_lab.train",
           "pg_lab.evaluate", "gymnasium.envs.mujoco.mujoco_env"]
# read by the preloaded libraries at their import: a command given another value of one runs as a plain subprocess
IMPORT_TIME_ENV = ("OMP_", "MKL_", "OPENBLAS_", "KMP_", "TORCH", "PYTORCH", "CUDA", "PYTHON", "MUJOCO_GL",
                   "PYOPENGL_PLATFORM")
PIPE, DEVNULL, STDOUT = subprocess.PIPE, subprocess.DEVNULL, subprocess.STDOUT

_context = None


def _forkserver():
    global _context
    if _context is None:
        _context = multiprocessing.get_context("forkserver")
        _context.set_forkserver_preload(PRELOAD)
    return _context


def forks(cmd, env: dict | None) -> bool:
    """Whether `cmd` runs forked from the server: one of pg_lab's commands, in an environment whose settings
    read at import time are the server's."""
    return ENABLED and entry_point([str(c) for c in cmd]) is not None and not changes_import_time_env(env)


def changes_import_time_env(env: dict | None) -> bool:
    """Whether `env` (None: this process's) gives another value to a setting the server's libraries read at
    import."""
    changed = set() if env is None else {k for k in set(env) | set(os.environ) if env.get(k) != os.environ.get(k)}
    return any(k.startswith(IMPORT_TIME_ENV) for k in changed)


def entry_point(cmd: list[str]) -> tuple[str, list[str]] | None:
    """('module:function', sys.argv) of the console script `cmd` runs, or None for any other command."""
    if Path(cmd[0]).name in ENTRY_POINTS:
        return ENTRY_POINTS[Path(cmd[0]).name], cmd
    if len(cmd) >= 3 and cmd[0] == sys.executable and cmd[1] == "-m" and cmd[2] in MODULES:
        spec = importlib.util.find_spec(cmd[2])  # `python -m` puts the file it runs in argv[0]
        main_file = spec.origin if not spec.submodule_search_locations else \
            importlib.util.find_spec(f"{cmd[2]}.__main__").origin
        return MODULES[cmd[2]], [main_file, *cmd[3:]]
    return None


def _exit_code(code) -> int:
    """What the interpreter makes of SystemExit(code)."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def _child(target: str, argv: list[str], env: dict, cwd: str, out: str, err: str | None,
           new_session: bool) -> None:
    """In the forked process: become what the console script's process would be, run its entry, exit as
    the interpreter would (non-daemon threads joined, atexit handlers run, streams flushed)."""
    if new_session:
        os.setsid()
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    os.dup2(os.open(out, os.O_WRONLY | os.O_APPEND), 1)
    os.dup2(1 if err is None else os.open(err, os.O_WRONLY | os.O_APPEND), 2)
    sys.stdin = open(0, closefd=False)
    sys.stdout = sys.__stdout__ = open(1, "w", buffering=1, closefd=False)
    sys.stderr = sys.__stderr__ = open(2, "w", buffering=1, errors="backslashreplace", closefd=False)
    sys.argv = argv
    module, function = target.split(":")
    try:
        getattr(importlib.import_module(module), function)()
        code = 0
    except SystemExit as e:
        code = _exit_code(e.code)
    except KeyboardInterrupt:
        traceback.print_exc()
        code = -signal.SIGINT  # the interpreter ends itself with SIGINT, so the parent sees the signal
    except BaseException:
        traceback.print_exc()
        code = 1
    threading._shutdown()  # as the interpreter ends: the threading atexit hooks, then join non-daemon threads
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    if code < 0:
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    os._exit(code)


class Popen:
    """The part of subprocess.Popen that the tests use, for a command forked from the server."""

    def __init__(self, cmd, stdout=None, stderr=None, text: bool = False, env: dict | None = None,
                 cwd: str | Path | None = None, start_new_session: bool = False):
        self.args, self.text = [str(c) for c in cmd], text
        self._dir = tempfile.mkdtemp(prefix="pg_lab_cli_")
        self._out, self._err = os.path.join(self._dir, "out"), os.path.join(self._dir, "err")
        for path in (self._out, self._err):
            open(path, "wb").close()
        self._keep = {"out": stdout == PIPE, "err": stderr == PIPE}
        err = None if stderr == STDOUT else self._err
        target, argv = entry_point(self.args)
        self._process = _forkserver().Process(
            target=_child, args=(target, argv, dict(os.environ if env is None else env),
                                 str(cwd or os.getcwd()), self._out, err, start_new_session))
        self._process.start()
        self.pid = self._process.pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self._process.exitcode
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        self._process.join(timeout)
        if self.poll() is None:
            raise subprocess.TimeoutExpired(self.args, timeout)
        if not any(self._keep.values()):  # nothing for communicate() to read
            shutil.rmtree(self._dir, ignore_errors=True)
        return self.returncode

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, signum)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def communicate(self, timeout: float | None = None):
        self.wait(timeout)
        outputs = []
        for name, path in (("out", self._out), ("err", self._err)):
            data = Path(path).read_bytes() if self._keep[name] else None
            outputs.append(data.decode(errors="replace") if data is not None and self.text else data)
        shutil.rmtree(self._dir, ignore_errors=True)
        return tuple(outputs)


def popen(cmd, **kwargs):
    """subprocess.Popen(cmd, **kwargs), forked from the server when `cmd` is one of pg_lab's commands."""
    if forks(cmd, kwargs.get("env")):
        return Popen(cmd, **kwargs)
    return subprocess.Popen(cmd, **kwargs)


def run(cmd, *, capture_output: bool = False, check: bool = False, timeout: float | None = None,
        stdout=None, stderr=None, text: bool = False, env: dict | None = None, cwd=None) -> subprocess.CompletedProcess:
    """subprocess.run(cmd, ...), forked from the server when `cmd` is one of pg_lab's commands."""
    if not forks(cmd, env):
        return subprocess.run(cmd, capture_output=capture_output, check=check, timeout=timeout, stdout=stdout,
                              stderr=stderr, text=text, env=env, cwd=cwd)
    if capture_output:
        stdout = stderr = PIPE
    proc = Popen(cmd, stdout=stdout, stderr=stderr, text=text, env=env, cwd=cwd)
    try:
        out, err = proc.communicate(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise
    if check and proc.returncode:
        raise subprocess.CalledProcessError(proc.returncode, proc.args, out, err)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
