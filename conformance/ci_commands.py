"""The command line's CI side: ``run --baseline/--strict-baseline/--junit-xml/--shard/
--oracle-only``, ``conformance baseline``, ``conformance repro`` and
``conformance validate --results``.

Kept apart from ``conformance/cli.py`` so that the subcommands there stay short; ``cli.py``
calls ``add_run_options`` and ``prepare_run`` / ``finish_run`` around ``cmd_run``, and
registers ``COMMANDS`` beside its own.  Exit codes as everywhere: 0, 1 (new discrepancies,
or an xpass under ``--strict-baseline``), 2 (a bad file or option, named).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from conformance.judge.baseline import Baseline, draft_baseline, load_baseline, write_draft
from conformance.run.shards import ShardError, parse_shard
from conformance.run.summary import RunSummary


def add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--baseline", nargs="+", type=Path, metavar="YAML",
                   help="known discrepancies (baselines/*.yaml): a fail or error matching an "
                        "entry is an xfail, a matched pass an xpass; only new discrepancies "
                        "make the exit code 1 (default: none)")
    p.add_argument("--strict-baseline", action="store_true",
                   help="with --baseline, an xpass (a known discrepancy that now passes) "
                        "also makes the exit code 1")
    p.add_argument("--junit-xml", type=Path, metavar="FILE",
                   help="also write the run's jobs as JUnit XML, one testcase per job "
                        "(default: none)")
    p.add_argument("--shard", metavar="K/N|auto",
                   help="run only shard K of N (whole cases, balanced by size); auto: from "
                        "$CONFORMANCE_SHARD, $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT or "
                        "$JOB_COMPLETION_INDEX/$CONFORMANCE_SHARD_COUNT (default: every case)")
    p.add_argument("--oracle-only", action="store_true",
                   help="only fill the oracle cache for the cases (of the shard), run no "
                        "framework and write no results: ship the cache to the shards")


def prepare_run(args: argparse.Namespace) -> dict[str, Any]:
    """The ``RunOptions`` fields these options set; raises ``ValueError`` (exit 2)."""
    shard = None
    if args.shard is not None:
        try:
            shard = parse_shard(args.shard)
        except ShardError as error:
            raise ValueError(str(error)) from None
    if args.strict_baseline and not args.baseline:
        raise ValueError("--strict-baseline needs --baseline FILE")
    baseline = load_baseline(args.baseline) if args.baseline else None
    return {"shard": shard, "baseline": baseline, "keep_records": args.junit_xml is not None}


def oracle_only(options: Any) -> int:
    from conformance.run.runner import fill_oracle_cache

    summary, failures = fill_oracle_cache(options, log=lambda line: print(line,
                                                                          file=sys.stderr))
    computed = summary.oracle.get("computed", 0)
    print(f"oracle: {computed} result(s) computed; {len(failures)} could not be")
    for (case_id, dtype), reason in sorted(failures.items()):
        print(f"  {case_id} {dtype}: {reason}", file=sys.stderr)
    return 1 if failures else 0


def finish_run(args: argparse.Namespace, options: Any, summary: RunSummary) -> tuple[list[str],
                                                                                     bool]:
    """Lines for the terminal and whether the run failed, baseline and JUnit considered."""
    lines: list[str] = []
    baseline: Baseline | None = options.baseline
    failed = summary.failed
    if baseline is not None:
        lines.append(f"baseline: {summary.known['xfail']} known discrepancies (xfail), "
                     f"{summary.known['xpass']} fixed (xpass), {summary.new_discrepancies} new")
        for record in summary.xpasses[:10]:
            entry = (record.baseline or {}).get("entry", "")
            lines.append(f"  xpass: {record.case_id}[{record.framework}-{record.api}-"
                         f"{record.device}-{record.dtype}] {record.quantity} ({entry})")
        unused = baseline.stale()
        stale = [e for e in unused if not baseline.not_run(e)]
        if stale:
            lines.append(f"baseline: {len(stale)} entries matched no record of this run "
                         "although their framework and case ran (fixed? stale?):")
            lines += [f"  {entry.where}" for entry in stale[:20]]
        if len(unused) > len(stale):
            lines.append(f"baseline: {len(unused) - len(stale)} entries are for frameworks or "
                         "cases not run here")
        failed = failed or (args.strict_baseline and bool(summary.xpasses))
    if args.junit_xml is not None:
        from conformance.results.junit import write_junit

        write_junit(summary.records or [], args.junit_xml, args.strict_baseline)
        lines.append(f"junit:   {args.junit_xml}")
    return lines, failed


# --- conformance baseline ------------------------------------------------------------------


def _add_baseline(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("baseline", help="write a known-discrepancy baseline from results "
                                        "files: one entry per case and API family")
    p.add_argument("results", nargs="+", type=Path, metavar="RESULTS",
                   help="results files (JSON Lines) whose discrepancies to list (required)")
    p.add_argument("-o", "--output", type=Path, required=True, metavar="FILE",
                   help="the baseline (YAML) to write (required)")
    p.add_argument("--keep", type=Path, metavar="YAML",
                   help="an earlier baseline (often the same file as -o): its entries that "
                        "still match a discrepancy are kept as they are, reason and link "
                        "included; only discrepancies none of them covers get new entries "
                        "(default: none)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace -o if it exists (implied when -o is the --keep file)")


def cmd_baseline(args: argparse.Namespace) -> int:
    from conformance.results.jsonl import read_results
    from conformance.results.paths import check_outputs

    check_outputs([("-o", args.output)], [("the results file", p) for p in args.results])
    same = args.keep is not None and args.output.exists() and \
        args.keep.resolve() == args.output.resolve()
    if args.output.exists() and not (args.overwrite or same):
        print(f"error: {args.output} exists; pass --keep {args.output} to update it or "
              "--overwrite to replace it", file=sys.stderr)
        return 2
    existing = load_baseline([args.keep]) if args.keep is not None else None
    records = read_results(args.results).records
    draft = draft_baseline(records, existing)
    header = _leading_comment(args.keep) if args.keep is not None else ""
    header = header or ("Known discrepancies, written by 'conformance baseline' from "
                        f"{', '.join(map(str, args.results))}.\n"
                        "Fill in each new entry's reason (why the framework differs) and link "
                        "(the upstream issue, or\n\"not reported upstream yet\"); "
                        "'conformance run --baseline FILE' reads it.")
    write_draft(draft, args.output, header)
    print(f"baseline: {args.output} ({len(draft.kept)} entries kept, {len(draft.new)} new, "
          f"{len(draft.dropped)} dropped: they matched no discrepancy)")
    for entry in draft.dropped:
        print(f"  dropped {entry.where}", file=sys.stderr)
    return 0


def _leading_comment(path: Path) -> str:
    """The comment block that opens a baseline file (kept when it is regenerated)."""
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        lines.append(line[2:] if line.startswith("# ") else line[1:])
    return "\n".join(lines)


# --- conformance validate --results --------------------------------------------------------


def validate_results(paths: list[Path]) -> int:
    """Every line of every file checked against the results schema; exit 2 on the first bad
    line of each file (named with its line and field)."""
    from conformance.results.jsonl import read_lines
    from conformance.results.records import RESULTS_SCHEMA_VERSION

    bad = 0
    for path in paths:
        try:
            lines = versions = 0
            seen: set[int] = set()
            for _, obj in read_lines(path):
                lines += 1
                if obj["type"] == "environment":
                    seen.add(int(obj.get("schema_version", 1)))
            versions = max(seen, default=1)
        except (OSError, ValueError) as error:
            print(f"error: {error}", file=sys.stderr)
            bad += 1
            continue
        print(f"{path}: {lines} lines valid (results schema version "
              f"{'/'.join(map(str, sorted(seen))) or versions}; this suite writes "
              f"{RESULTS_SCHEMA_VERSION})")
    return 2 if bad else 0


def _add_repro(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("repro", help="write a standalone script (the framework and numpy "
                                     "only) reproducing one discrepancy of a results file")
    p.add_argument("results", nargs="+", type=Path, metavar="RESULTS",
                   help="results files (JSON Lines) holding the record (required)")
    p.add_argument("--case", required=True, metavar="ID", help="the case's id (required)")
    p.add_argument("--framework", metavar="NAME", help="the framework (default: any)")
    p.add_argument("--api", metavar="NAME",
                   help="the API's name or id, a glob (default: any)")
    p.add_argument("--dtype", metavar="DTYPE", help="the dtype (default: any)")
    p.add_argument("--device", metavar="DEVICE", help="the device id (default: any)")
    p.add_argument("--quantity", metavar="QUANTITY",
                   help="output or grad (default: any; a discrepancy first)")
    p.add_argument("-o", "--output", type=Path, required=True, metavar="FILE",
                   help="the script to write, a .py (and a sibling .npz for large inputs; "
                        "required)")
    p.add_argument("--cases-root", type=Path, metavar="DIR", default=Path.cwd(),
                   help="where the records' case files are (default: the current directory)")


def cmd_repro(args: argparse.Namespace) -> int:
    from conformance.judge.repro import ReproError, write_repro
    from conformance.results.paths import check_outputs

    check_outputs([("-o", args.output)], [("the results file", p) for p in args.results])
    try:
        written = write_repro(args)
    except ReproError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"repro: {', '.join(map(str, written))}")
    return 0


COMMANDS: dict[str, tuple[Callable[[argparse._SubParsersAction], None],
                          Callable[[argparse.Namespace], int]]] = {
    "baseline": (_add_baseline, cmd_baseline),
    "repro": (_add_repro, cmd_repro),
}
