"""The REINFORCE update, as derived in the lecture:

    ∇θ E[G(τ)] = E[ G · Σ_t ∇θ log π(a_t | s_t; θ) ]        θ ← θ + α ∇θ E[G(τ)]

estimated from a batch of on-policy episodes; the loss handed to the optimiser (a minimiser) is
−(G − b) · log π, with G the chosen return estimator and b the baseline.
"""

from __future__ import annotations

import numpy as np
import torch

from pg_lab.baselines import Estimates, NoBaseline
from pg_lab.config import Estimator, Reduction
from pg_lab.policies import Policy
from pg_lab.returns import episode_starts, reward_to_go, trajectory_returns
from pg_lab.rollout import Batch, NonFiniteError


def estimate(batch: Batch, baseline: NoBaseline, gamma: float, estimator: Estimator) -> Estimates:
    """Returns under `estimator`, and the critic's values where the baseline has one. A critic bootstraps
    time-limit truncations with V(final observation); a terminal state is worth 0."""
    ends = batch.ends
    values = np.zeros_like(batch.rewards)
    next_values = np.zeros_like(batch.rewards)
    if baseline.critic is not None:
        device = next(baseline.critic.parameters()).device
        with torch.no_grad():
            values = baseline.critic(torch.from_numpy(batch.obs).to(device)).double().cpu().numpy()
            next_values[:-1] = values[1:]
            next_values[ends] = 0.0
            if len(batch.final_index):
                t, n = batch.final_index.T
                next_values[t, n] = baseline.critic(torch.from_numpy(batch.final_obs).to(device)).double().cpu().numpy()
    to_go = reward_to_go(batch.rewards, ends, next_values, gamma)
    returns = to_go if estimator == Estimator.reward_to_go else \
        trajectory_returns(batch.rewards, ends, next_values, gamma)
    return Estimates(returns=returns, reward_to_go=to_go, rewards=batch.rewards, ends=ends, valid=batch.valid,
                     values=values, next_values=next_values)


def policy_loss(log_prob: torch.Tensor, advantage: torch.Tensor, reduction: Reduction,
                num_episodes: int) -> torch.Tensor:
    """−(G − b) · log π(a|s), over the batch's steps.

    `sum` sums over each episode's steps and averages over episodes: the unbiased estimate of the
    equation above. `mean` averages over all steps: the same direction scaled by 1/(mean episode length),
    which keeps the step size comparable across tasks."""
    if reduction == Reduction.sum:
        return -(advantage * log_prob).sum() / num_episodes
    return -(advantage * log_prob).mean()


def episode_ids(ends: np.ndarray) -> np.ndarray:
    """A distinct integer for every episode of a [T, N] batch (per step)."""
    starts = episode_starts(ends)
    return np.cumsum(starts, axis=0) + np.arange(ends.shape[1]) * (ends.shape[0] + 1)


def gradient_variance(policy: Policy, log_prob: torch.Tensor, advantage: torch.Tensor, episode: np.ndarray,
                      chunks: int) -> dict[str, float]:
    """Variance and signal-to-noise ratio of the policy-gradient estimate, from per-chunk gradients.

    Episodes (independent samples; steps within one are not) are dealt into `chunks` chunks; g_j is the
    gradient of −mean(A · log π) over chunk j. The variance of their mean, Σ_params var_j(g_j) / k, estimates
    the trace of the covariance of the batch gradient; SNR = ‖mean_j g_j‖² / that variance."""
    params = [p for p in policy.parameters() if p.requires_grad]
    uniq = np.unique(episode)
    k = min(chunks, len(uniq))
    if k < 2:
        return {}
    chunk = torch.as_tensor(np.searchsorted(uniq, episode) % k, device=log_prob.device)
    grads = []
    for j in range(k):
        mask = chunk == j
        g = torch.autograd.grad(-(advantage[mask] * log_prob[mask]).mean(), params, retain_graph=True,
                                allow_unused=True)
        grads.append(torch.cat([(x if x is not None else torch.zeros_like(p)).flatten() for x, p in zip(g, params)]))
    g = torch.stack(grads)
    variance = g.var(0, unbiased=True).sum() / k
    return {"grad_var": variance.item(), "grad_snr": (g.mean(0).pow(2).sum() / variance).item()}


def reinforce_update(policy: Policy, optimizer: torch.optim.Optimizer, batch: Batch, advantages: np.ndarray,
                     *, reduction: Reduction, normalize_advantage: bool, ent_coef: float,
                     max_grad_norm: float | None, num_episodes: int, device: torch.device,
                     grad_variance_chunks: int = 0) -> dict[str, float]:
    valid = batch.valid.reshape(-1)
    obs = torch.from_numpy(batch.obs.reshape(-1, batch.obs.shape[-1])[valid]).to(device)
    actions = batch.actions.reshape(-1, *batch.actions.shape[2:])[torch.from_numpy(valid).to(batch.actions.device)]
    advantage = torch.as_tensor(advantages.reshape(-1)[valid], dtype=torch.float32, device=device)
    if normalize_advantage and len(advantage) > 1:
        advantage = (advantage - advantage.mean()) / (advantage.std() + 1e-8)

    dist = policy.distribution(obs)
    log_prob = dist.log_prob(actions)
    entropy = dist.entropy().mean()
    loss = policy_loss(log_prob, advantage, reduction, num_episodes) - ent_coef * entropy
    if not torch.isfinite(loss):
        raise NonFiniteError(f"non-finite policy loss ({loss.item()}): log_prob finite="
                             f"{bool(torch.isfinite(log_prob).all())}, advantage finite="
                             f"{bool(torch.isfinite(advantage).all())} (the model, not the env)")

    diagnostics = {}
    if grad_variance_chunks:
        diagnostics = gradient_variance(policy, log_prob, advantage, episode_ids(batch.ends).reshape(-1)[valid],
                                        grad_variance_chunks)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    params = [p for p in policy.parameters() if p.grad is not None]
    grad_norm = torch.nn.utils.clip_grad_norm_(params, max_grad_norm if max_grad_norm else float("inf"))
    if not torch.isfinite(grad_norm):
        names = [n for n, p in policy.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
        raise NonFiniteError(f"non-finite policy gradient in {names} (the model, not the env)")
    optimizer.step()
    bad = [n for n, p in policy.named_parameters() if not torch.isfinite(p).all()]
    if bad:
        raise NonFiniteError(f"non-finite policy parameters after the update: {bad} (the model, not the env)")
    return {"policy_loss": loss.item(), "entropy": entropy.item(), "grad_norm": grad_norm.item(), **diagnostics}
