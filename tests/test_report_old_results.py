"""A results file written before the report was regrouped still makes a report.

``tests/data/results-10d363e.jsonl.gz`` holds 843 lines of the full audit of main at
10d363e (``cases/`` on torch 2.13, jax 0.10.2, TensorFlow 2.21 on the CPU), written by the
suite before issue 14's report: its environment and adapter lines, every record of four
cases (``edge-pos-inf-logit-ignored``, ``edge-one-class-unbatched``, ``large-vocab-32k``,
``edge-tiny-loss-margin-20``) and up to 12 records of each status, kind and framework.
"""

from __future__ import annotations

import gzip
import re
from pathlib import Path

from conformance.report.page import write_report
from tests.test_report import Page, section

OLD = Path(__file__).resolve().parent / "data" / "results-10d363e.jsonl.gz"


def test_an_older_results_file_makes_a_report(tmp_path: Path) -> None:
    results = tmp_path / "old.jsonl"
    results.write_bytes(gzip.decompress(OLD.read_bytes()))
    info = write_report([results], tmp_path / "report.html")
    # 4 header lines (1 environment, 3 adapters), then 839 result lines: all are records
    assert info.records == 839 and info.discrepancies == 181
    text = info.path.read_text(encoding="utf-8")
    assert "45 causes behind 181 records" in text
    assert "276 records did not run" in text
    grid = Page(section(text, "grid"))
    frameworks = {a["data-fw"] for a, _ in grid.find("td")}
    assert frameworks == {"torch 2.13.0+cpu", "jax 0.10.2 (jaxlib 0.10.2, optax 0.2.8)",
                          "tensorflow 2.21.0 (keras 3.15.1)", "reference mpmath 1.3.0"}
    # torch's NaN on an ignored +inf logit: one cause over four dtypes and the compiled twin
    row = next(Page(m) for m in re.findall(r'<tr id="grp-\d+".*?</tr>', text)
               if "edge-pos-inf-logit-ignored" in m and "torch 2.13" in m)
    cells = [t for _, t in row.find("td")]
    assert cells[2] == "torch.nn.functional.cross_entropyalso torch.compile(…)"
    assert cells[5:9] == ["float64 float32 float16 bfloat16", "cpu", "8",
                          "returns nan where the exact value is 0 (3 such elements)"]
    assert cells[9] == "–"  # a special value's figures cover only its other elements
