"""`optimizer=natural`: the natural policy gradient step of TRPO (Schulman et al. 2015), the optimizer Chou et
al. (2017) paired with the Beta head.

One step solves F x = g by conjugate gradient, where g is the policy gradient and F the Fisher information,
applied as Fisher-vector products (the Hessian of the mean KL between the batch's old and new action
distributions, by double back-propagation, plus `cg_damping`), scales x so that the quadratic model of the
KL equals `max_kl`, and (with `line_search`) backtracks until the surrogate improves and the exact KL stays
within `max_kl`; a step no fraction of which is accepted leaves θ unchanged. `step_size` multiplies the step
(1 is TRPO's); it is kept as the param group's `lr`, so that `algo.anneal_lr` scales it like any learning rate.
There is no learning rate to set: an `optimizer.lr` that an env file tuned for Adam is dropped at validation
(pg_lab.config.validate).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch


def conjugate_gradient(fvp: Callable[[torch.Tensor], torch.Tensor], b: torch.Tensor, iters: int = 10,
                       tol: float = 1e-10) -> torch.Tensor:
    """x ≈ F⁻¹ b for a symmetric positive-definite F given only as v ↦ F v."""
    x = torch.zeros_like(b)
    r, p = b.clone(), b.clone()
    rr = r @ r
    for _ in range(iters):
        fp = fvp(p)
        alpha = rr / (p @ fp)
        x += alpha * p
        r -= alpha * fp
        rr_new = r @ r
        if rr_new < tol:
            break
        p = r + (rr_new / rr) * p
        rr = rr_new
    return x


class NaturalGradient(torch.optim.Optimizer):
    """A torch optimizer in form (param groups, state_dict, lr), stepped with `natural_step(loss_fn, kl_fn)`."""

    def __init__(self, params: Iterable[torch.Tensor], step_size: float = 1.0, max_kl: float = 0.01, cg_iters: int = 10,
                 cg_damping: float = 0.1, line_search: bool = True, backtrack_ratio: float = 0.5,
                 max_backtracks: int = 10, accept_ratio: float = 0.1):
        if step_size <= 0 or max_kl <= 0 or cg_iters < 1 or cg_damping < 0 or not 0 < backtrack_ratio < 1:
            raise ValueError("optimizer=natural: step_size > 0, max_kl > 0, cg_iters >= 1, cg_damping >= 0, "
                             "0 < backtrack_ratio < 1")
        super().__init__(params, dict(lr=step_size, max_kl=max_kl, cg_iters=cg_iters, cg_damping=cg_damping,
                                      line_search=line_search, backtrack_ratio=backtrack_ratio,
                                      max_backtracks=max_backtracks, accept_ratio=accept_ratio))
        self.state["steps"] = {"taken": 0, "rejected": 0}

    def step(self, closure=None):  # noqa: D102 - the update needs two functions: see natural_step
        raise RuntimeError("NaturalGradient steps with natural_step(loss_fn, kl_fn), not step()")

    def _params(self) -> list[torch.Tensor]:
        return [p for g in self.param_groups for p in g["params"] if p.requires_grad]

    def _get(self) -> torch.Tensor:
        return torch.cat([p.detach().reshape(-1) for p in self._params()])

    def _set(self, flat: torch.Tensor) -> None:
        i = 0
        with torch.no_grad():
            for p in self._params():
                p.copy_(flat[i:i + p.numel()].view_as(p))
                i += p.numel()

    def fisher_vector_product(self, kl_fn: Callable[[], torch.Tensor], damping: float) -> Callable:
        params = self._params()
        kl = kl_fn()
        grads = torch.autograd.grad(kl, params, create_graph=True, allow_unused=True)
        flat = torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in zip(grads, params)])

        def fvp(v: torch.Tensor) -> torch.Tensor:
            hv = torch.autograd.grad(flat @ v, params, retain_graph=True, allow_unused=True)
            return torch.cat([(h if h is not None else torch.zeros_like(p)).reshape(-1)
                              for h, p in zip(hv, params)]) + damping * v
        return fvp

    def natural_step(self, loss_fn: Callable[[], torch.Tensor], kl_fn: Callable[[], torch.Tensor]) -> dict:
        """loss_fn(): the surrogate to minimise at the current θ; kl_fn(): mean KL(old ‖ current), 0 at the
        start. Returns the step's diagnostics."""
        g_cfg = self.param_groups[0]
        params = self._params()
        loss = loss_fn()
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        g = torch.cat([(x if x is not None else torch.zeros_like(p)).reshape(-1) for x, p in zip(grads, params)])
        fvp = self.fisher_vector_product(kl_fn, g_cfg["cg_damping"])
        x = conjugate_gradient(fvp, g, g_cfg["cg_iters"])
        shs = (x @ fvp(x)).clamp_min(1e-12)                       # xᵀ F x
        full = -(2 * g_cfg["max_kl"] / shs).sqrt() * x * g_cfg["lr"]  # the step to the KL boundary, descending
        expected = -(g @ full)                                      # first-order improvement of the loss
        old = self._get()
        info = {"kl": 0.0, "step_fraction": 0.0, "grad_norm": g.norm().item(), "loss_before": loss.item()}
        with torch.no_grad():
            if not g_cfg["line_search"]:
                self._set(old + full)
                info.update(kl=kl_fn().item(), step_fraction=1.0)
                self.state["steps"]["taken"] += 1
                return info
            fraction = 1.0
            for _ in range(g_cfg["max_backtracks"]):
                self._set(old + fraction * full)
                improvement, kl = loss.item() - loss_fn().item(), kl_fn().item()
                if kl <= g_cfg["max_kl"] and improvement > 0 and \
                        improvement >= g_cfg["accept_ratio"] * fraction * expected.item():
                    info.update(kl=kl, step_fraction=fraction)
                    self.state["steps"]["taken"] += 1
                    return info
                fraction *= g_cfg["backtrack_ratio"]
            self._set(old)  # no fraction of the step was acceptable: θ stays
            self.state["steps"]["rejected"] += 1
            return info
