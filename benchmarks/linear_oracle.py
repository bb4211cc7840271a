"""Time the linear_cross_entropy oracle cold on one core: 16 x 256 float32 inputs times a
32768 x 256 weight, with a bias, loss and all three gradients, certified.

    python benchmarks/linear_oracle.py [--classes 32768] [--features 256] [--rows 16]
        [--dtype float32] [--profile]

The inputs are drawn as the case generators draw them (numpy default_rng, float64, then
rounded to the dtype); the figure printed is the CPU time of the process (one thread: the
oracle's numpy work is element-wise, plus float64 matmuls for its bounds, which the script
pins to one BLAS thread) and the wall time.
"""

from __future__ import annotations

import argparse
import os

for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(variable, "1")  # one core, as the figure claims

import cProfile  # noqa: E402
import pstats  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from reference.formats import get_format  # noqa: E402
from reference.linear import evaluate_linear  # noqa: E402


def _rounded(values: np.ndarray, dtype: str) -> np.ndarray:
    fmt = get_format(dtype)
    if fmt.precision == 53:
        return values
    from ml_dtypes import bfloat16

    kind = {"float32": np.float32, "float16": np.float16, "bfloat16": bfloat16}[dtype]
    return values.astype(kind).astype(np.float64)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=16)
    parser.add_argument("--features", type=int, default=256)
    parser.add_argument("--classes", type=int, default=32768)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    rng = np.random.default_rng(1)
    x = _rounded(rng.standard_normal((args.rows, args.features)), args.dtype)
    w = _rounded(0.05 * rng.standard_normal((args.classes, args.features)), args.dtype)
    b = _rounded(0.1 * rng.standard_normal(args.classes), args.dtype)
    t = rng.integers(0, args.classes, args.rows)
    wall, cpu = time.perf_counter(), time.process_time()
    profile = cProfile.Profile() if args.profile else None
    if profile:
        profile.enable()
    result = evaluate_linear(x, linear_weight=w, linear_bias=b, target=t, dtype=args.dtype)
    if profile:
        profile.disable()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    print(f"linear_cross_entropy oracle, {args.rows} x {args.features} input, "
          f"{args.classes} x {args.features} weight, bias, {args.dtype}, loss and 3 gradients: "
          f"{cpu:.1f} s CPU, {wall:.1f} s wall; MPFR precision {result.precision} bits; "
          f"certified {result.certified} ({result.undecided} elements undecided)")
    if profile:
        pstats.Stats(profile).sort_stats("tottime").print_stats(12)


if __name__ == "__main__":
    main()
