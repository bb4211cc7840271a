"""Users' functions for tests/frameworks/test_implementation_torch.py, imported by the run's
workers as ``tests.frameworks.torch_implementations:NAME``."""

from __future__ import annotations

from typing import Any

import torch

F = torch.nn.functional


def wrapped(input: Any, target: Any, **options: Any) -> Any:
    """A correct implementation: torch's own, called with what it was given."""
    return F.cross_entropy(input, target, **options)


def no_smoothing(input: Any, target: Any, weight: Any = None, ignore_index: int = -100,
                 reduction: str = "mean") -> Any:
    """Correct, but without a label_smoothing argument."""
    return F.cross_entropy(input, target, weight=weight, ignore_index=ignore_index,
                           reduction=reduction)


def refuses_weights(input: Any, target: Any, weight: Any = None, **options: Any) -> Any:
    if weight is not None:
        raise NotImplementedError("no class weights in this kernel")
    return F.cross_entropy(input, target, **options)


def raises(input: Any, target: Any, **options: Any) -> Any:
    raise ValueError("this kernel is broken")


def deep_type_error(input: Any, target: Any, **options: Any) -> Any:
    """A bug inside: a TypeError for a keyword of an inner call is the function's verdict."""
    return F.cross_entropy(input, target, smoothing=0.0)


def off_by_a_little(input: Any, target: Any, **options: Any) -> Any:
    return F.cross_entropy(input, target, **options) * (1 + 2 ** -10)


class Loss(torch.nn.Module):
    """Like torch.nn.CrossEntropyLoss, computed as log_softmax then nll_loss."""

    def __init__(self, weight: Any = None, ignore_index: int = -100,
                 reduction: str = "mean") -> None:
        super().__init__()
        self.weight, self.ignore_index, self.reduction = weight, ignore_index, reduction

    def forward(self, input: Any, target: Any) -> Any:
        return F.nll_loss(F.log_softmax(input, dim=1 if input.dim() > 1 else 0), target,
                          weight=self.weight, ignore_index=self.ignore_index,
                          reduction=self.reduction)


NOT_CALLABLE = 3
