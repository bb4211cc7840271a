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
from conformance.adapters import frameworks, installed, support
from conformance.cases.loading import MAX_ERRORS, CaseError, load_cases
from reference.formats import DTYPES

DEFAULT_CASES = ["cases"]
DEFAULT_OUT = Path("results/results.jsonl")


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Every option's help ends with its default: the one its help names, else
    ``(default: VALUE)`` added here (``off`` for a flag); descriptions and epilogs keep
    their line breaks (examples)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if "default" in text or action.default is argparse.SUPPRESS:
            return text
        if isinstance(action, argparse._StoreTrueAction | argparse._StoreFalseAction):
            return f"{text} (default: off)"
        if action.default is None or action.default == []:
            return text
        value = action.default
        shown = " ".join(map(str, value)) if isinstance(value, list | tuple) else str(value)
        return f"{text} (default: {shown.replace('%', '%%')})"


class _Parser(argparse.ArgumentParser):
    """A subcommand's parser, with ``HelpFormatter`` unless told otherwise."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)


RUN_DESCRIPTION = """\
Run every case on every selected framework, API, device and dtype; compare each result
with the oracle's certified value (computed once, then cached); append the records to a
JSON Lines results file, optionally also writing the HTML report.

A framework's own warnings and logs go to a log file per worker process, in a folder named
after the results file (results/results.jsonl -> results/results.logs/); the terminal gets
one line per framework with their count and path.

exit codes:
  0  every record passed (or --exit-zero)
  1  discrepancies: a record failed or errored (see the summary and the results file)
  2  bad input: a case file, a results file, an option, or a --framework not installed
"""
RUN_EXAMPLES = """\
examples:
  conformance run --cases cases/seeds.yaml --framework torch
  conformance run --out results/results.jsonl --overwrite --exit-zero --report results/report.html
"""


def _add_run(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run cases on frameworks, write records to a JSON Lines file",
                       description=RUN_DESCRIPTION, epilog=RUN_EXAMPLES)
    p.add_argument("--cases", nargs="+", default=DEFAULT_CASES, metavar="PATH",
                   help="case files or directories (default: cases)")
    p.add_argument("--framework", nargs="+", choices=list(frameworks()), metavar="NAME",
                   help=f"frameworks to run, each of which must be installed (default: those "
                        f"of {', '.join(frameworks())} installed here, the others named on "
                        "stderr; with none installed, all of them, recorded as skipped)")
    p.add_argument("--dtype", nargs="+", choices=list(DTYPES), metavar="DTYPE",
                   help=f"only these dtypes, of {', '.join(DTYPES)} (default: each case's)")
    p.add_argument("--device", nargs="+", metavar="DEVICE",
                   help="only these devices: an id (cpu, cuda:0, xpu:0, mps:0, npu:0: what the "
                        "framework reports) or a kind (cpu, gpu, npu) (default: every device a "
                        "framework has)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, metavar="FILE",
                   help=f"results file (default: {DEFAULT_OUT}); an existing one is kept "
                        "unless --append, --resume or --overwrite is given")
    p.add_argument("--append", action="store_true", help="append to an existing results file")
    p.add_argument("--overwrite", action="store_true", help="replace an existing results file")
    p.add_argument("--timeout", type=float, default=600.0, metavar="SECONDS",
                   help="seconds one job may take before its worker is killed (default: 600)")
    p.add_argument("--oracle-timeout", type=float, default=3600.0, metavar="SECONDS",
                   help="seconds the oracle may take on one case and dtype, computing the "
                        "results the cache lacks before the frameworks run (default: 3600)")
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
    p.add_argument("--tolerance-scale", type=float, metavar="FACTOR",
                   help="multiply every tolerance factor K of the comparison rules by FACTOR "
                        "(conformance/judge/compare.py; sets $CONFORMANCE_TOLERANCE_SCALE; "
                        "default: $CONFORMANCE_TOLERANCE_SCALE, else 1)")
    p.add_argument("--exit-zero", action="store_true",
                   help="exit 0 even when discrepancies are found (audits that only want records)")
    p.add_argument("--report", type=Path, metavar="FILE",
                   help="also write the HTML report of the results file here at the end "
                        "(default: no report)")
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
                        "or one per --impl in order (default: none)")


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


def default_frameworks() -> list[str]:
    """The frameworks a run without --framework runs: every installed one, each other named
    on stderr with how to install it; where none is installed, all of them (each then
    recorded as skipped with that reason)."""
    from conformance.adapters import not_installed

    found = installed()
    if found:
        for name in frameworks():
            reason = None if name in found else not_installed(name)
            if reason:
                print(f"{name}: not run, {reason}", file=sys.stderr)
    return found or list(frameworks())


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
    if _named_frameworks_missing(args.framework or []):
        return 2
    implementations = _implementations(args, list(frameworks()))
    chosen = args.framework or ([] if implementations else default_frameworks())
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
    progress = Progress(sys.stderr, dtypes=args.dtype, devices=args.device,
                        frameworks=options.frameworks)
    try:
        summary = run(options, log=progress.log, progress=progress)
    finally:
        progress.close()
    if args.report is not None:
        from conformance.report.page import write_report

        write_report([args.out], args.report)
    more, failed = ci_commands.finish_run(args, options, summary)
    print("\n".join([*summary_lines(summary, report=args.report), *more]))
    skipped = _skipped(summary, args.framework or [])
    if skipped:  # named, found installed, yet it could not be imported
        print(f"error: --framework {' '.join(skipped)}: could not be imported (see the "
              "skip reason above)", file=sys.stderr)
        return 2
    return 0 if args.exit_zero or not failed else 1


def _named_frameworks_missing(names: list[str]) -> bool:
    """A framework named with ``--framework`` must be installed: print why not (and how
    to install it) for each that is not.  Those missing when none is named are skipped."""
    from conformance.adapters import not_installed

    reasons = [reason for reason in map(not_installed, dict.fromkeys(names)) if reason]
    for reason in reasons:
        print(f"error: --framework: {reason}", file=sys.stderr)
    return bool(reasons)


def _skipped(summary: Any, names: list[str]) -> list[str]:
    """The named frameworks whose records are all ``skip`` (their import failed)."""
    statuses: dict[str, set[str]] = {}
    for framework, status in summary.statuses:
        statuses.setdefault(framework, set()).add(status)
    return [name for name in dict.fromkeys(names) if statuses.get(name) == {"skip"}]


VALIDATE_ORACLE_ELEMENTS = 4096  # larger documented cases are left to the run: slow oracle


def _add_validate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "validate", help="check case files without running anything",
        description="Check case files completely, without running any framework: every error "
                    f"of a file (up to {MAX_ERRORS}, in file order) with its file, line and "
                    "field; duplicate ids; and each documented value against the float64 "
                    "oracle (cached). Exit 0 if all is valid, 2 otherwise.")
    p.add_argument("paths", nargs="*", default=DEFAULT_CASES, metavar="PATH",
                   help="case files or directories")
    p.add_argument("-v", "--verbose", action="store_true", help="one line per valid file")
    p.add_argument("--results", nargs="+", type=Path, metavar="FILE",
                   help="check results files (JSON Lines) against the results schema instead "
                        "(default: check case files)")
    p.add_argument("--no-oracle", action="store_true",
                   help="do not check documented values against the oracle")


def cmd_validate(args: argparse.Namespace) -> int:
    """Every file is checked completely (not only up to its first error, nor up to the
    first bad file); each error names its file, line and field.  Exit 2 if any file is
    invalid, an id repeats or a documented value disagrees with the oracle."""
    from collections import Counter

    from conformance.cases.loading import Case, check_file, find_case_files

    if args.results:
        return ci_commands.validate_results(args.results)
    files = find_case_files(args.paths)
    if not files:  # "0 cases valid" would pass a typo'd folder in CI
        print(f"error: no case files (*.yaml, *.yml) in {', '.join(map(str, args.paths))}",
              file=sys.stderr)
        return 2
    seen: dict[str, Case] = {}
    slow: list[Case] = []
    bad, groups = 0, Counter[str]()
    for file in files:
        cases, errors = check_file(file)
        if len(errors) < MAX_ERRORS and not args.no_oracle:
            wrong, skipped = _documented_errors(cases)
            errors = sorted(errors + wrong, key=lambda e: (e.line or 0, e.field))[:MAX_ERRORS]
            slow += skipped
        for error in errors:
            print(f"error: {error}", file=sys.stderr)
        if len(errors) == MAX_ERRORS:
            print(f"error: {file}: stopped at {MAX_ERRORS} errors; fix these and validate "
                  "again", file=sys.stderr)
        bad += len(errors)
        for case in cases:
            if case.id in seen:
                first = seen[case.id]
                duplicate = CaseError(case.file, case.line, "id", f"duplicate id {case.id!r} "
                                      f"(first at {first.file}:{first.line})")
                print(f"error: {duplicate}", file=sys.stderr)
                bad += 1
                continue
            seen[case.id] = case
            groups[case.group] += 1
        if args.verbose and not errors:
            print(f"{file}: {len(cases)} cases")
    if slow:
        print(f"note: the documented values of {len(slow)} case(s) with over "
              f"{VALIDATE_ORACLE_ELEMENTS} input elements were not checked against the oracle "
              "here (it is slow on them; conformance run checks them): "
              f"{', '.join(c.id for c in slow[:5])}{' ...' if len(slow) > 5 else ''}")
    if bad:
        print(f"{bad} error(s) in {len(files)} files", file=sys.stderr)
        return 2
    summary = ", ".join(f"{group} {n}" for group, n in sorted(groups.items()))
    print(f"{len(seen)} cases valid in {len(files)} files ({summary})")
    return 0


def _documented_errors(cases: list[Any]) -> tuple[list[CaseError], list[Any]]:
    """Documented values against the float64 oracle (cached), as ``conformance run``
    checks them: an error at the case for each disagreement.  Cases with more than
    ``VALIDATE_ORACLE_ELEMENTS`` input elements are left to the run (returned second)."""
    from conformance.judge.check import check_documented
    from conformance.run.worker import case_size

    documented = [c for c in cases if c.expect == "value" and (
        c.documented is not None or c.documented_grad is not None)]
    slow = [c for c in documented if case_size(c) > VALIDATE_ORACLE_ELEMENTS]
    errors = []
    for case in documented:
        if case in slow:
            continue
        for record in check_documented(case):
            if record.status != "pass":
                key = "documented" if record.quantity == "documented" else "documented_grad"
                errors.append(CaseError(case.file, case.line, f"{case.id}: {key}",
                                        f"{record.status} against the float64 oracle: "
                                        f"{record.message}"))
    return errors, slow


def _add_list(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("list", help="show cases by group, op and options (and select them)")
    p.add_argument("paths", nargs="*", default=DEFAULT_CASES, metavar="PATH",
                   help="case files or directories")
    p.add_argument("--group", nargs="+", metavar="GROUP",
                   help="only these groups (default: every group)")
    p.add_argument("--exclude-group", nargs="+", metavar="GROUP",
                   help="leave these groups out, e.g. large (default: none)")
    p.add_argument("--op", nargs="+", metavar="OP", help="only these ops (default: every op)")
    p.add_argument("--option", nargs="+", metavar="OPTION",
                   help="only cases with all these options or tags (probability_target, "
                        "weight, ignore_index, label_smoothing, reduction_none, "
                        "reduction_mean, reduction_sum, k_dim, generated, expect-error, "
                        "no-grad; default: any)")
    shown = p.add_mutually_exclusive_group()
    shown.add_argument("--ids", action="store_true", help="print only the case ids")
    shown.add_argument("--files", action="store_true",
                       help="print only the case files, for 'conformance run --cases $(...)'")
    shown.add_argument("--counts", action="store_true", help="print cases per group")
    shown.add_argument("--markdown", action="store_true",
                       help="print the tables of docs/cases.md (default, without any of "
                            "these: a table per group)")


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
                   help="JSON Lines results files (required)")
    p.add_argument("-o", "--output", type=Path, default=Path("results/report.html"),
                   metavar="FILE", help="the HTML file to write (default: results/report.html)")
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
    p.add_argument("results", nargs="+", type=Path, metavar="RESULTS",
                   help="JSON Lines results files to merge (required)")
    p.add_argument("-o", "--output", type=Path, required=True, metavar="FILE",
                   help="the merged results file (required; no default)")


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
                   help="results files (JSON Lines) written by 'conformance run' (required)")
    p.add_argument("--out", type=Path, metavar="FILE",
                   help="also write the pairs as JSON Lines ({\"type\": \"pairwise\", ...}; "
                        "default: print only)")
    p.add_argument("--limit", type=int, default=20, metavar="N",
                   help="pairs to print, largest disagreement first; 0: all (default: 20)")


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
    _print_version_changes(args.results, args.limit or None)
    return 0


def _print_version_changes(paths: list[Path], limit: int | None) -> None:
    """Where a framework has records of several versions: what passes in one and not in
    another (``conformance.report.versions``)."""
    from conformance.report.versions import (
        change_lines,
        changes_between_versions,
        framework_versions,
    )
    from conformance.results.jsonl import read_results

    results = read_results(paths)
    several = {name: found for name, found in framework_versions(results.records).items()
               if len(found) > 1}
    if not several:
        return
    changes = changes_between_versions(results.records, results.adapters)
    for line in change_lines(changes)[:limit]:
        print(line)
    shown = "; ".join(f"{name} {' / '.join(found)}" for name, found in several.items())
    print(f"{len(changes)} comparisons changed between versions ({shown})")


def _add_hunt(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("hunt", help="search for discrepancies with generated problems "
                                    "(Hypothesis); write each as a minimal case file")
    p.add_argument("--framework", required=True, choices=list(frameworks()), metavar="NAME",
                   help=f"the framework to hunt on ({', '.join(frameworks())}; required)")
    p.add_argument("--budget", type=float, default=120.0, metavar="SECONDS",
                   help="how long to search (default 120)")
    p.add_argument("--out", type=Path, default=Path("found"), metavar="DIR",
                   help="where the cases go, one file per distinct discrepancy (default: "
                        "found/; files already there are never overwritten)")
    p.add_argument("--seed", type=int, default=0, help="Hypothesis' seed (default 0)")
    p.add_argument("--max-problems", type=int, metavar="N",
                   help="also stop after N problems, shrinking included (default: no limit)")
    p.add_argument("--dtype", nargs="+", choices=list(DTYPES), metavar="DTYPE",
                   help="only these dtypes (default: every dtype the framework has)")
    p.add_argument("--compiled", action="store_true",
                   help="also the compiled twins of the APIs (torch.compile, jax.jit, "
                        "tf.function), which compile again for every new shape (default: "
                        "the eager APIs only)")
    p.add_argument("--exit-zero", action="store_true",
                   help="exit 0 even when discrepancies are found (default: exit 1 then)")


def cmd_hunt(args: argparse.Namespace) -> int:
    try:
        from conformance.hunt.hunter import hunt
    except ImportError as error:
        print(f"error: conformance hunt needs Hypothesis ({error}); "
              "pip install -c constraints.txt -e '.[hunt]'", file=sys.stderr)
        return 2
    from conformance.adapters import AdapterUnavailable, load_adapter

    if not args.budget > 0 or args.budget == float("inf"):
        print(f"error: --budget must be a finite number of seconds > 0, got {args.budget}",
              file=sys.stderr)
        return 2
    if args.out.exists() and not args.out.is_dir():
        print(f"error: --out {args.out} exists and is not a directory", file=sys.stderr)
        return 2
    try:
        adapter = load_adapter(args.framework)
    except AdapterUnavailable as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    summary = hunt(adapter, args.budget, args.out, seed=args.seed,
                   dtypes=tuple(args.dtype) if args.dtype else None, compiled=args.compiled,
                   max_problems=args.max_problems)
    print(summary.report())
    return 1 if summary.findings and not args.exit_zero else 0


def _add_oracle(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("oracle", help="write the oracle's values (inputs, exact and correctly "
                                      "rounded outputs and gradients, error bounds) of whole "
                                      "cases, at any size, as .npz files")
    p.add_argument("cases", nargs="+", metavar="CASES",
                   help="case files or directories (required)")
    p.add_argument("--dtype", nargs="+", choices=list(DTYPES), metavar="DTYPE",
                   help=f"only these dtypes ({', '.join(DTYPES)}; default: each case's own)")
    p.add_argument("--out", type=Path, required=True, metavar="PATH",
                   help="a .npz file (keys CASE/DTYPE/NAME), or a folder (one CASE.npz each, "
                        "keys DTYPE/NAME); required")
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
    "hunt": (_add_hunt, cmd_hunt),
    "oracle": (_add_oracle, cmd_oracle),
    **ci_commands.COMMANDS,
}


def build_parser() -> argparse.ArgumentParser:
    """The ``conformance`` parser, with a subparser per entry of ``COMMANDS``."""
    from conformance import __version__

    parser = argparse.ArgumentParser(
        prog="conformance", formatter_class=HelpFormatter,
        description="Cross-framework conformance suite for softmax cross-entropy and its family.",
    )
    parser.add_argument("--version", action="version",
                        version=f"conformance {__version__} (crossentropy-conformance)")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser,
                                metavar="COMMAND", help="one of the commands below")
    for add, _ in COMMANDS.values():
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
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
