"""The HTML report: content built from a small results file, escaping, offline, the CLI, and
the page in a real headless browser (skipped when Chromium is absent)."""

from __future__ import annotations

import html
import importlib.util
import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from conformance.cases.options import OPTIONS
from conformance.cli import main
from conformance.report.assets import JS
from conformance.report.html import node_text
from conformance.report.page import write_report
from tests.report_samples import (
    ENV_A,
    TORCH_CE,
    TORCH_COMPOSED,
    adapter,
    environment,
    nodes,
    report_data,
    result,
    small_run,
    with_details,
    write_results,
)

ROOT = Path(__file__).resolve().parent.parent
HOSTILE_DESCRIPTION = '<script>alert("owned")</script> & <img src=x onerror=alert(1)>'
HOSTILE_MESSAGE = '"><svg onload=alert(2)>'

CASES_YAML = """\
defaults:
  source: test
  dtypes: [float32, float16]
cases:
  - id: c-pass
    op: cross_entropy
    input: [[0.5, 1.5, -1.0], [2.0, 0.0, 1.0]]
    target: [0, 2]
  - id: c-numeric
    op: cross_entropy
    input: [[0.5, 1.5, -1.0]]
    target: [1]
  - id: c-nan
    description: {description}
    op: cross_entropy
    input: [[1.0, -inf, 0.5]]
    target: [[0.5, 0.0, 0.5]]
  - id: c-raise
    op: cross_entropy
    input: [[1.0, 2.0]]
    target: [1]
  - id: c-smooth
    op: cross_entropy
    input: [[1.0, 2.0]]
    target: [1]
    label_smoothing: 0.1
"""


class Page(HTMLParser):
    """Elements of a page as (tag, attributes, text) with the text of their own subtree."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str], list[str]]] = []
        self._open: list[int] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, {k: v or "" for k, v in attrs}, []))
        if tag not in ("meta", "input", "br"):  # void elements; SVG ones end with "/>"
            self._open.append(len(self.elements) - 1)

    def handle_endtag(self, tag: str) -> None:
        while self._open:
            if self.elements[self._open.pop()][0] == tag:
                break

    def handle_data(self, data: str) -> None:
        for index in self._open:
            self.elements[index][2].append(data)

    def find(self, tag: str, **attrs: str) -> list[tuple[dict[str, str], str]]:
        return [(a, "".join(t)) for name, a, t in self.elements
                if name == tag and all(a.get(k.rstrip("_").replace("_", "-")) == v
                                       for k, v in attrs.items())]


@pytest.fixture
def report(tmp_path: Path) -> tuple[str, Page]:
    cases = tmp_path / "cases.yaml"
    cases.write_text(CASES_YAML.format(description=json.dumps(HOSTILE_DESCRIPTION)),
                     encoding="utf-8")
    lines = small_run(case_file=str(cases))
    lines.append(result("c-numeric", "fail", kind="numeric", api=TORCH_COMPOSED,
                        api_kind="composed", message=HOSTILE_MESSAGE, max_ulp_error=3.0,
                        case_file=str(cases)))
    results = write_results(tmp_path / "results.jsonl", lines)
    info = write_report([results], tmp_path / "out" / "report.html", cases_root=tmp_path)
    assert info.records == len(lines) - 2 and info.discrepancies == 4
    text = info.path.read_text(encoding="utf-8")
    return text, Page(text)


def test_header_names_the_environment(report: tuple[str, Page]) -> None:
    _, page = report
    environments = page.find("section", id="environments")[0][1]
    for expected in ("laptop", ENV_A, "CPython 3.11.7", "Linux-6.1-x86_64", "Example CPU 9000",
                     "torch 2.13.0+cpu", "cpu: Example CPU 9000", "2026-01-02T03:04:05+00:00",
                     "conformance run --out results.jsonl"):
        assert expected in environments, expected


def test_overview_cells_count_and_colour_by_worst_status(report: tuple[str, Page]) -> None:
    text, page = report
    cells = {(a["data-fw"], a["data-api"], a["data-group"]): (a["class"], text)
             for a, text in page.find("td") if "cell" in a.get("class", "").split()}
    assert cells[("torch 2.13.0+cpu", TORCH_CE, "seeds")] == ("cell s-pass", "2/2pass")
    assert cells[("torch 2.13.0+cpu", TORCH_CE, "edge-values")] == ("cell s-fail", "0/22 fail")
    assert cells[("torch 2.13.0+cpu", TORCH_CE, "invalid-inputs")] == ("cell s-error",
                                                                       "0/11 error")
    assert cells[("torch 2.13.0+cpu", TORCH_CE, "")] == ("cell s-fail", "2/52 fail")
    assert cells[("jax", "*", "seeds")] == ("cell s-skip", "0/11 skip")
    overview = Page(section(text, "overview"))
    assert [t for _, t in overview.find("th")][:6] == [
        "framework", "API", "seeds", "edge-values", "invalid-inputs", "all groups"]
    # the per-dtype counts the page's script uses to recompute a cell
    cell = next(a for a, _ in page.find("td") if a.get("data-group") == "edge-values"
                and a.get("data-api") == TORCH_CE)
    assert json.loads(cell["data-counts"]) == {"float32|cpu|" + ENV_A: [0, 1, 0, 0, 0],
                                               "float16|cpu|" + ENV_A: [0, 1, 0, 0, 0]}
    selects = {a["data-dim"]: [o for o, _ in Page(section(text, "overview")).find("option")]
               for a, _ in overview.find("select")}
    assert set(selects) == {"dtype", "device"}  # one environment: no environment selector
    options = [a["value"] for a, _ in overview.find("option")]
    assert options == ["", "float32", "float16", "", "cpu"]


def section(text: str, name: str) -> str:
    """The markup of one section of the page."""
    start = text.index(f'<section id="{name}">')
    return text[start:text.index("</section>", start)]


def test_accuracy_rows_plot_ulp_errors(report: tuple[str, Page]) -> None:
    _, page = report
    rows = [(a, text) for a, text in page.find("tr") if a.get("class") == "arow"]
    float32 = next(text for a, text in rows if a["data-dtype"] == "float32"
                   and TORCH_CE in text and "composed" not in text and "nll_loss" not in text)
    # c-pass output (0 ULP), c-pass grad (0.75) and the numeric fail (1342.5): median 0.75
    # records 3, fail 1, median 0.75, max 1.34e+03, worst case
    assert float32.endswith("3" "1" "0.75" "1.34e+03" "c-numeric (output)")
    bars = page.find("rect", **{"class": "bar-bad"})
    assert bars and any("(2^10, 2^11] ULP: 0 pass, 1 fail" in text for _, text in bars)
    # the special-value fail (its 0 ULP covers the other elements only) is not plotted
    assert not any(a["data-dtype"] == "float16" for a, _ in rows)


def test_support_matrix_from_adapter_lines(report: tuple[str, Page]) -> None:
    _, page = report
    support = page.find("section", id="support")[0][1]
    assert TORCH_CE in support and TORCH_COMPOSED in support
    cells = page.find("td", title="nll_loss has no label_smoothing argument")
    assert cells and cells[0][0]["class"] == "sup unsupported"
    assert page.find("td", **{"class": "sup composed"})
    assert "jax was skipped on laptop [aaaaaa]" in support


def test_support_matrix_has_a_labelled_column_for_every_declarable_option(
    report: tuple[str, Page],
) -> None:
    text, _ = report
    support = Page(section(text, "support"))
    headers = [t for _, t in support.find("th")]
    labels = ["index target", "prob. target", "weight", "ignore_index", "smoothing", "none",
              "mean", "sum", "K-dim"]
    assert len(labels) == len(OPTIONS)  # a new option needs a label here and in support.py
    assert headers[:3 + len(labels)] == ["framework", "API", "op", *labels]
    rows = [Page(markup).find("td") for markup in re.findall(r"<tr>.*?</tr>",
                                                              section(text, "support"))]
    index_cells = {cells[0][1]: cells[2] for cells in rows if cells}  # API, op, index target
    assert index_cells[TORCH_CE] == ({"class": "sup native"}, "native")
    assert index_cells[TORCH_COMPOSED] == ({"class": "sup composed"}, "composed")


def test_discrepancies_are_one_row_per_cause_worst_first(report: tuple[str, Page]) -> None:
    text, page = report
    groups = [a for a, _ in page.find("tr") if a.get("class") == "grow"]
    # a wrong NaN first, then the numeric fails (furthest past its bound first), the error last
    assert [(a["data-status"], a["data-kind"], a["data-api"]) for a in groups] == [
        ("|fail|", "|special-value|", f"|{TORCH_CE}|"),
        ("|fail|", "|numeric|", f"|{TORCH_CE}|"),
        ("|fail|", "|numeric|", f"|{TORCH_COMPOSED}|"),
        ("|error|", "|behaviour|", f"|{TORCH_CE}|")]
    first = groups[1]
    assert (first["data-fw"], first["data-dtype"], first["data-device"]) == (
        "|torch 2.13.0+cpu|", "|float32|", "|cpu|")
    cells = Page(section(text, "discrepancies")).find("td", data_sort="12.5")
    assert [t for _, t in cells] == ["12.5"]  # x bound
    data = report_data(text)  # what a row opens: built by the page's script from this
    rows = [a for a, _ in nodes(data["groups"][int(first["data-group-id"])], "tr",
                                class_="row")]
    assert [(a["data-status"], a["data-kind"]) for a in rows] == [("fail", "numeric")]
    assert nodes(data["groups"][int(first["data-group-id"])], "td", data_sort="12.5")
    detail = node_text(data["comparisons"][int(rows[0]["data-detail"])])
    assert "K=4 (policy)" in detail and "1.34e+03" in detail
    filters = {a["data-filter"] for a, _ in page.find("select") if "data-filter" in a}
    assert {"status", "fw", "kind", "dtype", "device", "api", "group"} <= filters


def test_unsupported_and_skipped_records_are_counted_per_api_and_reason(
        report: tuple[str, Page]) -> None:
    text, _ = report
    rows = [[t for _, t in Page(markup).find("td")]
            for markup in re.findall(r"<tr>.*?</tr>", section(text, "unsupported"))]
    assert [r for r in rows if r] == [
        ["torch 2.13.0+cpu", TORCH_COMPOSED, "unsupported",
         "nll_loss has no label_smoothing argument", "1", "1"],
        ["jax", "*", "skip", "jax is not installed (No module named 'jax')", "1", "1"]]
    assert 'data-status="unsupported"' not in section(text, "discrepancies")


def test_the_first_screen_counts_failing_cases_per_framework_and_group(
        report: tuple[str, Page]) -> None:
    text, _ = report
    grid = Page(section(text, "grid"))
    cells = {(a["data-fw"], a.get("data-group", a.get("data-dtype"))): (a["class"], t)
             for a, t in grid.find("td")}
    # edge-values: c-numeric (numeric) and c-nan (special-value): 2 cases, the worst a NaN
    assert cells[("torch 2.13.0+cpu", "edge-values")] == (
        "gcell s-fail w-special-value", "2special-value")
    assert cells[("torch 2.13.0+cpu", "invalid-inputs")] == (
        "gcell s-error w-behaviour", "1error: behaviour")
    # seeds: c-pass passes, but the composed API fails c-numeric there
    assert cells[("torch 2.13.0+cpu", "seeds")] == ("gcell s-fail w-numeric", "1numeric")
    assert cells[("torch 2.13.0+cpu", "")] == ("gcell s-fail w-special-value",
                                               "3special-value")
    assert cells[("torch 2.13.0+cpu", "float16")] == ("gcell s-fail w-special-value",
                                                      "1special-value")
    assert ("jax", "seeds") not in cells  # only skipped: it did not run
    # it is the first section of the page
    assert re.findall(r'<section id="(\w+)">', text)[0] == "grid"


def test_detail_shows_values_side_by_side_and_reproduction(report: tuple[str, Page]) -> None:
    text, _ = report
    data = report_data(text)
    row = next(a for a, _ in nodes(data["groups"], "tr", data_status="fail",
                                   data_kind="special-value"))
    detail = node_text(data["comparisons"][int(row["data-detail"])])
    case = node_text(data["cases"][int(row["data-case"])])
    assert "oracle (113 bits, rounded to float64)" in detail
    assert "0.25" in detail and "nan" in detail and "1 special-value mismatch(es)" in detail
    assert ("pytest 'CASES::c-nan[torch-cross_entropy-cpu-float16]' --conformance-framework "
            "torch").replace("CASES", row_case_file(case)) in detail
    assert "conformance run --cases repro.yaml --framework torch --dtype float16 --device cpu" \
        in detail
    assert "id: c-nan" in case and "target:" in case and "[[1.0, -inf, 0.5]]" in case


def row_case_file(case: str) -> str:
    match = re.search(r"# c-nan from (\S+):\d+", case)
    assert match, case
    return match.group(1)


def test_hostile_strings_are_escaped(report: tuple[str, Page]) -> None:
    text, page = report
    assert HOSTILE_DESCRIPTION not in text and "<img src=x" not in text
    assert HOSTILE_MESSAGE not in text and "<svg onload" not in text
    assert html.escape(HOSTILE_MESSAGE) in text  # shown, as text, in the cause's row
    scripts = page.find("script")
    assert len(scripts) == 1 and scripts[0][1] == JS  # only the report's own script
    assert text.count("<script") == 1
    # the description is text in the data the script builds the case block from (as text
    # nodes: the browser test below checks the page shows it and runs nothing of it)
    data = report_data(text)
    assert any(HOSTILE_DESCRIPTION in node_text(case) for case in data["cases"])
    assert {a.get("class", "") for a, _ in nodes(data, "code")} <= {""}


def test_page_is_self_contained(report: tuple[str, Page]) -> None:
    text, page = report
    assert not page.find("link") and not page.find("img") and not page.find("iframe")
    assert all(a["href"].startswith("#") for a, _ in page.find("a"))
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text)
    assert "@import" not in text and "url(" not in text


def test_missing_case_file_degrades_gracefully(tmp_path: Path) -> None:
    results = write_results(tmp_path / "r.jsonl", small_run(case_file="gone/cases.yaml"))
    text = with_details(write_report([results], tmp_path / "report.html").path.read_text(
        encoding="utf-8"))
    assert (f"could not load case file gone/cases.yaml: not found under the cases root "
            f"{Path.cwd()} when this report was built") in text
    assert "Values side by side" in with_details(text)  # the rest comes from the results


def test_malformed_results_line_names_file_and_line(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    results = tmp_path / "bad.jsonl"
    results.write_text(json.dumps(environment()) + "\n{not json\n" + json.dumps(result()) + "\n")
    with pytest.raises(ValueError, match=r"bad\.jsonl:2: not a JSON object"):
        write_report([results], tmp_path / "report.html")
    assert main(["report", str(results), "-o", str(tmp_path / "report.html")]) == 2
    assert "bad.jsonl:2" in capsys.readouterr().err


def test_cli_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    results = write_results(tmp_path / "r.jsonl", small_run())
    out = tmp_path / "report.html"
    assert main(["report", str(results), "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"report: {out}" in printed and "7 records, 3 discrepancies" in printed
    assert out.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


# --- the page in a real browser ---------------------------------------------------------------


def _screenshot_module() -> Any:
    spec = importlib.util.spec_from_file_location("screenshot_report",
                                                  ROOT / "scripts" / "screenshot_report.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_page_in_headless_chromium(report: tuple[str, Page], tmp_path: Path) -> None:
    shot = _screenshot_module()
    if shot.find_chromium() is None:
        pytest.skip("Chromium is not installed (apt-get install chromium, or set $CHROMIUM)")
    path = next(tmp_path.rglob("report.html"))
    with shot.ReportPage(path.as_uri()) as page:
        # the script ran: the table shows fail + error by default
        assert page.evaluate("document.getElementById('disc-count').textContent") \
            == "4 of 4 shown"
        # the overview cells (and the table) follow a dtype chosen in the page's selectors
        assert page.evaluate(shot.SELECT % ('"dtype"', '"float16"')) == 2
        cells = page.evaluate(
            "Array.prototype.map.call(document.querySelectorAll('#overview td.cell'), function"
            " (c) { return c.dataset.api + '/' + c.dataset.group + '=' + c.textContent; })")
        assert f"{TORCH_CE}/edge-values=0/11 fail" in cells
        assert f"{TORCH_CE}/seeds=–" in cells and "*/seeds=0/11 skip" in cells
        assert page.evaluate("document.getElementById('disc-count').textContent") \
            == "1 of 4 shown"
        assert page.evaluate(shot.OPEN_FIRST).startswith("rec-")
        detail = page.evaluate("document.querySelector('tr.detail').textContent")
        assert "oracle (113 bits" in detail and HOSTILE_DESCRIPTION in detail
        assert page.evaluate("document.scripts.length") == 1  # the description stayed text
        assert page.evaluate("document.querySelectorAll('tr.detail img').length") == 0
        assert all(url.startswith("file://") for url in page.requests), page.requests
        written = page.screenshot(tmp_path / "shot.png")
    assert written > 1000 and (tmp_path / "shot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_first_screen_and_causes_in_headless_chromium(report: tuple[str, Page],
                                                      tmp_path: Path) -> None:
    shot = _screenshot_module()
    if shot.find_chromium() is None:
        pytest.skip("Chromium is not installed (apt-get install chromium, or set $CHROMIUM)")
    path = next(tmp_path.rglob("report.html"))
    count = "document.getElementById('disc-count').textContent"
    with shot.ReportPage(path.as_uri()) as page:
        # one click on a cell of the first screen lists its cases: c-nan and c-numeric
        listed = page.evaluate(
            "(function () { document.querySelector('#grid td.gcell[data-group=\"edge-values\"]"
            "').click(); return Array.prototype.filter.call(document.querySelectorAll("
            "'#disc-table tr.grow'), function (r) { return !r.classList.contains('hidden'); })"
            ".map(function (r) { return r.querySelector('code').textContent; }); })()")
        assert listed == ["c-nan", "c-numeric"] and page.evaluate(count) == "2 of 4 shown"
        # the columns become dtypes
        shown = page.evaluate(
            "(function () { var s = document.getElementById('grid-columns'); s.value = 'dtype';"
            " s.dispatchEvent(new Event('change')); return Array.prototype.map.call("
            "document.querySelectorAll('#grid div[id^=\"grid-\"]'), function (d) {"
            " return d.id + ':' + d.classList.contains('hidden'); }); })()")
        assert shown == ["grid-group:true", "grid-dtype:false"]
        # a cause opens into its records, a record into its details, built from the data
        opened = page.evaluate(shot.OPEN_FIRST)
        assert opened.startswith("rec-")
        records = page.evaluate("document.querySelector('tr.gdetail').textContent")
        assert "returns nan where the exact value is 0.25" in records
        detail = page.evaluate("document.querySelector('tr.detail').textContent")
        assert "oracle (113 bits, rounded to float64)" in detail and "id: c-nan" in detail
        assert page.evaluate("document.querySelectorAll('tr.detail script, tr.detail img,"
                             " tr.gdetail [onerror], tr.gdetail [onload]').length") == 0


LONG = "wrap" * 1250  # 5,000 characters without a space


def test_long_unbroken_strings_wrap_within_the_window(tmp_path: Path) -> None:
    shot = _screenshot_module()
    if shot.find_chromium() is None:
        pytest.skip("Chromium is not installed (apt-get install chromium, or set $CHROMIUM)")
    lines = [environment(host="h" + LONG, command="conformance run " + LONG), adapter(),
             result("c-" + LONG, "fail", kind="numeric", message="m" + LONG, api="api" + LONG,
                    group="g" + LONG, device="d" + LONG, device_name="n" + LONG,
                    framework_version="v" + LONG, max_ulp_error=3.0,
                    tolerance={"k": 4, "scale": 1.0, "source": "s" + LONG}),
             result("c-pass", "fail", kind="numeric", message="m" + LONG, max_ulp_error=2.0)]
    results = write_results(tmp_path / "r.jsonl", lines)
    path = write_report([results], tmp_path / "report.html").path
    overflow = ("[document.documentElement.scrollWidth, document.documentElement.clientWidth,"
                " Array.prototype.filter.call(document.querySelectorAll('body *'), function"
                " (e) { return e.getBoundingClientRect().right > window.innerWidth + 1"
                " && !e.closest('pre, .scroll'); }).map(function (e) {"
                " return e.tagName + '.' + e.className; }).slice(0, 5)]")
    # and the long strings themselves wrapped (not merely scrolled in a box): every element
    # holding 1,000 or more characters of its own text is narrower than the window
    unwrapped = ("Array.prototype.filter.call(document.querySelectorAll('body *'), function (e)"
                 " { var own = Array.prototype.reduce.call(e.childNodes, function (n, c) {"
                 " return n + (c.nodeType === 3 ? c.textContent.length : 0); }, 0);"
                 " return own >= 1000 && !e.closest('pre, select') &&"
                 " e.getBoundingClientRect().width > window.innerWidth; }).map(function (e) {"
                 " return e.tagName + '.' + e.className; })")
    with shot.ReportPage(path.as_uri(), width=1280, height=900) as page:
        width, window, outside = page.evaluate(overflow)
        assert width <= window and not outside, (width, window, outside)
        assert page.evaluate(unwrapped) == []
        page.evaluate(shot.OPEN_FIRST)
        assert page.evaluate("document.querySelectorAll('tr.detail').length") == 1
        width, window, outside = page.evaluate(overflow)
        assert width <= window and not outside, (width, window, outside)
        assert page.evaluate(unwrapped) == []


def support_table(tmp_path: Path, declared: dict[str, Any]
                  ) -> tuple[list[str], dict[str, list[tuple[dict[str, str], str]]]]:
    """The report's support section for ``declared``: its header texts, and each row's cells
    by API name."""
    results = write_results(tmp_path / "r.jsonl", [environment(), declared,
                                                   *small_run()[2:]])
    text = write_report([results], tmp_path / "report.html").path.read_text(encoding="utf-8")
    headers = [t for _, t in Page(section(text, "support")).find("th")]
    rows = [Page(markup).find("td") for markup in re.findall(r"<tr>.*?</tr>",
                                                              section(text, "support"))]
    return headers, {cells[0][1]: cells for cells in rows if cells}


def test_support_matrix_marks_an_apis_own_definition_as_the_readme_does(
        tmp_path: Path) -> None:
    declared = adapter()
    declared["apis"][0]["semantics"] = {"reduction_mean": "divide_no_nan <own & definition>"}
    headers, by_api = support_table(tmp_path, declared)
    cells = by_api[TORCH_CE]
    mean = cells[headers.index("mean") - 1]  # the row's first th is the framework
    assert mean[1] == "native*"
    assert mean[0]["class"] == "sup native"
    assert mean[0]["title"] == (f"by {TORCH_CE}'s own definition: "
                                "divide_no_nan <own & definition>")
    assert cells[headers.index("sum") - 1][1] == "native"


def test_support_matrix_has_a_grad_column_that_gives_a_forward_only_apis_reason(
        tmp_path: Path) -> None:
    declared = adapter()
    declared["apis"][0]["no_grad"] = "the runtime computes values only"
    headers, by_api = support_table(tmp_path, declared)
    grad = headers.index("grad") - 1  # the row's first th is the framework
    assert headers[headers.index("K-dim") + 1] == "grad"
    assert by_api[TORCH_CE][grad] == ({"class": "sup unsupported",
                                       "title": "no gradient: the runtime computes values only"},
                                      "unsupported")
    assert by_api[TORCH_COMPOSED][grad] == ({"class": "sup composed"}, "composed")


def test_no_discrepancy_cell_spills_into_the_next(tmp_path: Path) -> None:
    """A long API name (torch's LinearCrossEntropyOptions configurations) wraps inside its
    cell instead of running over the case column beside it."""
    shot = _screenshot_module()
    if shot.find_chromium() is None:
        pytest.skip("Chromium is not installed (apt-get install chromium, or set $CHROMIUM)")
    api = ("torch.nn.functional.linear_cross_entropy(options=LinearCrossEntropyOptions("
           "acc_policy='accurate', acc_dtype=float32 for half inputs))")
    lines = [environment(), adapter(),
             *(result(f"c-{n}", "fail", kind="numeric", api=api, max_ulp_error=3.0,
                      message="m " * 40) for n in range(3))]
    path = write_report([write_results(tmp_path / "r.jsonl", lines)],
                        tmp_path / "report.html").path
    spilled = ("Array.prototype.filter.call(document.querySelectorAll('table.disc td'),"
               " function (td) { return td.scrollWidth > td.clientWidth + 1; })"
               ".map(function (td) { return td.className + ': ' + td.textContent; })")
    with shot.ReportPage(path.as_uri(), width=1400, height=900) as page:
        assert page.evaluate("document.querySelectorAll('table.disc td.api').length") > 0
        assert page.evaluate(spilled) == []
