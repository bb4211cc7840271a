#!/usr/bin/env python
"""How big and how fast is the report of a full audit?  Prints Markdown (issue 14's figures).

    python benchmarks/report_scale.py RESULTS.jsonl [--report existing.html] [--runs 5]

Builds the report of ``RESULTS.jsonl`` with ``conformance.report.page.write_report`` (or
measures ``--report``, a page already written, e.g. by an older version), then opens it in
headless Chromium (``scripts/screenshot_report.py``'s ``ReportPage``: a fresh profile, the
DevTools protocol on a pipe, a 1400 x 1000 window) and measures, ``--runs`` times each:

* **size**: the file's bytes;
* **load**: a fresh browser navigating to the file, until its ``load`` event (the page's
  script runs at the end of the body, so this includes it), read from the page's own
  Navigation Timing (``loadEventEnd``, from the start of the navigation);
* **filter**: choosing a framework in the discrepancy table's framework filter, and then
  "all" again, each timed in the page from the ``change`` event until the layout that
  follows is done (``performance.now()`` around the dispatch and a forced reflow);
* **sort**: clicking a column title of the discrepancy table (the records column: numeric),
  timed the same way;
* **open**: opening the first discrepancy (``--open-first`` of the screenshot script; on a
  page of one row per record, a click on the first row);
* **page width**: ``scrollWidth`` of the page in the 1400 px window (fits if <= 1400), and
  how many elements reach past the window's right edge outside a box that scrolls itself,
  on load and with the first discrepancy open (fits if 0).

Medians and maxima are printed.  Both the old page (one row per record) and the new one
(one row per cause) have ``#disc-table`` and ``select[data-filter="fw"]``; the old one's row
class is ``row``, the new one's ``grow``.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TIME_FILTER = """(function (index) {
  var s = document.querySelector('#discrepancies select[data-filter="fw"]');
  var t0 = performance.now();
  s.selectedIndex = index;
  s.dispatchEvent(new Event('change'));
  void document.body.offsetHeight;
  var shown = document.querySelectorAll('#disc-table > tbody > tr:not(.hidden)').length;
  return [performance.now() - t0, shown, s.value];
})(%d)"""
TIME_SORT = """(function () {
  var ths = document.querySelectorAll('#disc-table > thead th');
  var th = Array.prototype.filter.call(ths, function (t) {
    return /^(records|max ULP)$/.test(t.textContent.trim()); })[0] || ths[ths.length - 2];
  var t0 = performance.now();
  th.click();
  void document.body.offsetHeight;
  return [performance.now() - t0, th.textContent];
})()"""
# the page before issue 14 had one row per record, opened by a click on it
OPEN_RECORD_ROW = """(function () {
  var row = document.querySelector('#disc-table tr.row:not(.hidden)');
  if (!row) { return null; }
  row.click();
  return row.id;
})()"""
LOAD = "performance.getEntriesByType('navigation')[0].loadEventEnd"
WIDTH = "[document.documentElement.scrollWidth, window.innerWidth]"
# elements reaching past the window's right edge that are not inside a box scrolling itself
OUTSIDE = ("Array.prototype.filter.call(document.querySelectorAll('body *'), function (e) {"
           " return e.getBoundingClientRect().right > window.innerWidth + 1"
           " && !e.closest('pre, .scroll'); }).length")


def _screenshot_module() -> Any:
    spec = importlib.util.spec_from_file_location("screenshot_report",
                                                  ROOT / "scripts" / "screenshot_report.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def measure(path: Path, runs: int) -> dict[str, Any]:
    """Size, load, filter and sort times (ms) and the page width of the report at ``path``."""
    shot = _screenshot_module()
    loads, filters, sorts, width, outside, opened = [], [], [], None, None, None
    for _ in range(runs):
        with shot.ReportPage(path.resolve().as_uri(), width=1400, height=1000,
                        timeout=300.0) as page:
            loads.append(float(page.evaluate(LOAD)))
            width = page.evaluate(WIDTH)
            outside = [page.evaluate(OUTSIDE)]
            options = page.evaluate("document.querySelector('#discrepancies select"
                                    "[data-filter=\"fw\"]').options.length")
            for index in [*range(1, options), 0]:
                filters.append(float(page.evaluate(TIME_FILTER % index)[0]))
            sorts.append(float(page.evaluate(TIME_SORT)[0]))
            sorts.append(float(page.evaluate(TIME_SORT)[0]))  # and back
            started = time.perf_counter()
            if page.evaluate(shot.OPEN_FIRST) is None:
                page.evaluate(OPEN_RECORD_ROW)
            opened = 1000 * (time.perf_counter() - started)  # over the protocol: an upper bound
            outside.append(page.evaluate(OUTSIDE))
    return {"size": path.stat().st_size, "load": loads, "filter": filters, "sort": sorts,
            "width": width, "outside": outside, "opened": opened}


def _ms(values: list[float]) -> str:
    return f"median {statistics.median(values):.0f} ms, max {max(values):.0f} ms " \
           f"({len(values)} runs)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path)
    parser.add_argument("--report", type=Path, help="measure this page instead of building one")
    parser.add_argument("--out", type=Path, default=Path("report-scale.html"),
                        help="where to write the report built (default: %(default)s)")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    built = ""
    path = args.report
    if path is None:
        from conformance.report.page import write_report

        started = time.perf_counter()
        info = write_report([args.results], args.out)
        built = (f"built in {time.perf_counter() - started:.1f} s from {info.records} records "
                 f"({info.discrepancies} discrepancies)")
        path = info.path
    load_1min = os.getloadavg()[0]  # before the browser adds its own
    figures = measure(path, args.runs)
    scroll, window = figures["width"]
    lines = [f"- report: `{path.name}`" + (f", {built}" if built else ""),
             f"- machine: load average {load_1min:.1f} over the minute before, on "
             f"{os.cpu_count()} CPUs (other work on it slows every figure below)",
             f"- size: {figures['size']:,} bytes ({figures['size'] / 2**20:.2f} MiB)",
             f"- load (navigation start to the end of `load`): {_ms(figures['load'])}",
             f"- filter by framework (change to layout): {_ms(figures['filter'])}",
             f"- sort by a numeric column (click to layout): {_ms(figures['sort'])}",
             f"- opening the first discrepancy (its records, then its first record's "
             f"details), timed from Python: {figures['opened']:.0f} ms",
             f"- page width in a {window} px window: {scroll} px; elements past its right edge "
             f"outside a scrolling box: {figures['outside'][0]} on load, "
             f"{figures['outside'][1]} with the first discrepancy open"]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
