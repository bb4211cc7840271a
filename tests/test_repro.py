"""conformance repro without a framework: the check the emitted scripts run (ULPs, bound,
special values) and the errors of the command.  The scripts themselves run on the real
frameworks in tests/frameworks/test_repro.py."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from conformance.cli import main
from conformance.judge import repro
from tests.report_samples import small_run, write_results


def check_namespace(dtype: str, **arrays: object) -> dict[str, object]:
    """The emitted script's check, with ``run`` and the data given."""
    namespace: dict[str, object] = {"np": np, "sys": __import__("sys"), "DTYPE": dtype,
                                    "QUANTITY": "output", "EXPECTS_ERROR": False, **arrays}
    exec(repro._CHECK.replace('if __name__ == "__main__":', "if False:"), namespace)
    return namespace


@pytest.mark.parametrize("dtype", ["float64", "float32", "float16", "bfloat16"])
def test_ordinals_count_the_values_of_the_dtype_between(dtype: str) -> None:
    ordinals = check_namespace(dtype)["ordinals"]
    numpy_type = {"float64": np.float64, "float32": np.float32, "float16": np.float16}
    if dtype == "bfloat16":  # 1 + 2**-7 is the next bfloat16 after 1
        one, after = 1.0, 1.0 + 2.0 ** -7
        largest, smallest = 3.3895313892515355e38, 2.0 ** -133
    else:
        kind = numpy_type[dtype]
        one, after = 1.0, float(np.nextafter(kind(1), kind(2)))
        largest, smallest = float(np.finfo(kind).max), float(np.finfo(kind).smallest_subnormal)
    values = np.array([one, after, 0.0, -0.0, smallest, -smallest, largest, -largest])
    o = ordinals(values)  # type: ignore[operator]
    assert o[1] - o[0] == 1
    assert o[2] == o[3] == 0  # +0 and -0 are one value
    assert o[4] == 1 and o[5] == -1
    assert o[6] - o[7] == 2 * o[6]  # far apart, no overflow (Python integers)
    if dtype == "float64":
        assert o[6] == 0x7FEFFFFFFFFFFFFF


def test_the_check_reports_persisting_and_fixed_discrepancies(
        capsys: pytest.CaptureFixture[str]) -> None:
    exact = np.array(["1.0", "nan"])
    rounded = np.array([1.0, math.nan])
    allowed = np.array([1e-7, 1e-7])

    def verdict(value: list[float]) -> int:
        space = check_namespace("float32", EXACT=exact, ROUNDED=rounded, ALLOWED=allowed,
                                run=lambda: (np.array(value), None))
        return space["main"]()  # type: ignore[operator,no-any-return]

    assert verdict([1.0, math.nan]) == 0
    assert "within the bound: fixed" in capsys.readouterr().out
    assert verdict([1.0 + 2 ** -20, math.nan]) == 1  # 8 ulp, past the bound
    out = capsys.readouterr().out
    assert "max 8 ulp of float32" in out and "the discrepancy persists" in out
    assert verdict([1.0, 0.0]) == 1  # a number where the exact value is NaN
    assert "special values differ at [[1]]" in capsys.readouterr().out


def test_repro_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    results = write_results(tmp_path / "r.jsonl", small_run())
    code = main(["repro", str(results), "--case", "no-such-case", "-o", str(tmp_path / "x.py")])
    assert code == 2
    assert "no record of case 'no-such-case'" in capsys.readouterr().err
    # the sample records name no case file that exists here
    code = main(["repro", str(results), "--case", "c-numeric", "-o", str(tmp_path / "x.py"),
                 "--cases-root", str(tmp_path)])
    assert code == 2
    assert "case file cannot be read" in capsys.readouterr().err
    assert not (tmp_path / "x.py").exists()
    assert main(["repro", str(results), "--case", "c-numeric", "-o", str(results)]) == 2
