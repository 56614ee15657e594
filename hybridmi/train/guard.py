"""Finite checks that never stop the device: bad updates are dropped there, records are read every few steps."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Iterator

import torch
from torch import nn

from hybridmi.errors import HybridmiError

if TYPE_CHECKING:
    from hybridmi.train.distributed import RankGroup


class NonFiniteError(HybridmiError, FloatingPointError):
    """A NaN/inf loss, gradient or weight; the message names the step and the first non-finite tensor."""


@dataclass(frozen=True)
class WindowSummary:
    steps: int  # steps recorded since the previous read
    means: dict[str, float]  # mean of each term over them (nan when none)


def fused_optimizer(
    name: str, params: list[nn.Parameter] | list[dict[str, Any]], *, lr: float, momentum: float, weight_decay: float
) -> torch.optim.Optimizer:
    """AdamW (betas (momentum, 0.999)), Adam or SGD, fused: one kernel per step that honours ``found_inf``."""
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, fused=True)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, betas=(momentum, 0.999), weight_decay=weight_decay, fused=True)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, fused=True)
    raise ValueError(f"unknown optimiser {name!r}: expected adamw, adam or sgd")


class FiniteGuard:
    """Device-side finite checks of every step; ``terms`` names the loss terms after the total loss."""

    def __init__(
        self,
        *,
        optimizer: torch.optim.Optimizer,
        named_params: Iterable[tuple[str, nn.Parameter]],
        terms: Iterable[str],
        across_ranks: RankGroup | None = None,  # reduces the flag (max_) and the records (mean)
    ) -> None:
        if not all(group.get("fused") for group in optimizer.param_groups):
            raise ValueError("FiniteGuard needs a fused optimiser (it drops bad updates through found_inf)")
        pairs = list(named_params)
        if not pairs:
            raise ValueError("FiniteGuard needs at least one parameter")
        self.names, self.params = [name for name, _ in pairs], [p for _, p in pairs]
        self.terms, self.across_ranks = ["loss", *terms], across_ranks
        self.found_inf = torch.zeros((), device=self.params[0].device)  # 1.0 while this step's update is dropped
        optimizer.found_inf, optimizer.grad_scale = self.found_inf, None  # the AMP-scaler protocol of torch.optim
        self._records: list[torch.Tensor] = []
        self._pending: torch.Tensor | None = None
        self._with_grad: list[int] | None = None
        self.first_step = 0  # steps completed before the window's first record

    @torch.no_grad()
    def check_gradients(self, loss: torch.Tensor, terms: Iterable[torch.Tensor]) -> torch.Tensor:
        """After backward: the total gradient 2-norm (for clipping); flags the step if it or the loss is non-finite."""
        if self._with_grad is None:  # parameters that get gradients (at α = 0 the decoder gets none)
            self._with_grad = [i for i, p in enumerate(self.params) if p.grad is not None]
        grad_norms = torch.stack(torch._foreach_norm([self.params[i].grad for i in self._with_grad])).float()
        total = torch.linalg.vector_norm(grad_norms)
        self.found_inf.copy_(torch.logical_not(torch.isfinite(loss.detach()) & torch.isfinite(total)))
        if self.across_ranks is not None:  # a loss that is bad on one rank drops the update everywhere
            self.across_ranks.max_(self.found_inf)
        values = torch.stack([loss.detach().float(), *(t.detach().float() for t in terms)])
        self._pending = torch.cat([values, grad_norms])
        return total

    @torch.no_grad()
    def end(self) -> None:
        """After the optimiser step: record the step (terms, gradient norms, largest |weight|, flag)."""
        if self._pending is None:
            raise RuntimeError("FiniteGuard.end() without check_gradients() in this step")
        max_abs = torch.stack(torch._foreach_norm(self.params, math.inf)).float()
        self._records.append(torch.cat([self._pending, max_abs, self.found_inf.detach().float().reshape(1)]))
        self._pending = None

    def read(self, *, context: str = "") -> WindowSummary:
        """Bring the window's records to the host (one transfer); NonFiniteError at the first bad step."""
        if not self._records:
            return WindowSummary(steps=0, means={name: math.nan for name in self.terms})
        records = torch.stack(self._records)  # steps x (terms, grad norms, max |w|, flag)
        if self.across_ranks is not None:  # local loss means → the global batch's; the rest is equal on every rank
            records = self.across_ranks.mean(records)
        rows = records.double().cpu().tolist()
        self._records = []
        first, self.first_step = self.first_step, self.first_step + len(rows)
        n_terms, grads = len(self.terms), self._with_grad or []
        suffix = f"; {context}" if context else ""
        for i, row in enumerate(rows):
            step = first + i + 1
            bad_weight = next((j for j, w in enumerate(row[n_terms + len(grads) : -1]) if not math.isfinite(w)), None)
            if bad_weight is not None:
                raise NonFiniteError(
                    f"non-finite weights after the update of step {step}: first non-finite tensor "
                    f"{self.names[bad_weight]} ({self._describe(row)}){suffix}"
                )
            if row[-1] != 0:
                bad_grad = next((j for j, g in zip(grads, row[n_terms:]) if not math.isfinite(g)), None)
                where = "gradients finite" if bad_grad is None else f"first non-finite gradient {self.names[bad_grad]}"
                raise NonFiniteError(
                    f"non-finite loss at step {step}: {self._describe(row)}; {where}; "
                    f"the update was not applied{suffix}"
                )
        means = [sum(col) / len(rows) for col in zip(*(row[:n_terms] for row in rows))]
        return WindowSummary(steps=len(rows), means=dict(zip(self.terms, means)))

    def _describe(self, row: list[float]) -> str:
        loss, *terms = (f"{v:.6g}" for v in row[: len(self.terms)])
        return f"loss={loss}" + (f" ({', '.join(f'{k}={v}' for k, v in zip(self.terms[1:], terms))})" if terms else "")


def _named_tensors(obj: Any, prefix: str) -> Iterator[tuple[str, torch.Tensor]]:
    if isinstance(obj, torch.Tensor):
        if obj.is_floating_point() or obj.is_complex():
            yield prefix, obj
    elif isinstance(obj, (dict, list, tuple)):
        for key, value in obj.items() if isinstance(obj, dict) else enumerate(obj):
            yield from _named_tensors(value, f"{prefix}.{key}" if prefix else str(key))


def first_nonfinite(state: dict[str, Any]) -> str | None:
    """The dotted name of the first floating tensor in a nested state holding a NaN or inf (one transfer per device)."""
    named = list(_named_tensors(state, ""))
    by_device: dict[torch.device, list[int]] = {}
    for i, (_, tensor) in enumerate(named):
        by_device.setdefault(tensor.device, []).append(i)
    finite = [True] * len(named)
    for indices in by_device.values():
        flags = torch.stack([torch.isfinite(named[i][1]).all() for i in indices]).cpu()
        for i, ok in zip(indices, flags.tolist()):
            finite[i] = ok
    return next((named[i][0] for i, ok in enumerate(finite) if not ok), None)
