#!/usr/bin/env python
"""How fast is ``conformance run``?  Measures and prints (Markdown) the figures of issue 7.

Run from the repository root, with the frameworks installed::

    python benchmarks/bench.py                                  # every section
    python benchmarks/bench.py --write benchmarks/RESULTS.md    # ... and keep the output
    python benchmarks/bench.py --sections audit overhead        # some sections only

Sections:

``audit``
    the wall time of ``conformance run`` over ``--cases`` (default: the shipped cases) on the
    CPU, every framework whose adapter exists, ``--jobs`` workers at a time: *cold* (a fresh,
    empty oracle cache) and then *warm* (the same cache), with the oracle's counts.  With
    ``--profile``, a third, profiled warm run (``$CONFORMANCE_PROFILE``) says where each
    worker's time goes.
``overhead``
    the suite's overhead: the warm audit with ``--jobs 1`` against a *bare loop* that, in one
    process per framework, imports the framework and calls the same framework APIs on the same
    inputs: for each job the audit runs (case x API x device x dtype), the adapter's ``run``,
    which is the framework call itself (tensor in, forward, backward, numpy out).  The inputs
    are built before the bare loop's clock starts.  The ratio is audit / bare loop.
``oracle``
    the oracle's time, cold, on the largest shipped case (by number of input elements).
``big``
    the oracle's time, cold, on a ``--big-shape`` (default 32 x 131072) float32
    ``cross_entropy`` case with its gradient (numpy-seeded normal logits, random class
    targets), calling ``reference.oracle.evaluate`` directly; then a cProfile of the same on a
    ``--profile-shape`` slice (default 32 x 4096: the cost is linear in the elements) for
    where the time goes.
``vectorised``
    issue 19's ratio: the oracle (``reference.oracle.evaluate``, with its gradient) on a
    ``--big-shape`` float32 cross_entropy with class weights and label smoothing 0.1, index
    and probability targets, against a max-shifted numpy float64 evaluation of the same
    problem (loss and gradient, best of three) in the same run; with the vectorised path
    (after) and with the MPFR path alone (before: ``reference.vectorised.ENABLED = False``).
``library``
    the oracle part of a cold audit: every case of ``--cases`` in each of its dtypes through
    the oracle, nothing cached, with the vectorised path and then (``--library-before``)
    without it; and how many of them the vectorised path decided.
``compare``
    the comparison's cost per element (``conformance.judge.compare.compare`` on the gradient of the
    ``--profile-shape`` case against its float32 rounding), extrapolated to ``--big-shape``.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import importlib.metadata
import io
import json
import os
import platform
import pstats
import re
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SECTIONS = ("audit", "overhead", "oracle", "big", "compare", "vectorised", "library")
PACKAGES = ("torch", "jax", "jaxlib", "optax", "tensorflow-cpu", "tensorflow", "mpmath",
            "gmpy2", "numpy")


# --- the machine ----------------------------------------------------------------------------


def machine() -> list[str]:
    import mpmath

    from conformance.results.environment import cpu_name
    from conformance.run.runner import available_cores

    memory = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                memory = f"{int(line.split()[1]) / 2**20:.1f} GiB"
    versions = []
    for package in PACKAGES:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions.append(f"{package} {importlib.metadata.version(package)}")
    return [
        f"- CPU: {cpu_name()}, {available_cores()} cores available to this process "
        f"({os.cpu_count()} in the machine), {memory} memory",
        f"- OS: {platform.platform()}; Python {platform.python_version()}",
        f"- packages: {', '.join(versions)}; mpmath backend: {mpmath.libmp.BACKEND}",
    ]


def load() -> str:
    """The load average, to judge how far other work on the machine skews the wall times."""
    try:
        return "load average " + " / ".join(f"{v:.1f}" for v in os.getloadavg())
    except OSError:  # pragma: no cover
        return "load average unknown"


def children_cpu() -> float:
    """CPU seconds (user + system) of the waited-for child processes, grandchildren included."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# --- whole audits ---------------------------------------------------------------------------


def conformance_run(args: argparse.Namespace, out: Path, cache: Path, jobs: int,
                    profile: Path | None = None) -> dict[str, Any]:
    command = [sys.executable, "-m", "conformance", "run", "--cases", *args.cases,
               "--device", "cpu", "--out", str(out), "--overwrite", "--exit-zero",
               "--cache", str(cache), "--jobs", str(jobs), "--timeout", str(args.timeout)]
    if args.framework:
        command += ["--framework", *args.framework]
    env = {**os.environ, "CI": "1"}  # plain progress lines, not a redrawn bar
    if profile is not None:
        env["CONFORMANCE_PROFILE"] = str(profile)
    started, cpu = time.perf_counter(), children_cpu()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    wall, cpu = time.perf_counter() - started, children_cpu() - cpu
    if args.logs is not None:
        args.logs.mkdir(parents=True, exist_ok=True)
        (args.logs / f"{out.stem}.log").write_text(done.stderr, encoding="utf-8")
    if done.returncode not in (0, 1):
        raise SystemExit(f"conformance run failed ({done.returncode}):\n{done.stderr[-4000:]}")
    oracle = re.findall(r"oracle: (\d+) result\(s\) computed, (\d+) read", done.stderr)
    statuses: Counter[str] = Counter()
    frameworks: Counter[str] = Counter()
    for line in out.read_text().splitlines():
        obj = json.loads(line)
        if obj.get("type") == "result":
            statuses[obj["status"]] += 1
            frameworks[obj["framework"]] += 1
    return {"wall": wall, "cpu": cpu, "computed": int(oracle[-1][0]) if oracle else None,
            "hits": int(oracle[-1][1]) if oracle else None, "statuses": statuses,
            "frameworks": frameworks,
            "skipped": re.findall(r"^(\S+): skipped, (.*)$", done.stderr, re.MULTILINE)}


def same_records(first: Path, second: Path) -> str:
    """Whether two results files hold the same result lines, framework by framework (their
    jobs interleave differently when frameworks run in parallel)."""
    def per_framework(path: Path) -> dict[str, list[str]]:
        lines: dict[str, list[str]] = {}
        for line in path.read_text().splitlines():
            obj = json.loads(line)
            if obj.get("type") == "result":
                lines.setdefault(obj["framework"], []).append(line)
        return lines

    one, two = per_framework(first), per_framework(second)
    differ = {f: sum(a != b for a, b in zip(one.get(f, []), two.get(f, [])))
              + abs(len(one.get(f, [])) - len(two.get(f, []))) for f in set(one) | set(two)}
    if not any(differ.values()):
        return "identical"
    return "differ (" + ", ".join(f"{f}: {n} lines" for f, n in sorted(differ.items()) if n) + ")"


def present_frameworks(args: argparse.Namespace) -> list[str]:
    from conformance.adapters import frameworks

    return list(args.framework or frameworks())


def section_audit(args: argparse.Namespace, work: Path) -> list[str]:
    cache = work / "cache"
    cold = conformance_run(args, work / "cold.jsonl", cache, args.jobs)
    warm = conformance_run(args, work / "warm.jsonl", cache, args.jobs)
    args.warm = warm  # the overhead section compares with it
    lines = [
        "## Full audit on the CPU",
        "",
        f"Cases: `{' '.join(args.cases)}`; frameworks (every adapter present): "
        f"{', '.join(present_frameworks(args))}; `--jobs {args.jobs or 'cores'}`; "
        f"{load()} after the runs.",
        "",
        "| run | wall time | CPU time (all processes) | oracle results computed | "
        "read from the cache |",
        "| --- | ---: | ---: | ---: | ---: |",
        f"| cold (empty cache) | {cold['wall']:.1f} s | {cold['cpu']:.1f} s | "
        f"{cold['computed']} | {cold['hits']} |",
        f"| warm | {warm['wall']:.1f} s | {warm['cpu']:.1f} s | {warm['computed']} | "
        f"{warm['hits']} |",
        "",
        *[f"- {label} run: {sum(run['statuses'].values())} records, " + ", ".join(
            f"{n} {s}" for s, n in sorted(run["statuses"].items())) + "; per framework: "
          + ", ".join(f"{f} {n}" for f, n in sorted(run["frameworks"].items())) + "."
          for label, run in (("Cold", cold), ("Warm", warm))],
    ]
    lines.append(f"- Cold and warm records, framework by framework: "
                 f"{same_records(work / 'cold.jsonl', work / 'warm.jsonl')}.")
    for framework, reason in warm["skipped"]:
        lines.append(f"Skipped: {framework} ({reason}).")
    if args.profile:
        profiles = work / "profiles"
        profiled = conformance_run(args, work / "profiled.jsonl", cache, args.jobs, profiles)
        lines += ["", f"Where a warm worker's time goes (cProfile of a third, warm run: "
                      f"{profiled['wall']:.1f} s under the profiler):", ""]
        lines += worker_profiles(profiles)
    return lines


# What a worker does, by the functions that do it (cumulative time of the outermost call).
ACTIVITIES = (
    ("framework calls (adapter.run)", "run", ("adapters",)),
    ("comparison (compare.py)", "compare", ("judge/compare.py",)),
    ("oracle cache reads", "load", ("oracle/cache.py",)),
    ("oracle computations", "evaluate", ("oracle.py",)),
    ("error bounds computed (not cached)", "_computed_bounds", ("judge/check.py",)),
    ("inputs rounded to the dtype (make_problem)", "make_problem", ("cases/problem.py",)),
    ("record values (values_for_record)", "values_for_record", ("results/records.py",)),
    ("cases loaded and validated", "load_cases", ("cases/loading.py",)),
    ("adapter created (framework import)", "load_adapter", ("adapters",)),
)


def worker_profiles(directory: Path) -> list[str]:
    rows = ["| worker | total | " + " | ".join(a[0] for a in ACTIVITIES) + " |",
            "| --- | ---: |" + " ---: |" * len(ACTIVITIES)]
    for path in sorted(directory.glob("worker-*.prof")):
        stats = pstats.Stats(str(path))
        table = stats.stats  # type: ignore[attr-defined]
        total = max((v[3] for v in table.values()), default=0.0)
        cells = []
        for _label, function, files in ACTIVITIES:
            seconds = max((v[3] for (file, _line, name), v in table.items()
                           if name == function and any(f in file for f in files)), default=0.0)
            cells.append(f"{seconds:.1f} s ({100 * seconds / total:.0f}%)" if total else "-")
        name = path.stem.rsplit("-", 1)[0].removeprefix("worker-")
        rows.append(f"| {name} | {total:.1f} s | " + " | ".join(cells) + " |")
    return rows


# --- the bare loop ----------------------------------------------------------------------------


def bare_loop(framework: str, cases: list[str]) -> dict[str, Any]:
    """In this process: the inputs first, then (timed) the framework's import and its calls."""
    from conformance.adapters import AdapterUnavailable, load_adapter
    from conformance.cases.loading import load_cases
    from conformance.cases.problem import make_problem
    from conformance.run.worker import device_matches

    loaded = load_cases(cases)
    problems = {(case, dtype): make_problem(case, dtype) for case in loaded
                for dtype in case.dtypes}
    started, cpu = time.perf_counter(), time.process_time()
    try:
        adapter = load_adapter(framework)
    except AdapterUnavailable as error:
        return {"framework": framework, "unavailable": str(error)}
    imported = time.perf_counter()
    calls = 0
    supported = set(adapter.dtypes())
    for case in loaded:
        for api in adapter.apis_for(case.op):
            if api.unsupported_reason(case.options()) is not None:
                continue
            for device in adapter.devices():
                if not device_matches(device, ["cpu"]):
                    continue
                for dtype in case.dtypes:
                    if dtype in supported:
                        adapter.run(api, problems[(case, dtype)], device)
                        calls += 1
    finished = time.perf_counter()
    return {"framework": framework, "version": adapter.version(), "calls": calls,
            "import": imported - started, "loop": finished - imported,
            "cpu": time.process_time() - cpu}


def section_overhead(args: argparse.Namespace, work: Path) -> list[str]:
    cache = work / "cache"
    if not cache.exists():  # the audit section, when it ran, left it warm
        conformance_run(args, work / "fill.jsonl", cache, args.jobs)
    audit = conformance_run(args, work / "sequential.jsonl", cache, 1)
    parallel = getattr(args, "warm", None) or conformance_run(
        args, work / "parallel.jsonl", cache, args.jobs)
    bare = []
    # the same warm framework compilation caches as the audit's workers (run/runner.py)
    from conformance.run.runner import worker_environment

    os.environ["CONFORMANCE_CACHE"] = str(cache)
    env = worker_environment()
    for framework in present_frameworks(args):
        done = subprocess.run([sys.executable, __file__, "--bare", framework, "--cases",
                               *args.cases], cwd=ROOT, capture_output=True, text=True,
                              env=env)
        if done.returncode != 0:
            raise SystemExit(f"bare loop of {framework} failed:\n{done.stderr[-4000:]}")
        bare.append(json.loads(done.stdout.strip().splitlines()[-1]))
    ran = [b for b in bare if "unavailable" not in b]
    total = sum(b["import"] + b["loop"] for b in ran)
    lines = [
        "## Suite overhead against a bare loop",
        "",
        "| framework | framework calls | import | calls | bare loop | CPU time |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for b in bare:
        if "unavailable" in b:
            lines.append(f"| {b['framework']} | not installed | | | |")
        else:
            lines.append(f"| {b['framework']} {b['version']} | {b['calls']} | "
                         f"{b['import']:.1f} s | {b['loop']:.1f} s | "
                         f"{b['import'] + b['loop']:.1f} s | {b['cpu']:.1f} s |")
    cpu = sum(b["cpu"] for b in ran)
    lines += [
        f"| **all, one after the other** | {sum(b['calls'] for b in ran)} | | | "
        f"**{total:.1f} s** | {cpu:.1f} s |",
        "",
        f"Warm audit, `--jobs 1` (frameworks one after the other, like the bare loop): "
        f"**{audit['wall']:.1f} s** wall, overhead ratio **{audit['wall'] / total:.2f}x**; "
        f"{audit['cpu']:.1f} s CPU, {audit['cpu'] / cpu:.2f}x the bare loop's CPU time.",
        f"Warm audit, `--jobs {args.jobs or 'cores'}`: {parallel['wall']:.1f} s wall "
        f"({parallel['wall'] / total:.2f}x the sequential bare loop).",
        "",
        "The bare loop's wall time covers the framework's import and its calls, with the same "
        "warm compilation caches (JAX's, TorchInductor's) as the audit's workers; the audit's "
        "covers everything (process starts, loading and validating the cases, rounding the "
        "inputs, reading the oracle cache, comparing, writing the records).",
    ]
    return lines


# --- the oracle ---------------------------------------------------------------------------------


def section_oracle(args: argparse.Namespace, work: Path) -> list[str]:
    from conformance.cases.loading import load_cases
    from conformance.cases.problem import make_problem
    from conformance.run.worker import case_size

    cases = [c for c in load_cases(args.cases) if c.expect == "value"]
    largest = max(cases, key=case_size)
    lines = ["## The oracle on the largest shipped case", "",
             f"`{largest.id}` ({largest.file}): {largest.op}, {case_size(largest)} input "
             f"elements, grad {largest.grad}.", "",
             "| dtype | oracle time (cold) | working precision |", "| --- | ---: | ---: |"]
    for dtype in largest.dtypes:
        problem = make_problem(largest, dtype)
        started = time.perf_counter()
        result = problem.reference()
        lines.append(f"| {dtype} | {time.perf_counter() - started:.2f} s | "
                     f"{result.precision} bits |")
    return lines


def big_case(shape: tuple[int, int]) -> tuple[Any, Any]:
    import numpy as np

    rng = np.random.default_rng(20260)
    logits = rng.standard_normal(shape).astype(np.float32).astype(np.float64)  # exact float32
    targets = rng.integers(0, shape[1], shape[0])
    return logits, targets


def evaluate_big(shape: tuple[int, int]) -> Any:
    from reference.oracle import evaluate

    logits, targets = big_case(shape)
    return evaluate("cross_entropy", logits, target=targets, dtype="float32", grad=True)


def section_big(args: argparse.Namespace, work: Path) -> list[str]:
    started, cpu = time.perf_counter(), time.process_time()
    result = evaluate_big(args.big_shape)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    rows, classes = args.big_shape
    lines = ["## The oracle on a 32 x 131072 float32 case (cold)" if args.big_shape ==
             (32, 131072) else f"## The oracle on a {rows} x {classes} float32 case (cold)", "",
             f"`reference.oracle.evaluate('cross_entropy', ...)` with its gradient, "
             f"{rows * classes} logits: **{seconds:.1f} s** wall, {cpu:.1f} s CPU "
             f"({1e6 * cpu / (rows * classes):.1f} µs of CPU per logit), working precision "
             f"{result.precision} bits, certified {result.certified} ({load()} at the end).",
             ""]
    profile = cProfile.Profile()
    small = args.profile_shape
    started = time.perf_counter()
    profile.runcall(evaluate_big, small)
    profiled = time.perf_counter() - started
    lines += [f"Where the time goes: cProfile of the same on {small[0]} x {small[1]} "
              f"({profiled:.1f} s under the profiler), the functions with the most time of "
              "their own:", "", "```", *top_functions(profile, 14), "```", "",
              "and the oracle's own functions by cumulative time:", "", "```",
              *top_functions(profile, 14, "cumulative", "reference/"), "```"]
    return lines


def top_functions(profile: cProfile.Profile, count: int, order: str = "tottime",
                  only: str | None = None) -> list[str]:
    stream = io.StringIO()
    stats = pstats.Stats(profile, stream=stream)
    restrictions: list[Any] = [only, count] if only else [count]
    stats.sort_stats(order).print_stats(*restrictions)
    text = stream.getvalue().splitlines()
    start = next(i for i, line in enumerate(text) if line.strip().startswith("ncalls"))
    return [line.rstrip().replace(str(ROOT) + "/", "") for line in text[start:] if line.strip()]


def section_compare(args: argparse.Namespace, work: Path) -> list[str]:
    import numpy as np

    from conformance.judge.compare import compare

    small = args.profile_shape
    result = evaluate_big(small)
    grad = result.grad
    actual = np.vectorize(lambda v: float(np.float32(float(v))), otypes=[float])(grad)
    bound = result.grad_bound if getattr(result, "grad_bound", None) is not None else \
        np.full(grad.shape, 1e-7)
    profile = cProfile.Profile()
    started = time.perf_counter()
    comparison = compare(grad, actual, "float32", bound)
    seconds = time.perf_counter() - started
    profile.runcall(compare, grad, actual, "float32", bound)
    per = seconds / grad.size
    big = args.big_shape[0] * args.big_shape[1]
    return ["## The comparison", "",
            f"`conformance.judge.compare.compare` of the {small[0]} x {small[1]} gradient against its "
            f"float32 rounding: {seconds:.2f} s, {1e6 * per:.1f} µs per element "
            f"(verdict: {comparison.message[:80]}...); for {args.big_shape[0]} x "
            f"{args.big_shape[1]}: about {per * big:.1f} s per quantity compared.", "",
            "```", *top_functions(profile, 8), "```"]


# --- main ---------------------------------------------------------------------------------------


def numpy_cross_entropy(x: Any, target: Any, weight: Any,
                        smoothing: float) -> tuple[float, float]:
    """The max-shifted float64 numpy evaluation of the problem (loss and gradient): the
    yardstick of issue 19's ratio.  Returns its wall and CPU time in seconds."""
    import numpy as np

    start, cpu = time.perf_counter(), time.process_time()
    rows, classes = x.shape
    shifted = x - x.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    total = e.sum(axis=1, keepdims=True)
    log_total = np.log(total)
    if target.ndim == 1:
        a = np.zeros_like(x)
        a[np.arange(rows), target] = 1.0
        divisor = float(weight[target].sum())
    else:
        a, divisor = target.copy(), float(rows)
    a = weight * ((1 - smoothing) * a + smoothing / classes)
    loss = float((a * (log_total - shifted)).sum()) / divisor
    grad = (a.sum(axis=1, keepdims=True) * e / total - a) / divisor
    del loss, grad
    return time.perf_counter() - start, time.process_time() - cpu


def section_vectorised(args: argparse.Namespace, work: Path) -> list[str]:
    import numpy as np

    from reference import vectorised
    from reference.oracle import evaluate

    rows, classes = args.big_shape
    rng = np.random.default_rng(19)
    x = (rng.standard_normal((rows, classes)) * 3).astype(np.float32).astype(np.float64)
    weight = rng.uniform(0.5, 2.0, classes).astype(np.float32).astype(np.float64)
    targets = {"index": rng.integers(0, classes, rows),
               "probability": rng.dirichlet(np.ones(classes), rows)
               .astype(np.float32).astype(np.float64)}
    lines = [f"## The oracle against numpy on {rows} x {classes} float32 (issue 19)", "",
             "cross_entropy with its gradient, class weights U(0.5, 2), label smoothing 0.1, "
             "mean; numpy: the max-shifted float64 evaluation of the same loss and gradient "
             "(best of 3), in the same run.  The ratio is of CPU times (this process's), "
             "which other work on a shared machine disturbs less than wall times.", "",
             "| targets | path | numpy wall / CPU | oracle wall / CPU | ratio (CPU) | "
             "precision | certified |",
             "| --- | --- | ---: | ---: | ---: | ---: | --- |"]
    paths = [("vectorised (after)", True)]
    if not args.no_before:
        paths.append(("MPFR only (before)", False))
    for name, target in targets.items():
        for label, enabled in paths:
            runs = [numpy_cross_entropy(x, target, weight, 0.1) for _ in range(3)]
            base_wall, base_cpu = min(r[0] for r in runs), min(r[1] for r in runs)
            vectorised.ENABLED = enabled
            try:
                start, cpu = time.perf_counter(), time.process_time()
                result = evaluate("cross_entropy", x, target=target, weight=list(weight),
                                  label_smoothing=0.1, dtype="float32")
                took, took_cpu = time.perf_counter() - start, time.process_time() - cpu
            finally:
                vectorised.ENABLED = True
            lines.append(f"| {name} | {label} | {base_wall:.3f} / {base_cpu:.3f} s | "
                         f"{took:.2f} / {took_cpu:.2f} s | {took_cpu / base_cpu:.1f}x | "
                         f"{result.precision} | {result.certified} |")
            print(lines[-1], flush=True)
    return [*lines, "", f"Load average at the end: {load()}."]


def section_library(args: argparse.Namespace, work: Path) -> list[str]:
    from conformance.cases.loading import load_cases
    from conformance.cases.problem import make_problem
    from reference import vectorised

    cases = [c for c in load_cases(args.cases) if c.expect == "value"]
    original = vectorised.evaluate
    taken = [0]

    def counting(*a: Any, **k: Any) -> Any:
        found = original(*a, **k)
        taken[0] += found is not None
        return found

    lines = [f"## The oracle on every case of `{' '.join(args.cases)}` (cold, no cache)", "",
             "| path | case x dtype results | decided by the vectorised path | wall | CPU |",
             "| --- | ---: | ---: | ---: | ---: |"]
    runs = [("vectorised (after)", True)] + ([("MPFR only (before)", False)]
                                             if args.library_before else [])
    for label, enabled in runs:
        vectorised.evaluate = counting  # type: ignore[assignment]
        vectorised.ENABLED = enabled
        taken[0] = 0
        count = 0
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            for case in cases:
                for dtype in case.dtypes:
                    make_problem(case, dtype).reference()
                    count += 1
        finally:
            vectorised.evaluate = original  # type: ignore[assignment]
            vectorised.ENABLED = True
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        lines.append(f"| {label} | {count} | {taken[0]} | {wall:.1f} s | {cpu:.1f} s |")
        print(lines[-1], flush=True)
    return [*lines, "", f"Load average at the end: {load()}."]


def shape(text: str) -> tuple[int, int]:
    rows, _, classes = text.lower().partition("x")
    return int(rows), int(classes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--cases", nargs="+", default=["cases"])
    parser.add_argument("--framework", nargs="+", help="default: every adapter present")
    parser.add_argument("--jobs", type=int, default=0, help="for the audits (0: one per core)")
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--big-shape", type=shape, default=(32, 131072), metavar="NxC")
    parser.add_argument("--profile-shape", type=shape, default=(32, 4096), metavar="NxC")
    parser.add_argument("--write", type=Path, metavar="MARKDOWN",
                        help="also write the output to this file")
    parser.add_argument("--profile", action="store_true",
                        help="audit: also profile a warm run's workers (a third run)")
    parser.add_argument("--logs", type=Path, metavar="DIR",
                        help="keep each conformance run's stderr here")
    parser.add_argument("--no-before", action="store_true",
                        help="vectorised: skip the MPFR-only (before) runs")
    parser.add_argument("--library-before", action="store_true",
                        help="library: also run every case with the MPFR path only (long)")
    parser.add_argument("--bare", metavar="FRAMEWORK", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.bare:
        print(json.dumps(bare_loop(args.bare, args.cases)))
        return 0
    command = "python benchmarks/bench.py " + " ".join(argv if argv is not None else
                                                       sys.argv[1:])
    lines = ["# Benchmark of `conformance run`", "",
             f"Produced by `{command.strip()}` on {time.strftime('%Y-%m-%d')}.", "",
             "## Machine", "", *machine(), ""]
    print("\n".join(lines), flush=True)
    with tempfile.TemporaryDirectory(prefix="conformance-bench-") as temporary:
        work = Path(temporary)
        for name in args.sections:
            section = globals()[f"section_{name}"](args, work)
            print("\n".join([*section, ""]), flush=True)
            lines += [*section, ""]
    if args.write:
        args.write.write_text("\n".join(lines), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
