"""The search: Hypothesis draws problems, the adapters run them, the judge compares them with
the oracle, and every distinct discrepancy is shrunk and written as one minimal case file.

``hunt`` loops until its budget (seconds) is spent.  Each round is one Hypothesis search
(``ROUND_EXAMPLES`` problems at most, seeded ``seed + round``) for a problem with a
discrepancy whose *signature* is not yet known; Hypothesis shrinks the first it meets to a
minimal problem, whose new signatures are then known, so the next round looks for others.
The example database (``DIR/hunt/FRAMEWORK`` under the oracle's cache directory) keeps the
failing examples, so a rerun replays them first.

A discrepancy is a record with status ``fail`` or ``error`` (``conformance.judge.check``).
Its signature is the API, the record's kind and quantity, and the shrunk input's signature:
op, the options the case exercises (``Case.options()``), the special values present
(``-inf``, ``+inf``, ``nan``), an empty batch (not the dtype: one bug in four dtypes is one
discrepancy, written in the dtype it was shrunk in).  One signature gives one file,
``found/found-FRAMEWORK-API-HASH.yaml`` (HASH: of the signature), with
``source: found by conformance hunt`` and the seed in its description; a file already there
is never overwritten (the discrepancy is reported as already found).  Before it is kept, the
file is loaded as ``conformance run`` would load it and run again: it must validate and
reproduce a discrepancy of the same signature, or it is removed and reported.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as seeded
from hypothesis import strategies as st
from hypothesis.database import DirectoryBasedExampleDatabase

from conformance.adapters.base import Adapter, Api, Device
from conformance.cases import generate
from conformance.cases.loading import Case, CaseError, load_file
from conformance.hunt.strategies import Drawn, problems
from conformance.judge.check import check_case
from conformance.oracle.cache import cache_directory
from conformance.results.records import Record
from reference.oracle import OracleDomainError

SOURCE = "found by conformance hunt (conformance/hunt/hunter.py)"
# the compiled twins of the eager APIs (torch.compile, jax.jit, tf.function): each new shape
# compiles again (seconds), so a hunt takes them only when asked (``compiled=True``)
COMPILED_PREFIXES = ("compile-", "jit-", "function-")
ROUND_EXAMPLES = 300
DISCREPANCIES = ("fail", "error")
SCHEMA_LINE = "# yaml-language-server: $schema=../conformance/cases/schema.json\n"


@dataclass(frozen=True)
class Finding:
    """One distinct discrepancy: its signature, the shrunk problem and its records."""

    signature: tuple[str, ...]
    api: Api
    drawn: Drawn
    records: tuple[Record, ...]
    seed: int

    @property
    def digest(self) -> str:
        return hashlib.sha256(repr(self.signature).encode()).hexdigest()[:10]


@dataclass
class Summary:
    """What a hunt did (``report`` words it)."""

    framework: str
    tried: int = 0
    seconds: float = 0.0
    findings: list[Finding] = field(default_factory=list)
    written: list[Path] = field(default_factory=list)
    already: list[Path] = field(default_factory=list)
    not_reproduced: list[str] = field(default_factory=list)
    own_errors: list[str] = field(default_factory=list)  # the suite's, not the framework's

    def report(self) -> str:
        rate = self.tried / self.seconds if self.seconds else 0.0
        lines = [f"hunt on {self.framework}: {self.tried} problems tried in "
                 f"{self.seconds:.0f} s ({rate:.1f} problems/s); "
                 f"{len(self.findings)} distinct discrepancies; {len(self.written)} files "
                 f"written, {len(self.already)} already in the output folder"]
        for finding in self.findings:
            first = finding.records[0]
            lines.append(f"  {finding.api.name} {first.quantity} {first.kind or first.status} "
                         f"{finding.drawn.dtype}: {_short(first.message)}")
        lines += [f"  written: {path}" for path in self.written]
        lines += [f"  already there (kept): {path}" for path in self.already]
        lines += [f"  not reproduced, not kept: {why}" for why in self.not_reproduced]
        if self.own_errors:
            lines.append(f"  {len(self.own_errors)} problems not judged (an error of the "
                         f"suite's own, not the framework's): {_short(self.own_errors[0])}")
        return "\n".join(lines)


class _OutOfTime(BaseException):
    """The budget is spent: stops Hypothesis wherever it is (a BaseException, which it does
    not take for a failure of the test)."""


class _Discrepancy(Exception):
    """Raised inside the Hypothesis test for a problem with a new signature."""

    def __init__(self, api: Api, drawn: Drawn, records: list[Record],
                 signatures: list[tuple[str, ...]]) -> None:
        super().__init__(f"{api.name}: {signatures[0]}")
        self.api, self.drawn, self.records, self.signatures = api, drawn, records, signatures


def _freeze(value: Any) -> Any:
    if isinstance(value, dict) and "generate" in value:
        return generate.freeze(value)
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value


def case_of(drawn: Drawn, case_id: str = "hunt", description: str = "") -> Case:
    """The ``Case`` a case file with ``drawn``'s fields would load as."""
    fields = drawn.fields()
    return Case(id=case_id, op=fields["op"], input=_freeze(fields["input"]), source=SOURCE,
                file="<hunt>", line=1, group="found", description=description,
                target=_freeze(fields.get("target")), weight=_freeze(fields.get("weight")),
                reduction=fields.get("reduction", "mean"),
                label_smoothing=fields.get("label_smoothing", 0.0),
                dtypes=tuple(fields["dtypes"]))


def _specials(value: Any) -> set[str]:
    if isinstance(value, dict):
        return set()
    if isinstance(value, (list, tuple)):
        return set().union(*(_specials(v) for v in value)) if value else set()
    if isinstance(value, str):
        return {value}
    return set()


def signature(api: Api, record: Record, case: Case, drawn: Drawn) -> tuple[str, ...]:
    """The module docstring's signature of one discrepancy record."""
    empty = "empty" if 0 in _shape(drawn.input) else ""
    return (api.name, record.kind or record.status, record.quantity, drawn.op,
            ",".join(case.options()), ",".join(sorted(_specials(drawn.input))), empty)


def _shape(value: Any) -> tuple[int, ...]:
    if isinstance(value, dict):
        return tuple(value["shape"])
    shape = []
    while isinstance(value, (list, tuple)):
        shape.append(len(value))
        value = value[0] if value else None
    return tuple(shape)


def _run(adapter: Adapter, api: Api, device: Device, case: Case, dtype: str) -> list[Record]:
    return [r for r in check_case(case, adapter, api, device, dtype)
            if r.status in DISCREPANCIES]


def hunt(adapter: Adapter, budget: float, out: Path, seed: int = 0,
         dtypes: tuple[str, ...] | None = None, compiled: bool = False,
         max_problems: int | None = None,
         progress: Callable[[Summary], None] | None = None) -> Summary:
    """Search for ``budget`` seconds on ``adapter`` (module docstring), or until
    ``max_problems`` were run (shrinking included); cases go to ``out``; ``compiled``: also
    the compiled twins of the APIs (``COMPILED_PREFIXES``)."""
    summary = Summary(adapter.name)
    device = adapter.devices()[0]
    apis = tuple(api for api in adapter.apis()
                 if compiled or not api.id.startswith(COMPILED_PREFIXES))
    kept = tuple(d for d in adapter.dtypes() if dtypes is None or d in dtypes)
    if not apis or not kept:
        return summary
    known: set[tuple[str, ...]] = set()
    database = _database(adapter.name)
    start = time.monotonic()
    deadline = start + budget
    problem = st.sampled_from(apis).flatmap(
        lambda api: problems(api, kept).map(lambda drawn: (api, drawn)))

    latest: list[_Discrepancy | None] = [None]

    def attempt(pair: tuple[Api, Drawn]) -> None:
        if time.monotonic() > deadline or (max_problems is not None
                                           and summary.tried >= max_problems):
            raise _OutOfTime  # a BaseException: through Hypothesis, shrinking or not
        api, drawn = pair
        case = case_of(drawn)
        try:
            found = _run(adapter, api, device, case, drawn.dtype)
        except OracleDomainError:
            return  # outside the op's domain: not a problem with a defined answer
        except Exception as error:  # the suite's own failure, never the framework's
            summary.own_errors.append(f"{api.name}: {type(error).__name__}: {error}")
            return
        summary.tried += 1
        new = [(signature(api, r, case, drawn), r) for r in found]
        new = [(s, r) for s, r in new if s not in known]
        if new:
            # the last one raised is Hypothesis' smallest so far: kept here, since its final
            # replay may come after the deadline (then it passes, and Hypothesis says flaky)
            discrepancy = _Discrepancy(api, drawn, [r for _, r in new], [s for s, _ in new])
            latest[0] = discrepancy
            raise discrepancy

    round_ = 0
    while time.monotonic() < deadline:
        round_seed = seed + round_
        test = settings(max_examples=ROUND_EXAMPLES, deadline=None, database=database,
                        suppress_health_check=list(HealthCheck), report_multiple_bugs=False,
                        phases=(Phase.reuse, Phase.generate, Phase.shrink),
                        print_blob=False)(seeded(round_seed)(given(problem)(attempt)))
        latest[0] = None
        out_of_time = False
        try:
            test()
        except _OutOfTime:
            out_of_time = True  # with the smallest discrepancy so far, if there was one
        except Exception:  # _Discrepancy, or Hypothesis' FlakyFailure around it
            if latest[0] is None:
                raise

        found = latest[0]
        if found is not None:
            for sig in found.signatures:
                known.add(sig)
            finding = Finding(found.signatures[0], found.api, found.drawn,
                              tuple(found.records), round_seed)
            summary.findings.append(finding)
            _keep(adapter, device, finding, out, summary)
        if out_of_time:
            break
        round_ += 1
        summary.seconds = time.monotonic() - start
        if progress is not None:
            progress(summary)
    summary.seconds = time.monotonic() - start
    return summary


def _database(framework: str) -> DirectoryBasedExampleDatabase | None:
    directory = cache_directory()
    if directory is None:
        return None
    return DirectoryBasedExampleDatabase(str(directory / "hunt" / framework))


def case_text(finding: Finding, framework: str, version: str) -> str:
    """The minimal case file of ``finding``."""
    first = finding.records[0]
    case_id = f"found-{framework}-{finding.api.id}-{finding.digest}".lower().replace("_", "-")
    description = (f"{finding.api.name} ({framework} {version}): {first.quantity} "
                   f"{first.kind or first.status} in {finding.drawn.dtype}; seed "
                   f"{finding.seed}; {_short(first.message, 160)}")
    entry: dict[str, Any] = {"id": case_id, "description": description, "source": SOURCE}
    entry.update(finding.drawn.fields())
    return SCHEMA_LINE + yaml.safe_dump({"cases": [entry]}, sort_keys=False,
                                        default_flow_style=None, width=100)


def _keep(adapter: Adapter, device: Device, finding: Finding, out: Path,
          summary: Summary) -> None:
    text = case_text(finding, adapter.name, adapter.version())
    name = f"found-{adapter.name}-{finding.api.id}-{finding.digest}".lower().replace("_", "-")
    path = out / f"{name}.yaml"
    if path.exists():
        summary.already.append(path)  # found before: the file stays as it is
        return
    out.mkdir(parents=True, exist_ok=True)
    temporary = out / f".{name}.yaml.tmp"
    temporary.write_text(text, encoding="utf-8")
    why = _reproduces(adapter, device, finding, temporary)
    if why is not None:
        temporary.unlink()
        summary.not_reproduced.append(f"{name}: {why}")
        return
    try:  # never replace a file another process has just written
        with path.open("x", encoding="utf-8") as handle:
            handle.write(text)
        summary.written.append(path)
    except FileExistsError:
        summary.already.append(path)
    finally:
        temporary.unlink()


def _reproduces(adapter: Adapter, device: Device, finding: Finding, path: Path) -> str | None:
    """None when the case file at ``path`` loads and shows a discrepancy of the finding's
    signature again, else why not."""
    try:
        (case,) = load_file(path)
    except CaseError as error:
        return f"the case file does not validate: {error}"
    records = _run(adapter, finding.api, device, case, finding.drawn.dtype)
    again = {signature(finding.api, r, case, finding.drawn) for r in records}
    if finding.signature not in again:
        return "running it again showed no discrepancy of the same kind (not deterministic?)"
    return None


def _short(message: str, limit: int = 100) -> str:
    line = " ".join(message.split())
    return line if len(line) <= limit else line[:limit - 3] + "..."


def problems_per_second(summary: Summary) -> float:
    return summary.tried / summary.seconds if summary.seconds else math.nan
