"""A naive cross-entropy in PyTorch: the log of a softmax written out by hand.

Audited like ``torch.nn.functional.cross_entropy`` (README, "Audit your own implementation"):
    conformance run --cases cases/edge --impl examples.naive_torch:cross_entropy \
        --like torch.nn.functional.cross_entropy
"""

import torch


def cross_entropy(logits: torch.Tensor, target: torch.Tensor, reduction: str = "mean"):
    if target.is_floating_point():
        raise NotImplementedError("class-index targets only")  # recorded as unsupported
    axis = 0 if logits.dim() == 1 else 1  # the class axis, as in torch
    exp = torch.exp(logits)  # overflows to inf for logits above ~88 (float32)
    probabilities = exp / exp.sum(dim=axis, keepdim=True)
    losses = -torch.log(probabilities.gather(axis, target.unsqueeze(axis)).squeeze(axis))
    if reduction == "none":
        return losses
    return losses.sum() if reduction == "sum" else losses.mean()
