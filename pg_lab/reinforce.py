"""The REINFORCE update, as derived in the lecture:

    ∇θ E[G(τ)] = E[ G · Σ_t ∇θ log π(a_t | s_t; θ) ]        θ ← θ + α ∇θ E[G(τ)]

estimated from a batch of on-policy episodes; the loss handed to the optimiser (a minimiser) is
−(G − b) · log π, with G the chosen return estimator and b the baseline (`policy_loss`).

`Reinforce` is the algorithm as one object (the rsl_rl habit): it owns the policy, its optimizer, the
baseline (which owns the returns, the critic and its optimizer) and the observation normaliser, with the
`algo` hyperparameters; `update(batch)` is the whole step and returns its metrics; `state_dict()` is what a
checkpoint needs of it.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from pg_lab.baselines import Baseline
from pg_lab.config import Estimator, Reduction
from pg_lab.natural import NaturalGradient
from pg_lab.policies import Policy, kl_divergence
from pg_lab.returns import episode_starts
from pg_lab.rollout import Batch, NonFiniteError


def policy_loss(log_prob: torch.Tensor, advantage: torch.Tensor, reduction: Reduction,
                num_episodes: int) -> torch.Tensor:
    """−(G − b) · log π(a|s), over the batch's steps.

    `sum` sums over each episode's steps and averages over the batch's episodes: the equation above as a
    ratio estimator (the number of episodes in a batch is random), so consistent, not unbiased — its bias
    shrinks as episodes per batch grow. `mean` averages over all steps: the same direction scaled by
    1/(mean episode length), which keeps the step size comparable across tasks."""
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


class Reinforce:
    """REINFORCE with a baseline: returns → advantages → policy step → baseline step → observation statistics."""

    def __init__(self, policy: Policy, optimizer: torch.optim.Optimizer, baseline: Baseline, *,
                 gamma: float = 0.99, estimator: Estimator = Estimator.reward_to_go,
                 reduction: Reduction = Reduction.mean, normalize_advantage: bool = True, ent_coef: float = 0.0,
                 max_grad_norm: float | None = None, grad_variance_chunks: int = 0,
                 bootstrap_truncation: bool | None = None, device: torch.device = torch.device("cpu")):
        self.policy, self.optimizer, self.baseline = policy, optimizer, baseline
        self.normalizer = policy.normalizer  # shared with the critic
        self.gamma, self.estimator, self.reduction = gamma, estimator, reduction
        self.normalize_advantage, self.ent_coef, self.max_grad_norm = normalize_advantage, ent_coef, max_grad_norm
        self.grad_variance_chunks, self.device = grad_variance_chunks, device
        self.bootstrap_truncation = bootstrap_truncation
        # the configured rates, before any checkpoint is loaded: what `anneal` scales
        self.base_lrs = [[g["lr"] for g in opt.param_groups] for opt in self.optimizers]

    @property
    def optimizers(self) -> list[torch.optim.Optimizer]:
        return [self.optimizer, *self.baseline.optimizers]

    def anneal(self, fraction: float) -> None:
        """Every learning rate to `fraction` × its configured value (linear decay: fraction = steps left / total)."""
        for opt, lrs in zip(self.optimizers, self.base_lrs):
            for group, lr in zip(opt.param_groups, lrs):
                group["lr"] = lr * fraction

    def update(self, batch: Batch) -> dict[str, float]:
        est = self.baseline.estimate(batch, self.gamma, self.estimator, self.bootstrap_truncation)
        advantages = self.baseline.advantages(est, self.gamma)
        obs = batch.flat(torch.as_tensor(batch.obs).to(self.device))
        metrics = self.policy_step(obs, batch, advantages)
        metrics.update(self.baseline.fit(obs, est, advantages))
        self.normalizer.accumulate(obs)  # after both steps: the distribution that sampled the batch scored it
        metrics.update(self.policy.diagnostics())
        metrics.update(self.policy.action_diagnostics(batch.flat(batch.actions)))
        return metrics

    def policy_step(self, obs: torch.Tensor, batch: Batch, advantages: np.ndarray) -> dict[str, float]:
        """One optimiser step on policy_loss − ent_coef · entropy, with the model's non-finite tripwires."""
        actions = batch.flat(batch.actions)
        advantage = torch.as_tensor(batch.flat(advantages), dtype=torch.float32, device=self.device)
        if self.normalize_advantage and len(advantage) > 1:
            advantage = (advantage - advantage.mean()) / (advantage.std() + 1e-8)

        if isinstance(self.optimizer, NaturalGradient):
            return self.natural_policy_step(obs, actions, advantage)
        dist = self.policy.distribution(obs)
        log_prob = dist.log_prob(actions)
        entropy = dist.entropy().mean()
        loss = policy_loss(log_prob, advantage, self.reduction, batch.num_episodes) - self.ent_coef * entropy
        if not torch.isfinite(loss):
            raise NonFiniteError(f"non-finite policy loss ({loss.item()}): log_prob finite="
                                 f"{bool(torch.isfinite(log_prob).all())}, advantage finite="
                                 f"{bool(torch.isfinite(advantage).all())} (the model, not the env)")
        diagnostics = {}
        if self.grad_variance_chunks:
            ends = batch.ends.cpu().numpy() if isinstance(batch.ends, torch.Tensor) else batch.ends
            diagnostics = gradient_variance(self.policy, log_prob, advantage, batch.flat(episode_ids(ends)),
                                            self.grad_variance_chunks)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        params = [p for p in self.policy.parameters() if p.grad is not None]
        grad_norm = torch.nn.utils.clip_grad_norm_(params, self.max_grad_norm or float("inf"))
        if not torch.isfinite(grad_norm):
            names = [n for n, p in self.policy.named_parameters()
                     if p.grad is not None and not torch.isfinite(p.grad).all()]
            raise NonFiniteError(f"non-finite policy gradient in {names} (the model, not the env)")
        self.optimizer.step()
        bad = [n for n, p in self.policy.named_parameters() if not torch.isfinite(p).all()]
        if bad:
            raise NonFiniteError(f"non-finite policy parameters after the update: {bad} (the model, not the env)")
        return {"policy_loss": loss.item(), "entropy": entropy.item(), "grad_norm": grad_norm.item(), **diagnostics}

    def natural_policy_step(self, obs: torch.Tensor, actions: torch.Tensor, advantage: torch.Tensor) -> dict:
        """optimizer=natural: the surrogate −mean(A · π/π_old) − ent_coef · H (its gradient at θ_old is the
        policy gradient) stepped along F⁻¹g within the KL bound (pg_lab.natural)."""
        with torch.no_grad():
            old = self.policy.distribution(obs)
            old_log_prob = old.log_prob(actions)

        def loss_fn() -> torch.Tensor:
            dist = self.policy.distribution(obs)
            ratio = torch.exp(dist.log_prob(actions) - old_log_prob)
            return -(advantage * ratio).mean() - self.ent_coef * dist.entropy().mean()

        def kl_fn() -> torch.Tensor:
            return kl_divergence(old, self.policy.distribution(obs)).mean()

        info = self.optimizer.natural_step(loss_fn, kl_fn)
        bad = [n for n, p in self.policy.named_parameters() if not torch.isfinite(p).all()]
        if bad or not all(map(math.isfinite, info.values())):
            raise NonFiniteError(f"non-finite natural step {info} / parameters {bad} (the model, not the env)")
        with torch.no_grad():
            entropy = self.policy.distribution(obs).entropy().mean().item()
        return {"policy_loss": info["loss_before"], "entropy": entropy, "grad_norm": info["grad_norm"],
                "kl": info["kl"], "step_fraction": info["step_fraction"]}

    def state_dict(self) -> dict:
        return {"policy": self.policy.state_dict(), "optimizer": self.optimizer.state_dict(),
                "baseline": self.baseline.state_dict(), "normalizer": self.normalizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.policy.load_state_dict(state["policy"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.baseline.load_state_dict(state["baseline"])
        self.normalizer.load_state_dict(state["normalizer"])
