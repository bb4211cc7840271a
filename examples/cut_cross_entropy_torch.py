"""cut-cross-entropy's ``linear_cross_entropy`` audited like torch's (README,
"linear_cross_entropy", cut-cross-entropy), in a virtual environment of its own::

    python -m venv cce && cce/bin/pip install -c constraints.txt -e '.[fast]' cut-cross-entropy
    cce/bin/conformance run --cases cases/linear --framework torch \\
        --impl cce=examples.cut_cross_entropy_torch:linear_cross_entropy \\
        --like 'torch.nn.functional.linear_cross_entropy(options=None)'

Its arguments are ``(e, c, targets)``, ``c`` the classifier: torch's ``(input,
linear_weight, target)`` in the same order.  It has no bias, class weights or label smoothing
(those cases are recorded unsupported), and no probability targets.  ``filter_eps=None``:
its default ``"high"`` skips small gradient contributions on purpose, which this suite would
report as an error of the wrapper's choosing, not of the kernel's.
"""

from __future__ import annotations

from typing import Any


def linear_cross_entropy(input: Any, linear_weight: Any, target: Any, *,
                         ignore_index: int | None = None, reduction: str = "mean") -> Any:
    from cut_cross_entropy import linear_cross_entropy as cce

    if target.is_floating_point():
        raise NotImplementedError("cut-cross-entropy takes class-index targets only")
    return cce(input, linear_weight, target, ignore_index=-100 if ignore_index is None
               else ignore_index, reduction=reduction, filter_eps=None, impl="torch_compile")
