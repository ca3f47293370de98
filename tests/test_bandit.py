"""The estimator question as a test: on a 1-D bounded bandit every bounded head's update is an unbiased
estimate of the exact gradient (quadrature), and CAPG's variance is below the clipped Gaussian's."""

import pytest

from pg_lab.bandit import HEADS, table


@pytest.fixture(scope="module")
def rows():
    return {r["head"]: r for r in table(n=100_000)}


@pytest.mark.parametrize("head", list(HEADS))
def test_the_mean_update_matches_the_exact_gradient(rows, head):
    r = rows[head]
    assert len(r["exact"]) >= 2 and all(abs(z) < 4 for z in r["z"]), r  # within 4 standard errors


def test_capg_has_lower_variance_than_the_clipped_gaussian_it_scores_differently(rows):
    assert rows["capg"]["exact"] == pytest.approx(rows["gaussian"]["exact"])  # the same policy, the same ∇J
    assert rows["capg"]["variance"] < 0.8 * rows["gaussian"]["variance"]
