"""Finite checks that never stop the device: per-step records on the device, read every few steps.

Each step the trainer calls ``guard.begin()``, then after ``loss.backward()`` ``guard.check_gradients``
(which sets the optimiser's ``found_inf``, so a fused optimiser skips a non-finite update on the device,
exactly as mixed-precision gradient scalers do), then ``guard.end()`` after the optimiser step. Nothing
there reads a device value on the host; ``guard.read`` does, once per report or checkpoint, and

- ``on_nonfinite="stop"``: raises ``NonFiniteError`` naming the first bad step, its loss terms and the
  first non-finite gradient (the bad update itself was never applied to the weights);
- ``on_nonfinite="skip_step"``: counts the step as skipped; the tensors given as ``rollback`` (BatchNorm
  statistics, key encoder, queue, EMA: what a step changes besides the optimiser) are put back on the
  device. Weights that became non-finite anyway, or ``MAX_CONSECUTIVE_SKIPS`` bad steps in a row, stop
  the run all the same.

In a distributed run (``across_ranks``) each step's skip flag is the maximum over ranks (all ranks skip
or apply an update together) and ``read`` averages the window's records over ranks, so every rank reports
the global batch's loss and raises, skips or goes on alike.

``first_nonfinite`` checks a whole state (weights, optimiser, EMA) before a checkpoint is written.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Literal, Protocol

import torch
from torch import nn

OnNonFinite = Literal["stop", "skip_step"]
MAX_CONSECUTIVE_SKIPS = 10


class NonFiniteError(FloatingPointError):
    """A NaN/inf loss, gradient or weight; the message names the step and the first non-finite tensor."""


class AcrossRanks(Protocol):
    """The two reductions over ranks the guard needs (``hybridmi.train.distributed.RankGroup``)."""

    def max_(self, tensor: torch.Tensor) -> torch.Tensor: ...

    def mean(self, tensor: torch.Tensor) -> torch.Tensor: ...


@dataclass(frozen=True)
class WindowSummary:
    """What ``FiniteGuard.read`` found in the steps since the previous read."""

    steps: int  # steps recorded in the window
    skipped: int  # of them, steps whose update was skipped (skip_step mode)
    means: dict[str, float]  # mean of each term over the window's applied steps (nan when none)


def fused_optimizer(
    name: str, params: list[nn.Parameter], *, lr: float, momentum: float, weight_decay: float
) -> torch.optim.Optimizer:
    """AdamW (betas (momentum, 0.999)) or SGD, fused: one kernel per step that honours ``found_inf``.

    SGD's momentum buffers start at zero (equal to torch's first-step initialisation) so that a first
    step skipped through ``found_inf`` leaves a defined buffer.
    """
    if name == "sgd":
        optimizer = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, fused=True)
        if momentum > 0:
            for p in params:
                optimizer.state[p]["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return optimizer
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, betas=(momentum, 0.999), weight_decay=weight_decay, fused=True)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, fused=True)
    raise ValueError(f"unknown optimiser {name!r}: expected adamw, adam or sgd")


class FiniteGuard:
    """Device-side finite checks of every step; see the module docstring for the protocol.

    named_params: the optimised parameters by name (the order names the "first" bad tensor);
    terms: names of the loss terms passed to ``check_gradients`` (after the total loss);
    across_ranks: the reductions of a distributed run (None: one process).
    """

    def __init__(
        self,
        *,
        optimizer: torch.optim.Optimizer,
        named_params: Iterable[tuple[str, nn.Parameter]],
        terms: Iterable[str],
        mode: OnNonFinite,
        rollback: Iterable[torch.Tensor] = (),
        across_ranks: AcrossRanks | None = None,
    ) -> None:
        if mode not in ("stop", "skip_step"):
            raise ValueError(f"on_nonfinite {mode!r} is not 'stop' or 'skip_step'")
        if not all(group.get("fused") for group in optimizer.param_groups):
            raise ValueError("FiniteGuard needs a fused optimiser (it skips bad updates through found_inf)")
        pairs = list(named_params)
        if not pairs:
            raise ValueError("FiniteGuard needs at least one parameter")
        self.names, self.params = [name for name, _ in pairs], [p for _, p in pairs]
        self.terms, self.mode, self.across_ranks = ["loss", *terms], mode, across_ranks
        device = self.params[0].device
        self.found_inf = torch.zeros((), device=device)  # 1.0 while the current step's update must be skipped
        optimizer.found_inf, optimizer.grad_scale = self.found_inf, None  # the AMP-scaler protocol of torch.optim
        self.rollback = list(rollback) if mode == "skip_step" else []
        self._backup = [t.detach().clone() for t in self.rollback]
        self._records: list[torch.Tensor] = []
        self._pending: torch.Tensor | None = None
        self._with_grad: list[int] | None = None
        self.first_step = 0  # the step number (1-based) of the window's first record, minus one
        self.skipped_total = 0
        self._consecutive = 0

    @torch.no_grad()
    def begin(self) -> None:
        """Before anything of the step runs: remember the rollback tensors (skip_step only)."""
        if self._backup:
            torch._foreach_copy_(self._backup, self.rollback)

    @torch.no_grad()
    def check_gradients(self, loss: torch.Tensor, terms: Iterable[torch.Tensor]) -> torch.Tensor:
        """After backward: the total gradient 2-norm (for clipping); flags the step when it or the loss is not finite."""
        if self._with_grad is None:  # parameters that get gradients (at α = 0 the decoder gets none)
            self._with_grad = [i for i, p in enumerate(self.params) if p.grad is not None]
        norms = torch._foreach_norm([self.params[i].grad for i in self._with_grad])
        grad_norms = torch.stack(norms).float()
        total = torch.linalg.vector_norm(grad_norms)
        bad = torch.logical_not(torch.isfinite(loss.detach()) & torch.isfinite(total))
        self.found_inf.copy_(bad)
        if self.across_ranks is not None:  # a loss that is bad on one rank skips the update everywhere
            self.across_ranks.max_(self.found_inf)
        values = torch.stack([loss.detach().float(), *(t.detach().float() for t in terms)])
        self._pending = torch.cat([values, grad_norms])
        return total

    @torch.no_grad()
    def end(self) -> None:
        """After the optimiser step: record the step (terms, gradient norms, largest |weight|) and roll back if bad."""
        if self._pending is None:
            raise RuntimeError("FiniteGuard.end() without check_gradients() in this step")
        max_abs = torch.stack(torch._foreach_norm(self.params, math.inf)).float()
        self._records.append(torch.cat([self._pending, max_abs, self.found_inf.detach().float().reshape(1)]))
        self._pending = None
        if self.rollback:
            bad = self.found_inf.bool()
            for tensor, saved in zip(self.rollback, self._backup):
                tensor.copy_(torch.where(bad, saved, tensor))

    def read(self, *, context: str = "") -> WindowSummary:
        """Bring the window's records to the host (one transfer); raise NonFiniteError per the mode, else summarise."""
        if not self._records:
            return WindowSummary(steps=0, skipped=0, means={name: math.nan for name in self.terms})
        records = torch.stack(self._records)  # steps x (terms, grad norms, max |w|, flag)
        if self.across_ranks is not None:  # local loss means → the global batch's; the rest is equal on every rank
            records = self.across_ranks.mean(records)
        rows = records.double().cpu().tolist()
        self._records = []
        first, self.first_step = self.first_step, self.first_step + len(rows)
        n_terms, grads = len(self.terms), self._with_grad or []
        suffix = f"; {context}" if context else ""
        applied: list[list[float]] = []
        for i, row in enumerate(rows):
            step = first + i + 1
            weights = row[n_terms + len(grads) : -1]
            bad_weight = next((j for j, w in enumerate(weights) if not math.isfinite(w)), None)
            if bad_weight is not None:
                raise NonFiniteError(
                    f"non-finite weights after the update of step {step}: first non-finite tensor "
                    f"{self.names[bad_weight]} ({self._describe(row)}){suffix}"
                )
            if row[-1] == 0:
                applied.append(row[:n_terms])
                self._consecutive = 0
                continue
            bad_grad = next((j for j, g in zip(grads, row[n_terms:]) if not math.isfinite(g)), None)
            where = "gradients finite" if bad_grad is None else f"first non-finite gradient {self.names[bad_grad]}"
            detail = f"non-finite loss at step {step}: {self._describe(row)}; {where}"
            if self.mode == "stop":
                raise NonFiniteError(f"{detail}; the update was not applied{suffix}")
            self.skipped_total += 1
            self._consecutive += 1
            if self._consecutive >= MAX_CONSECUTIVE_SKIPS:
                raise NonFiniteError(f"{MAX_CONSECUTIVE_SKIPS} steps in a row skipped (last: {detail}){suffix}")
        means = [sum(col) / len(applied) for col in zip(*applied)] if applied else [math.nan] * n_terms
        return WindowSummary(steps=len(rows), skipped=len(rows) - len(applied), means=dict(zip(self.terms, means)))

    def _describe(self, row: list[float]) -> str:
        loss, *terms = (f"{v:.6g}" for v in row[: len(self.terms)])
        return f"loss={loss}" + (f" ({', '.join(f'{k}={v}' for k, v in zip(self.terms[1:], terms))})" if terms else "")


def _named_tensors(obj: Any, prefix: str) -> Iterator[tuple[str, torch.Tensor]]:
    if isinstance(obj, torch.Tensor):
        if obj.is_floating_point() or obj.is_complex():
            yield prefix, obj
    elif isinstance(obj, dict):
        for key, value in obj.items():
            yield from _named_tensors(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            yield from _named_tensors(value, f"{prefix}.{i}" if prefix else str(i))


def first_nonfinite(state: dict[str, Any]) -> str | None:
    """The dotted name of the first floating tensor in a (nested) state that holds a NaN or inf, else None.

    One device-to-host transfer per device the state lives on, however many tensors it holds.
    """
    named = list(_named_tensors(state, ""))
    if not named:
        return None
    by_device: dict[torch.device, list[int]] = {}
    for i, (_, tensor) in enumerate(named):
        by_device.setdefault(tensor.device, []).append(i)
    finite = [True] * len(named)
    for indices in by_device.values():
        flags = torch.stack([torch.isfinite(named[i][1]).all() for i in indices]).cpu()
        for i, ok in zip(indices, flags.tolist()):
            finite[i] = ok
    return next((named[i][0] for i, ok in enumerate(finite) if not ok), None)
