"""The ``conformance`` command line.

Each subcommand is a function ``cmd_NAME(args) -> exit code`` plus an entry in ``COMMANDS``;
add a subcommand by adding both.  Exit codes: 0 success, 1 discrepancies found, 2 bad input
(a case file, a results file or an option), with a message naming what was wrong.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from conformance import ci_commands
from conformance.adapters import frameworks, support
from conformance.cases.loading import CaseError, load_cases
from reference.formats import DTYPES

DEFAULT_CASES = ["cases"]
DEFAULT_OUT = Path("results/results.jsonl")


def _add_run(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run cases on frameworks, write records to a JSON Lines file")
    p.add_argument("--cases", nargs="+", default=DEFAULT_CASES, metavar="PATH",
                   help="case files or directories (default: cases)")
    p.add_argument("--framework", nargs="+", choices=list(frameworks()), metavar="NAME",
                   help=f"frameworks to run (default: all of {', '.join(frameworks())}; "
                        "those not installed are recorded as skipped)")
    p.add_argument("--dtype", nargs="+", choices=list(DTYPES), metavar="DTYPE",
                   help=f"only these dtypes ({', '.join(DTYPES)})")
    p.add_argument("--device", nargs="+", metavar="DEVICE",
                   help="only these devices: an id (cpu, cuda:0, xpu:0, mps:0, npu:0: what the "
                        "framework reports) or a kind (cpu, gpu, npu)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT,
                   help=f"results file (default: {DEFAULT_OUT}); an existing one is kept "
                        "unless --append or --overwrite is given")
    p.add_argument("--append", action="store_true", help="append to an existing results file")
    p.add_argument("--overwrite", action="store_true", help="replace an existing results file")
    p.add_argument("--timeout", type=float, default=600.0,
                   help="seconds one job may take before its worker is killed (default 600)")
    p.add_argument("--oracle-timeout", type=float, default=3600.0, metavar="SECONDS",
                   help="seconds the oracle may take on one case and dtype, computing the "
                        "results the cache lacks before the frameworks run (default 3600)")
    p.add_argument("--resume", action="store_true",
                   help="continue a killed run in --out: jobs already complete there are not "
                        "run again")
    p.add_argument("--jobs", "-j", type=int, default=0, metavar="N",
                   help="workers (frameworks) at a time (default: one per available core)")
    p.add_argument("--cache", metavar="DIR",
                   help="the oracle's cache directory (default: $CONFORMANCE_CACHE or "
                        ".conformance-cache)")
    p.add_argument("--no-cache", action="store_true",
                   help="compute every oracle result afresh, reading and writing no cache")
    p.add_argument("--tolerance-scale", type=float, metavar="X",
                   help="multiply every tolerance factor K of the comparison rules by X "
                        "(conformance/judge/compare.py; sets $CONFORMANCE_TOLERANCE_SCALE)")
    p.add_argument("--exit-zero", action="store_true",
                   help="exit 0 even when discrepancies are found (audits that only want records)")
    p.add_argument("--report", type=Path, metavar="HTML",
                   help="also write the HTML report of the results file here at the end")
    ci_commands.add_run_options(p)
    _add_implementation_options(p)


def _add_implementation_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--impl", action="append", default=[], metavar="[NAME=]MODULE:FUNCTION",
                   help="audit your own function (repeatable): called exactly as the --like "
                        "API is, on that API's framework, devices and dtypes, eagerly; its "
                        "records' api is NAME (default MODULE:FUNCTION). Without --framework "
                        "only the implementations and the APIs they mimic run")
    p.add_argument("--like", action="append", default=[], metavar="API",
                   help="the API (a name of the API column of 'conformance support') whose "
                        "calling convention and options --impl follows: one for all --impl, "
                        "or one per --impl in order")


def _implementations(args: argparse.Namespace, names: list[str]) -> tuple[Any, ...]:
    """``--impl``/``--like`` resolved (``ImplementationError``, exit 2, if one is bad)."""
    from conformance.adapters.implementation import pair_likes, resolve

    pairs = pair_likes(getattr(args, "impl", []), getattr(args, "like", []))
    return tuple(resolve(pairs, names)) if pairs else ()


def _with_tolerance_scale(args: argparse.Namespace) -> int:
    """``cmd_run`` with ``--tolerance-scale`` passed to the comparison (and the workers) through
    ``$CONFORMANCE_TOLERANCE_SCALE``, restored afterwards."""
    import math
    import os

    from conformance.judge.compare import RUN_SCALE_VARIABLE

    scale = args.tolerance_scale
    if not (math.isfinite(scale) and scale > 0):  # NaN fails every comparison: test finite
        print(f"error: --tolerance-scale must be a finite number > 0, got {scale}",
              file=sys.stderr)
        return 2
    before = os.environ.get(RUN_SCALE_VARIABLE)
    os.environ[RUN_SCALE_VARIABLE] = repr(scale)
    try:
        return cmd_run(argparse.Namespace(**{**vars(args), "tolerance_scale": None}))
    finally:
        if before is None:
            os.environ.pop(RUN_SCALE_VARIABLE, None)
        else:
            os.environ[RUN_SCALE_VARIABLE] = before


def cmd_run(args: argparse.Namespace) -> int:
    if getattr(args, "tolerance_scale", None) is not None:
        return _with_tolerance_scale(args)
    from conformance.run.progress import Progress, summary_lines
    from conformance.run.runner import RunOptions, check_run_paths, run

    if args.resume and args.overwrite:
        print("error: --resume continues the file that --overwrite would replace; pass one",
              file=sys.stderr)
        return 2
    if args.jobs < 0 or not (args.timeout > 0 and args.oracle_timeout > 0):
        print("error: --jobs must be >= 0, --timeout and --oracle-timeout > 0",
              file=sys.stderr)
        return 2
    implementations = _implementations(args, list(frameworks()))
    chosen = args.framework or ([] if implementations else list(frameworks()))
    options = RunOptions(
        cases=args.cases, frameworks=chosen, dtypes=args.dtype,
        devices=args.device, out=args.out, timeout=args.timeout, jobs=args.jobs,
        resume=args.resume, overwrite=args.overwrite,
        cache="off" if args.no_cache else args.cache, oracle_timeout=args.oracle_timeout,
        implementations=implementations,
        **ci_commands.prepare_run(args),
    )
    if args.oracle_only:
        return ci_commands.oracle_only(options)
    # Before anything is read or written: no output may be an input or the other output.
    check_run_paths(options, [("--report", args.report)] if args.report is not None else [])
    if args.out.exists() and not (args.append or args.overwrite or args.resume):
        print(f"error: {args.out} exists; pass --append to add to it, --resume to continue "
              "it or --overwrite to replace it", file=sys.stderr)
        return 2
    # --overwrite empties the file in the runner, once it holds the file's lock: unlinking it
    # here would take the file from under a live run writing it.
    progress = Progress(sys.stderr, dtypes=args.dtype, devices=args.device)
    try:
        summary = run(options, log=progress.log, progress=progress)
    finally:
        progress.close()
    if args.report is not None:
        from conformance.report.page import write_report

        write_report([args.out], args.report)
    more, failed = ci_commands.finish_run(args, options, summary)
    print("\n".join([*summary_lines(summary, report=args.report), *more]))
    return 0 if args.exit_zero or not failed else 1


def _add_validate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("validate", help="check case files without running anything")
    p.add_argument("paths", nargs="*", default=DEFAULT_CASES, metavar="PATH")
    p.add_argument("-v", "--verbose", action="store_true", help="one line per valid file")
    p.add_argument("--results", nargs="+", type=Path, metavar="FILE",
                   help="check results files (JSON Lines) against the results schema instead")


def cmd_validate(args: argparse.Namespace) -> int:
    """Every file is checked (not only up to the first bad one); each error names its file,
    line and field.  Exit 2 if any file is invalid or an id repeats."""
    from collections import Counter

    from conformance.cases.loading import Case, find_case_files, load_file

    if args.results:
        return ci_commands.validate_results(args.results)
    files = find_case_files(args.paths)
    if not files:  # "0 cases valid" would pass a typo'd folder in CI
        print(f"error: no case files (*.yaml, *.yml) in {', '.join(map(str, args.paths))}",
              file=sys.stderr)
        return 2
    seen: dict[str, Case] = {}
    bad, groups = 0, Counter[str]()
    for file in files:
        try:
            cases = load_file(file)
        except CaseError as error:
            print(f"error: {error}", file=sys.stderr)
            bad += 1
            continue
        for case in cases:
            if case.id in seen:
                first = seen[case.id]
                duplicate = CaseError(case.file, case.line, "id", f"duplicate id {case.id!r} "
                                      f"(first at {first.file}:{first.line})")
                print(f"error: {duplicate}", file=sys.stderr)
                bad += 1
            seen[case.id] = case
            groups[case.group] += 1
        if args.verbose:
            print(f"{file}: {len(cases)} cases")
    if bad:
        print(f"{bad} error(s) in {len(files)} files", file=sys.stderr)
        return 2
    summary = ", ".join(f"{group} {n}" for group, n in sorted(groups.items()))
    print(f"{len(seen)} cases valid in {len(files)} files ({summary})")
    return 0


def _add_list(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("list", help="show cases by group, op and options (and select them)")
    p.add_argument("paths", nargs="*", default=DEFAULT_CASES, metavar="PATH")
    p.add_argument("--group", nargs="+", metavar="GROUP", help="only these groups")
    p.add_argument("--exclude-group", nargs="+", metavar="GROUP",
                   help="leave these groups out (e.g. large)")
    p.add_argument("--op", nargs="+", metavar="OP", help="only these ops")
    p.add_argument("--option", nargs="+", metavar="OPTION",
                   help="only cases with all these options or tags (probability_target, "
                        "weight, ignore_index, label_smoothing, reduction_none, "
                        "reduction_mean, reduction_sum, k_dim, generated, expect-error, no-grad)")
    shown = p.add_mutually_exclusive_group()
    shown.add_argument("--ids", action="store_true", help="print only the case ids")
    shown.add_argument("--files", action="store_true",
                       help="print only the case files, for 'conformance run --cases $(...)'")
    shown.add_argument("--counts", action="store_true", help="print cases per group")
    shown.add_argument("--markdown", action="store_true",
                       help="print the tables of docs/cases.md")


def cmd_list(args: argparse.Namespace) -> int:
    from conformance.cases import catalog

    cases = catalog.select(load_cases(args.paths), args.group, args.exclude_group, args.op,
                           args.option)
    root = Path.cwd()
    if args.ids:
        print("\n".join(c.id for c in cases))
    elif args.files:
        print("\n".join(catalog.files(cases, root)))
    elif args.counts:
        print(catalog.counts(cases), end="")
    elif args.markdown:
        print(catalog.markdown(cases, root), end="")
    else:
        print(catalog.text(cases, root), end="")
    return 0


def _add_report(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="write one offline HTML report from results files "
                                      "(several runs or machines merge into one)")
    p.add_argument("results", nargs="+", type=Path, metavar="RESULTS",
                   help="JSON Lines results files")
    p.add_argument("-o", "--output", type=Path, default=Path("results/report.html"),
                   help="the HTML file to write (default: results/report.html)")
    p.add_argument("--cases-root", type=Path, metavar="DIR",
                   help="where the records' case files are (default: the current directory); "
                        "only regular files inside it are read, whatever a results file names; "
                        "without them the report lacks only inputs and YAML")


def cmd_report(args: argparse.Namespace) -> int:
    from conformance.report.page import write_report
    from conformance.results.paths import check_outputs

    check_outputs([("-o", args.output)], [("the results file", path) for path in args.results])
    info = write_report(args.results, args.output, cases_root=args.cases_root)
    print(f"report: {info.path} ({info.size / 1024:.0f} KiB, {info.records} records, "
          f"{info.discrepancies} discrepancies, {info.conflicts} conflicting comparisons, "
          f"{info.seconds:.2f} s)")
    return 0


def _add_merge(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("merge", help="merge results files into one (idempotent; conflicting "
                                     "duplicates are kept and reported)")
    p.add_argument("results", nargs="+", type=Path, metavar="RESULTS")
    p.add_argument("-o", "--output", type=Path, required=True, help="the merged results file")


def cmd_merge(args: argparse.Namespace) -> int:
    from conformance.results.merge import merge_results, write_merged
    from conformance.results.paths import check_outputs

    check_outputs([("-o", args.output)], [("the results file", path) for path in args.results])
    merged = merge_results(args.results)
    write_merged(merged, args.output)
    print(f"merged: {args.output} ({len(merged.environments)} environments, "
          f"{len(merged.records)} records, {merged.duplicates} identical duplicates dropped, "
          f"{len(merged.conflicts)} comparisons with conflicting duplicates kept)")
    return 0


def _add_pairwise(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pairwise", help="framework against framework: the largest disagreement "
                                        "of every pair of frameworks on each case, API kind, "
                                        "device and dtype, from results files")
    p.add_argument("results", nargs="+", type=Path, metavar="RESULTS",
                   help="results files (JSON Lines) written by 'conformance run'")
    p.add_argument("--out", type=Path, metavar="FILE",
                   help="also write the pairs as JSON Lines ({\"type\": \"pairwise\", ...})")
    p.add_argument("--limit", type=int, default=20, metavar="N",
                   help="pairs to print, largest disagreement first (default 20; 0: all)")


def cmd_pairwise(args: argparse.Namespace) -> int:
    from conformance.judge.pairwise import pair_lines, pairs_from_results, write_pairs
    from conformance.results.paths import check_outputs

    if args.out is not None:
        check_outputs([("--out", args.out)],
                      [("the results file", path) for path in args.results])
    pairs = pairs_from_results(args.results)
    if args.out is not None:
        write_pairs(pairs, args.out)
    print("\n".join(pair_lines(pairs, args.limit or None)))
    written = f"; written to {args.out}" if args.out else ""
    print(f"{len(pairs)} framework pairs compared{written}")
    return 0


def _add_oracle(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("oracle", help="write the oracle's values (inputs, exact and correctly "
                                      "rounded outputs and gradients, error bounds) of whole "
                                      "cases, at any size, as .npz files")
    p.add_argument("cases", nargs="+", metavar="CASES", help="case files or directories")
    p.add_argument("--dtype", nargs="+", choices=list(DTYPES), metavar="DTYPE",
                   help=f"only these dtypes ({', '.join(DTYPES)}; default: each case's own)")
    p.add_argument("--out", type=Path, required=True,
                   help="a .npz file (keys CASE/DTYPE/NAME), or a folder (one CASE.npz each, "
                        "keys DTYPE/NAME)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace output files that exist (never done without it)")
    p.add_argument("--cache", metavar="DIR",
                   help="the oracle's cache directory (default: $CONFORMANCE_CACHE or "
                        ".conformance-cache)")
    p.add_argument("--no-cache", action="store_true",
                   help="compute every oracle result afresh, reading and writing no cache")


def cmd_oracle(args: argparse.Namespace) -> int:
    import os

    from conformance.cases.loading import find_case_files
    from conformance.judge.references import planned_files, write_references
    from conformance.oracle import cache as oracle_cache
    from conformance.results.paths import check_outputs

    cases = load_cases(args.cases)
    setting = "off" if args.no_cache else args.cache
    cache = oracle_cache.cache_directory() if setting is None else (
        None if setting.strip().lower() in oracle_cache.DISABLED else Path(setting))
    inputs = [("CASES", Path(p)) for p in args.cases] + [
        ("a case file:", f) for f in find_case_files([Path(p) for p in args.cases])]
    planned = planned_files(args.out, cases, args.dtype)
    check_outputs([("--out", path) for path in planned], inputs,
                  [("the oracle cache", cache)] if cache is not None else [])
    before = os.environ.get(oracle_cache.CACHE_VARIABLE)
    if setting is not None:
        os.environ[oracle_cache.CACHE_VARIABLE] = setting
    try:
        written = write_references(args.out, cases, args.dtype, overwrite=args.overwrite)
    except FileExistsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    finally:
        if setting is not None:
            if before is None:
                os.environ.pop(oracle_cache.CACHE_VARIABLE, None)
            else:
                os.environ[oracle_cache.CACHE_VARIABLE] = before
    total = sum(w.entries for w in written)
    where = written[0].path if len(written) == 1 else f"{len(written)} files in {args.out}"
    print(f"oracle: {total} case x dtype reference(s) written to {where}")
    return 0


COMMANDS: dict[str, tuple[Callable[[argparse._SubParsersAction], None],
                          Callable[[argparse.Namespace], int]]] = {
    "run": (_add_run, cmd_run),
    "validate": (_add_validate, cmd_validate),
    "list": (_add_list, cmd_list),
    "pairwise": (_add_pairwise, cmd_pairwise),
    "support": (support.add_parser, support.command),
    "report": (_add_report, cmd_report),
    "merge": (_add_merge, cmd_merge),
    "oracle": (_add_oracle, cmd_oracle),
    **ci_commands.COMMANDS,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="conformance",
        description="Cross-framework conformance suite for softmax cross-entropy and its family.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for add, _ in COMMANDS.values():
        add(sub)
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command][1](args)
    except CaseError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
