"""scripts/bench_learning.py's table: each task is judged against its own kind of target."""

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "bench_learning.py"
spec = importlib.util.spec_from_file_location("bench_learning", SCRIPT)
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def _quadruped(seed, speed, falls):
    evaluation = None if speed is None else {"forward_speed_mean": speed, "falls": falls}
    return {"task": "quadruped", "seed": seed, "final": 1000.0 + seed, "eval": evaluation}


def _row(results):
    return bench.report(results, ["quadruped"]).splitlines()[-1].split(" | ")


def test_the_quadruped_row_is_judged_by_its_evaluation_on_every_seed():
    good = [_quadruped(s, 1.6 + s / 10, 0) for s in range(3)]
    row = _row(good)
    assert row[3] == "1.70 m/s" and row[6] == "yes"
    assert "evaluation m/s (falls of 5): 1.60 (0), 1.70 (0), 1.80 (0)" in row[2]
    # one fall, one seed too slow, one seed not evaluated: each alone misses the target
    for bad in (_quadruped(2, 1.8, 1), _quadruped(2, 1.4, 0), _quadruped(2, None, 0)):
        row = _row(good[:2] + [bad])
        assert row[6] == "no", row
    assert "not evaluated" in _row(good[:2] + [_quadruped(2, None, 0)])[2]
