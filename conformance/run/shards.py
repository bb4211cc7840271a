"""``--shard K/N``: one of N deterministic, balanced parts of a run's cases.

A shard holds whole cases, so every job of a case (each framework, API, device and dtype),
its oracle results and its documented-value check land in the same shard, and the part a
machine runs does not depend on which frameworks or devices it has.  Cases are dealt out
largest first to the shard with the least work so far (the longest-processing-time rule;
ties to the lower shard, then by case id), the work of a case being its element count times
its dtypes, doubled when a gradient is compared: what the oracle's and the frameworks' time
grows with.  The partition depends only on the cases, so N machines given the same
``--cases`` and ``--shard 1/N`` ... ``N/N`` run every case exactly once.

``--shard auto`` reads the index that a scheduler sets (``SHARD_VARIABLES``, first found):
Slurm job arrays (``SLURM_ARRAY_TASK_ID`` of ``SLURM_ARRAY_TASK_COUNT``, counted from
``SLURM_ARRAY_TASK_MIN``, default 0), Kubernetes indexed jobs (``JOB_COMPLETION_INDEX``, from
0, of ``CONFORMANCE_SHARD_COUNT``), or any CI matrix that sets ``CONFORMANCE_SHARD`` to
``K/N`` (1-based).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np

from conformance.cases.loading import Case

Shard = tuple[int, int]  # (K, N), 1 <= K <= N


class ShardError(ValueError):
    """A ``--shard`` value (or a scheduler's variables) that names no shard (exit 2)."""


def parse_shard(value: str, environ: Mapping[str, str] | None = None) -> Shard:
    """``K/N`` (1-based) or ``auto`` (from ``environ``, default ``os.environ``)."""
    if value.strip().lower() == "auto":
        return shard_from_environment(os.environ if environ is None else environ)
    return _k_of_n(value, "--shard")


def _k_of_n(value: str, where: str) -> Shard:
    k_text, slash, n_text = value.strip().partition("/")
    try:
        k, n = int(k_text), int(n_text)
    except ValueError:
        k = n = 0
    if not slash or n < 1 or not 1 <= k <= n:
        raise ShardError(f"{where}: expected K/N with 1 <= K <= N (e.g. 2/4) or 'auto', "
                         f"got {value!r}")
    return k, n


def _integer(environ: Mapping[str, str], name: str) -> int:
    text = environ[name]
    try:
        return int(text)
    except ValueError:
        raise ShardError(f"--shard auto: ${name} is {text!r}, not an integer") from None


def shard_from_environment(environ: Mapping[str, str]) -> Shard:
    if "CONFORMANCE_SHARD" in environ:
        return _k_of_n(environ["CONFORMANCE_SHARD"], "--shard auto: $CONFORMANCE_SHARD")
    if "SLURM_ARRAY_TASK_ID" in environ:
        if "SLURM_ARRAY_TASK_COUNT" not in environ:
            raise ShardError("--shard auto: $SLURM_ARRAY_TASK_ID is set but not "
                             "$SLURM_ARRAY_TASK_COUNT")
        first = _integer(environ, "SLURM_ARRAY_TASK_MIN") \
            if "SLURM_ARRAY_TASK_MIN" in environ else 0
        index = _integer(environ, "SLURM_ARRAY_TASK_ID") - first
        return _zero_based(index, _integer(environ, "SLURM_ARRAY_TASK_COUNT"),
                           "$SLURM_ARRAY_TASK_ID - $SLURM_ARRAY_TASK_MIN",
                           "$SLURM_ARRAY_TASK_COUNT")
    if "JOB_COMPLETION_INDEX" in environ:
        if "CONFORMANCE_SHARD_COUNT" not in environ:
            raise ShardError("--shard auto: $JOB_COMPLETION_INDEX is set; set "
                             "$CONFORMANCE_SHARD_COUNT to the job's completions too")
        return _zero_based(_integer(environ, "JOB_COMPLETION_INDEX"),
                           _integer(environ, "CONFORMANCE_SHARD_COUNT"),
                           "$JOB_COMPLETION_INDEX", "$CONFORMANCE_SHARD_COUNT")
    raise ShardError("--shard auto: none of $CONFORMANCE_SHARD (K/N), $SLURM_ARRAY_TASK_ID "
                     "with $SLURM_ARRAY_TASK_COUNT, or $JOB_COMPLETION_INDEX with "
                     "$CONFORMANCE_SHARD_COUNT is set")


def _zero_based(index: int, count: int, index_name: str, count_name: str) -> Shard:
    if count < 1 or not 0 <= index < count:
        raise ShardError(f"--shard auto: {index_name} is {index}, outside 0..{count - 1} "
                         f"({count_name} is {count})")
    return index + 1, count


def case_size(case: Case) -> int:
    """The number of input elements, without generating anything (for ordering work)."""
    value = case.input
    shape = value.get("shape") if callable(getattr(value, "get", None)) else None
    if shape is not None:  # a generated input: conformance.cases.generate.Spec
        return int(np.prod([int(n) for n in shape], dtype=np.int64))
    return int(np.size(np.asarray(value, dtype=object)))


def case_cost(case: Case) -> int:
    """What a case's time grows with: elements x dtypes, doubled with a gradient."""
    return max(1, case_size(case)) * max(1, len(case.dtypes)) * (2 if case.grad else 1)


def shard_cases(cases: list[Case], shard: Shard | None) -> list[Case]:
    """The cases of ``shard`` (all of them for None), in their original order."""
    if shard is None:
        return cases
    k, n = shard
    loads = [0] * n
    owner: dict[str, int] = {}
    for case in sorted(cases, key=lambda c: (-case_cost(c), c.id)):
        lightest = min(range(n), key=lambda i: (loads[i], i))
        owner[case.id] = lightest
        loads[lightest] += case_cost(case)
    return [case for case in cases if owner[case.id] == k - 1]
