"""The support matrix: each framework API x option (native / composed / unsupported), with the
dtypes and devices each framework declares.

It is built only from adapter declarations (``adapter_declaration``): from live adapters, each
loaded in its own process (``from_adapters``; a framework that is missing or fails to import
is listed as such and stops nothing), or from the ``adapter`` lines of results files
(``from_results``), so a report rebuilds the very matrix its records were run under.

A cell is ``native`` or ``composed`` (the API's kind) where the API supports the option,
with a ``*`` where the API declares that it follows its own definition for it
(``Api.semantics``, listed under the table), ``no`` where it does not support it (the
adapter's reason is listed too) and empty where the option does not apply to the op
(weights for softmax).  ``conformance support`` prints it
as Markdown (``--format json`` for the data).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from conformance.cases.options import ALL_OPTIONS, OPTIONS

_LAYOUT = frozenset({"k_dim", "k_dim_class_last", "class_axis"})
# Options that mean something for each op (a case of that op can require them).
APPLICABLE: dict[str, frozenset[str]] = {
    "softmax": _LAYOUT | {"where"},
    "log_softmax": _LAYOUT | {"where"},
    "nll_loss": frozenset(ALL_OPTIONS) - {"probability_target", "label_smoothing", "where"},
    "cross_entropy": frozenset(ALL_OPTIONS),
    "categorical_crossentropy_probs": frozenset(ALL_OPTIONS) - {"where"},
    "linear_cross_entropy": frozenset(OPTIONS) - {"k_dim"},  # (N, D) or (D,) inputs only
}
HEADERS = {
    "index_target": "index target", "probability_target": "prob. target", "weight": "weight",
    "ignore_index": "ignore_index", "label_smoothing": "smoothing", "reduction_none": "none",
    "reduction_mean": "mean", "reduction_sum": "sum", "k_dim": "K-dim",
    "k_dim_class_last": "K-dim, classes last", "class_axis": "other axis",
    "sample_weight": "sample weight", "where": "where",
    "reduction_sum_over_batch_size": "sum over batch size",
    "reduction_mean_with_sample_weight": "mean with sample weight",
    "reduction_sum_by_nonzero_weights": "sum by nonzero weights",
}
NOT_APPLICABLE, UNSUPPORTED = "", "no"


@dataclass(frozen=True)
class ApiSupport:
    """One API as declared: its options and why it lacks the others."""

    id: str
    name: str
    op: str
    kind: str
    supports: frozenset[str]
    reasons: dict[str, str] = field(default_factory=dict, hash=False, compare=False)
    semantics: dict[str, str] = field(default_factory=dict, hash=False, compare=False)
    no_grad: str = ""  # why the API has no gradient (forward-only runtimes)

    def grad_cell(self) -> str:
        """``no`` for a forward-only API, else its kind."""
        return UNSUPPORTED if self.no_grad else self.kind

    def cell(self, option: str) -> str:
        """``native`` / ``composed``, ``no``, or ``""`` where ``option`` does not apply (to
        the op, or ignore_index to an API without index targets: it never meets one)."""
        if option not in APPLICABLE.get(self.op, frozenset(ALL_OPTIONS)) or (
                option == "ignore_index" and "index_target" not in self.supports):
            return NOT_APPLICABLE
        if option not in self.supports:
            return UNSUPPORTED
        return self.kind + ("*" if option in self.semantics or "*" in self.semantics else "")

    def reason(self, option: str) -> str:
        return self.reasons.get(option, f"{self.name} does not support {option}")


@dataclass
class FrameworkSupport:
    """One framework (one version) as declared; ``unavailable`` says why none was loaded."""

    framework: str
    version: str = ""
    devices: list[dict[str, str]] = field(default_factory=list)
    dtypes: list[str] = field(default_factory=list)
    apis: list[ApiSupport] = field(default_factory=list)
    unavailable: str = ""


@dataclass
class SupportMatrix:
    frameworks: list[FrameworkSupport]

    def markdown(self, environment: bool = True, reasons: bool = True) -> str:
        """The matrix as a Markdown table and its legend; then (``environment``) each
        framework's version, dtypes and devices; then (``reasons``) why each API lacks what
        it lacks.  The table alone depends only on the adapters' code, not on the machine."""
        return "\n".join(_markdown(self, environment, reasons)) + "\n"

    def to_json(self) -> list[dict[str, Any]]:
        return [{**asdict(f), "apis": [{**asdict(a), "supports": sorted(a.supports)}
                                       for a in f.apis]} for f in self.frameworks]


def from_declarations(declarations: Iterable[dict[str, Any]]) -> SupportMatrix:
    """The matrix of adapter declarations (``adapter`` lines or ``adapter_declaration``
    results); several declarations of one framework version are united (APIs by name,
    devices by id), as a results file merged from several machines holds."""
    merged: dict[tuple[str, str], FrameworkSupport] = {}
    for declaration in declarations:
        key = (str(declaration.get("framework", "?")), str(declaration.get("version", "")))
        entry = merged.setdefault(key, FrameworkSupport(*key))
        _add(entry, declaration)
    return SupportMatrix(list(merged.values()))


def _add(entry: FrameworkSupport, declaration: dict[str, Any]) -> None:
    known_apis = {a.name for a in entry.apis}
    for api in declaration.get("apis", []):
        if api.get("name") not in known_apis:
            entry.apis.append(ApiSupport(
                id=str(api.get("id", "")), name=str(api.get("name", "")), op=str(api.get("op", "")),
                kind=str(api.get("kind", "native")), supports=frozenset(api.get("supports", [])),
                reasons=dict(api.get("reasons", {})),
                semantics=dict(api.get("semantics", {})), no_grad=str(api.get("no_grad", ""))))
    known_devices = {d.get("id") for d in entry.devices}
    entry.devices += [dict(d) for d in declaration.get("devices", [])
                      if d.get("id") not in known_devices]
    entry.dtypes += [d for d in declaration.get("dtypes", []) if d not in entry.dtypes]


def from_results(paths: Iterable[Path | str]) -> SupportMatrix:
    """The matrix of the ``adapter`` lines of results files."""
    from conformance.results.jsonl import read_results

    return from_declarations(read_results(paths).adapters)


def from_adapters(names: Iterable[str] | None = None) -> SupportMatrix:
    """The matrix of live adapters, each declared by its own subprocess (isolation: a
    framework that fails to import, or crashes on import, is listed as unavailable)."""
    from conformance.adapters import frameworks

    matrix = SupportMatrix([])
    for name in names or list(frameworks()):
        declaration, problem = _declare_in_subprocess(name)
        if declaration is None:
            matrix.frameworks.append(FrameworkSupport(name, unavailable=problem))
        else:
            matrix.frameworks += from_declarations([declaration]).frameworks
    return matrix


def _declare_in_subprocess(name: str) -> tuple[dict[str, Any] | None, str]:
    done = subprocess.run([sys.executable, "-m", "conformance.adapters.support", "--declare", name],
                          capture_output=True, text=True)
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        return None, f"crashed on import ({lines[-1] if lines else f'exit {done.returncode}'})"
    reply = json.loads(done.stdout.strip().splitlines()[-1])
    return reply.get("declaration"), reply.get("unavailable", "")


def _declare(name: str) -> dict[str, Any]:
    """What the ``--declare`` subprocess prints: the declaration, or why there is none."""
    from conformance.adapters import AdapterUnavailable, load_adapter
    from conformance.adapters.base import adapter_declaration

    try:
        return {"declaration": adapter_declaration(load_adapter(name))}
    except AdapterUnavailable as error:
        return {"unavailable": str(error)}


# --- Markdown ----------------------------------------------------------------------------------


_WRAPPED = re.compile(r"^([\w.]+)\((.+)\)$")


def compiled_twins(apis: list[ApiSupport]) -> dict[str, list[str]]:
    """API name -> the compilers (``jax.jit``, ``tf.function``, ``torch.compile``) that wrap
    it as separate APIs with the same op and options: ``W(name)`` where ``name`` is an API."""
    by_name = {api.name: api for api in apis}
    twins: dict[str, list[str]] = {}
    for api in apis:
        match = _WRAPPED.match(api.name)
        base = by_name.get(match.group(2)) if match else None
        if match and base and (base.op, base.supports) == (api.op, api.supports):
            twins.setdefault(base.name, []).append(match.group(1))
    return twins


def _shown(apis: list[ApiSupport]) -> list[tuple[ApiSupport, list[str]]]:
    """The APIs that get a row, with the compiled twins folded into it."""
    twins = compiled_twins(apis)
    folded = {f"{wrapper}({name})" for name, wrappers in twins.items() for wrapper in wrappers}
    return [(api, twins.get(api.name, [])) for api in apis if api.name not in folded]


def _markdown(matrix: SupportMatrix, environment: bool, reasons: bool) -> list[str]:
    columns = list(ALL_OPTIONS)
    lines = [
        "| framework | API | also as | op | " + " | ".join(HEADERS.get(o, o) for o in columns)
        + " | grad |",
        "| --- | --- | --- | --- | " + " | ".join("---" for _ in columns) + " | --- |",
    ]
    for framework in matrix.frameworks:
        for api, twins in _shown(framework.apis):
            also = ", ".join(f"`{w}(...)`" for w in twins)
            lines.append(f"| {framework.framework} | `{api.name}` | {also} | {api.op} | "
                         + " | ".join(api.cell(o) for o in columns) + f" | {api.grad_cell()} |")
    listed = "listed below" if reasons else "listed by `conformance support`"
    lines += ["", "`native`/`composed`: supported, by the API itself or by the glue its name "
              f"shows (`*`: by the framework's own definition, {listed}); `no`: unsupported "
              f"(the adapter's reason is {listed}); empty: does not apply."]
    if environment:
        lines.append("")
        lines += [_environment_line(framework) for framework in matrix.frameworks]
    if reasons:
        lines += ["", "Why an API lacks an option:", "", *_reason_lines(matrix)]
        definitions = _definition_lines(matrix)
        if definitions:
            lines += ["", "Where an API follows its own definition (`*`):", "", *definitions]
    return lines


def _definition_lines(matrix: SupportMatrix) -> list[str]:
    lines = []
    for framework in matrix.frameworks:
        for api, _ in _shown(framework.apis):
            lines += [f"* {framework.framework}: `{api.name}` ({option}): {definition}"
                      for option, definition in api.semantics.items()]
    return lines


def _environment_line(framework: FrameworkSupport) -> str:
    if framework.unavailable:
        return f"* **{framework.framework}**: not available ({framework.unavailable})"
    devices = ", ".join(f"{d.get('id')} ({d.get('name')})" for d in framework.devices)
    return (f"* **{framework.framework}** {framework.version}: dtypes "
            f"{', '.join(framework.dtypes)}; devices {devices}")


def _reason_lines(matrix: SupportMatrix) -> list[str]:
    """One line per (framework, reason), naming the APIs and options it explains."""
    grouped: dict[tuple[str, str], dict[str, list[str]]] = {}
    for framework in matrix.frameworks:
        for api, _ in _shown(framework.apis):
            for option in ALL_OPTIONS:
                if api.cell(option) == UNSUPPORTED:
                    apis = grouped.setdefault((framework.framework, api.reason(option)), {})
                    apis.setdefault(api.name, []).append(option)
    for framework in matrix.frameworks:
        for api, _ in _shown(framework.apis):
            if api.no_grad:
                apis = grouped.setdefault((framework.framework, api.no_grad), {})
                apis.setdefault(api.name, []).append("grad")
    lines = []
    for (name_of_framework, reason), apis in grouped.items():
        where = "; ".join(f"`{name}` ({', '.join(options)})" for name, options in apis.items())
        lines.append(f"* {name_of_framework}: {where}: {reason}")
    return lines


# --- the `conformance support` subcommand ----------------------------------------------------


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("support", help="print the support matrix (API x option, dtypes, devices)")
    p.add_argument("--framework", nargs="+", metavar="NAME",
                   help="only these frameworks (default: every known one)")
    p.add_argument("--results", nargs="+", type=Path, metavar="FILE",
                   help="rebuild the matrix from the adapter lines of these results files "
                        "instead of loading the frameworks (default: load them)")
    p.add_argument("--format", choices=("markdown", "json"), default="markdown",
                   help="markdown tables or the matrix as JSON")
    p.add_argument("--table-only", action="store_true",
                   help="only the table: no versions, dtypes, devices or reasons (the part "
                        "that depends on the adapters' code alone, as shown in README.md)")


def command(args: argparse.Namespace) -> int:
    matrix = from_results(args.results) if args.results else from_adapters(args.framework)
    if args.results and args.framework:
        matrix.frameworks = [f for f in matrix.frameworks if f.framework in args.framework]
    if args.format == "json":
        print(json.dumps(matrix.to_json(), indent=2))
    else:
        print(matrix.markdown(environment=not args.table_only, reasons=not args.table_only),
              end="")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m conformance.adapters.support --declare NAME``: one framework's declaration,
    as JSON."""
    parser = argparse.ArgumentParser(prog="python -m conformance.adapters.support")
    parser.add_argument("--declare", required=True, metavar="NAME")
    args = parser.parse_args(argv)
    print(json.dumps(_declare(args.declare)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
