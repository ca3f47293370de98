"""The estimator question on a one-dimensional bounded bandit: which bounded heads give an unbiased policy
gradient, and with what variance?

    python -m pg_lab.bandit            # the table for docs and the closing note

The bandit: one state, actions in [-1, 1], reward R(a) = a of the action the env receives
(clipped for the Gaussian and CAPG heads, tanh-squashed, or mapped from (0, 1) for the Beta). Each head is the
real policy class with no hidden layer (its parameters are the output bias, i.e. μ or α, β, and log σ), set to
a state near a bound, where the heads differ. The exact gradient ∇J(θ) comes from quadrature of
J(θ) = ∫ R(env(x)) p_θ(x) dx (differentiated by autograd); the estimate is the real update's per-sample term
R(a) ∇log π(a) (the gradient of pg_lab.reinforce.policy_loss on a batch of one).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from gymnasium import spaces

from pg_lab.config import Reduction
from pg_lab.policies import BetaPolicy, CapgPolicy, GaussianPolicy, SquashedGaussianPolicy
from pg_lab.reinforce import policy_loss

OBS = spaces.Box(-1.0, 1.0, (1,), np.float32)
ACT = spaces.Box(-1.0, 1.0, (1,), np.float32)
HEADS = {"gaussian": GaussianPolicy, "capg": CapgPolicy, "squashed_gaussian": SquashedGaussianPolicy,
         "beta": BetaPolicy}


def reward(a: torch.Tensor) -> torch.Tensor:
    """The best action is the upper bound, where a good policy puts its mass (and clipping happens)."""
    return a


def make_head(name: str) -> torch.nn.Module:
    """The head with no hidden layer, its output bias set near the upper bound."""
    torch.manual_seed(0)
    policy = HEADS[name](OBS, ACT, hidden_sizes=(), out_gain=0.0).double()
    bias = policy.net[-1].bias
    with torch.no_grad():
        if name == "beta":
            bias.copy_(torch.tensor([1.5, -0.5], dtype=torch.float64))  # α ≈ 2.7, β ≈ 1.5: mass towards 1
        else:
            bias.fill_(0.8 if name != "squashed_gaussian" else 1.1)  # mean action ≈ 0.8
            policy.log_std.fill_(math.log(0.4))
    return policy


def env_action(name: str, x: torch.Tensor) -> torch.Tensor:
    if name in ("gaussian", "capg"):
        return x.clamp(-1.0, 1.0)
    if name == "squashed_gaussian":
        return torch.tanh(x)
    return 2.0 * x - 1.0


def exact_gradient(name: str, policy: torch.nn.Module) -> torch.Tensor:
    """∇J by quadrature over the head's sample space (a fine grid; tails beyond ±12σ are negligible)."""
    obs = torch.zeros(1, 1, dtype=torch.float64)
    dist = policy.distribution(obs)
    if name == "beta":
        x = torch.linspace(1e-9, 1 - 1e-9, 400001, dtype=torch.float64)
        base = dist.base.base_dist  # Beta over (0, 1)
    else:
        base = dist.base if name != "gaussian" else dist.base.base_dist
        mu, sd = base.loc.detach().item(), base.scale.detach().item()
        x = torch.linspace(mu - 12 * sd, mu + 12 * sd, 400001, dtype=torch.float64)
    density = base.log_prob(x.reshape(-1, 1)).exp().reshape(-1)
    j = torch.trapezoid(density * reward(env_action(name, x)), x)
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(j, list(policy.parameters()))])


def estimates(name: str, policy: torch.nn.Module, n: int, seed: int = 1) -> torch.Tensor:
    """n per-sample gradient estimates, [n, params]: each the gradient of −policy_loss on a batch of one."""
    torch.manual_seed(seed)
    obs = torch.zeros(n, 1, dtype=torch.float64)
    with torch.no_grad():
        x = policy.distribution(obs).sample()
    r = reward(env_action(name, x)).reshape(-1)
    params = list(policy.parameters())
    named = {f"policy.{k}": v.detach() for k, v in policy.named_parameters()}
    scorer = _Scorer(policy)

    def log_prob_one(theta: dict, xi: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(scorer, theta, (obs[:1], xi[None])).sum()

    per_sample = torch.func.vmap(torch.func.grad(log_prob_one), in_dims=(None, 0))(named, x)
    grads = torch.cat([per_sample[f"policy.{k}"].reshape(n, -1) for k, _ in policy.named_parameters()], 1) * r[:, None]
    # the same mean as the update's loss: −∇ policy_loss(log π, R) over the whole batch
    loss = policy_loss(policy.distribution(obs).log_prob(x), r, Reduction.mean, n)
    batch = torch.cat([g.reshape(-1) for g in torch.autograd.grad(-loss, params)])
    assert torch.allclose(grads.mean(0), batch, atol=1e-9)
    return grads


class _Scorer(torch.nn.Module):
    def __init__(self, policy):
        super().__init__()
        self.policy = policy

    def forward(self, obs, x):
        return self.policy.distribution(obs).log_prob(x)


def table(n: int = 200_000) -> list[dict]:
    rows = []
    for name in HEADS:
        policy = make_head(name)
        exact = exact_gradient(name, policy)
        g = estimates(name, policy, n)
        used = exact.abs() > 0  # the weights of the zero observation have no gradient
        exact, g = exact[used], g[:, used]
        mean, se = g.mean(0), g.std(0) / math.sqrt(n)
        rows.append({"head": name, "exact": exact.tolist(), "mean": mean.tolist(), "se": se.tolist(),
                     "z": ((mean - exact) / se).tolist(), "variance": g.var(0).sum().item()})
    return rows


def main() -> None:
    print("1-D bandit, R(a) = a on [-1, 1], heads set near the upper bound; 200,000 single-sample estimates per "
          "head; the parameters with a gradient (output bias: μ or α, β before softplus; log σ)\n")
    print("| head | exact ∇J | mean estimate ± s.e. | z | variance (trace) |\n|---|---|---|---|---|")
    for r in table():
        exact = ", ".join(f"{v:+.4f}" for v in r["exact"])
        est = ", ".join(f"{m:+.4f} ± {s:.4f}" for m, s in zip(r["mean"], r["se"]))
        z = ", ".join(f"{v:+.1f}" for v in r["z"])
        print(f"| {r['head']} | {exact} | {est} | {z} | {r['variance']:.4f} |")


if __name__ == "__main__":
    main()
