"""Hand-written inline SVG for the report: histograms of ULP errors on a log2 axis.

Every row of the accuracy view gets a small histogram (``ulp_histogram``) of the per-record
maximum ULP errors, all on one shared axis (``UlpAxis``) so rows compare at a glance: an
``exactly 0`` bin at the left, then one bin per power of two, ``(2**(k-1), 2**k]``, and an
overflow bin ``> 2**hi`` that also holds infinite errors.  Bars of passing records are blue;
failing records stack in red on top.  Dashed guides mark 0.5 ULP (correct rounding) and
1 ULP; a black tick marks the median and a red one the maximum.

The functions return SVG markup; every text they embed passes through
``conformance.report.html.escape``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from conformance.report.html import Safe, escape

PLOT_WIDTH = 460
ROW_HEIGHT = 26
LOWEST_EXPONENT = -6  # the first power-of-two bin is (0, 2**-6]
HIGHEST_EXPONENT_CAP = 40


@dataclass(frozen=True)
class UlpAxis:
    """Bins shared by every histogram: ``zero``, ``2**lo .. 2**hi`` and an overflow bin."""

    hi: int  # the last power-of-two bin is (2**(hi-1), 2**hi]
    lo: int = LOWEST_EXPONENT

    @classmethod
    def covering(cls, errors: Sequence[float]) -> UlpAxis:
        """An axis reaching at least 16 ULPs and the largest finite error (capped)."""
        finite = [e for e in errors if math.isfinite(e) and e > 0]
        top = max(finite, default=1.0)
        return cls(hi=min(max(4, math.ceil(math.log2(top))), HIGHEST_EXPONENT_CAP))

    @property
    def bins(self) -> int:
        return 1 + (self.hi - self.lo + 1) + 1

    def bin_of(self, error: float) -> int:
        """0 for exactly 0, 1 for (0, 2**lo], ..., the last bin for > 2**hi or infinite."""
        if error <= 0:
            return 0
        if not math.isfinite(error) or error > 2.0**self.hi:
            return self.bins - 1
        exponent = max(self.lo, math.ceil(math.log2(error)))
        return 1 + exponent - self.lo

    def bin_label(self, index: int) -> str:
        if index == 0:
            return "exactly 0 ULP"
        if index == self.bins - 1:
            return f"> {_power(self.hi)} ULP"
        exponent = self.lo + index - 1
        low = "0" if exponent == self.lo else _power(exponent - 1)
        return f"({low}, {_power(exponent)}] ULP"

    def x(self, index: float) -> float:
        """Left edge of bin ``index`` (fractional indices interpolate)."""
        return index * PLOT_WIDTH / self.bins

    def x_of(self, error: float) -> float:
        """Where ``error`` sits: inside its bin, by its log2 position for power-of-two bins."""
        index = self.bin_of(error)
        if index in (0, self.bins - 1):
            return self.x(index + 0.5)
        exponent = math.log2(error)
        frac = min(1.0, max(0.0, exponent - (self.lo + index - 2)))
        return self.x(index + frac)


def _power(exponent: int) -> str:
    """``2**exponent`` for people: 1, 2, ..., 512, then 2^10, 2^11, ...; 2^-1 below 1."""
    if 0 <= exponent < 10:
        return str(2**exponent)
    return f"2^{exponent}"


def ulp_histogram(axis: UlpAxis, passed: Sequence[float], failed: Sequence[float],
                  label: str) -> Safe:
    """One row: counts of ``passed`` (blue) and ``failed`` (red) errors per bin of ``axis``."""
    ok, bad = [0] * axis.bins, [0] * axis.bins
    for e in passed:
        ok[axis.bin_of(e)] += 1
    for e in failed:
        bad[axis.bin_of(e)] += 1
    tallest = max((a + b for a, b in zip(ok, bad)), default=0) or 1
    width = axis.x(1) - 1
    usable = ROW_HEIGHT - 4
    parts = [_guides(axis)]
    for i in range(axis.bins):
        if not ok[i] + bad[i]:
            continue
        heights = [max(1.5, usable * n / tallest) if n else 0.0 for n in (ok[i], bad[i])]
        tip = f"{label}: {axis.bin_label(i)}: {ok[i]} pass, {bad[i]} fail"
        y = ROW_HEIGHT - 1.0
        for n, height, css in zip((ok[i], bad[i]), heights, ("bar-ok", "bar-bad")):
            if n:
                y -= height
                parts.append(f'<rect class="{css}" x="{axis.x(i) + 0.5:.1f}" y="{y:.1f}" '
                             f'width="{width:.1f}" height="{height:.1f}"><title>{escape(tip)}'
                             "</title></rect>")
    everything = sorted([*passed, *failed])
    if everything:
        parts.append(_marker(axis, _median(everything), "median", label))
        parts.append(_marker(axis, everything[-1], "max", label))
    return Safe(f'<svg class="hist" width="{PLOT_WIDTH}" height="{ROW_HEIGHT}" '
                f'viewBox="0 0 {PLOT_WIDTH} {ROW_HEIGHT}" role="img" '
                f'aria-label="{escape(label)}">' + "".join(parts) + "</svg>")


def _guides(axis: UlpAxis) -> str:
    lines = [f'<line class="baseline" x1="0" x2="{PLOT_WIDTH}" y1="{ROW_HEIGHT - 0.5}" '
             f'y2="{ROW_HEIGHT - 0.5}"/>']
    for error in (0.5, 1.0):
        x = axis.x(axis.bin_of(error) + 1)
        lines.append(f'<line class="guide" x1="{x:.1f}" x2="{x:.1f}" y1="0" y2="{ROW_HEIGHT}"/>')
    return "".join(lines)


def _marker(axis: UlpAxis, error: float, name: str, label: str) -> str:
    x = axis.x_of(error)
    css = "m-max" if name == "max" else "m-median"
    return (f'<path class="{css}" d="M{x - 3.5:.1f},0 L{x + 3.5:.1f},0 L{x:.1f},6 Z">'
            f"<title>{escape(f'{label}: {name} {format_ulp(error)} ULP')}</title></path>")


def _median(ordered: Sequence[float]) -> float:
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2


def median(values: Sequence[float]) -> float:
    """The median of ``values`` (NaN when empty)."""
    return _median(sorted(values)) if values else math.nan


def format_ulp(error: float | None) -> str:
    """An error in ULPs for people: 3 significant digits, ``inf``, or a dash when absent."""
    if error is None or (isinstance(error, float) and math.isnan(error)):
        return "–"
    if math.isinf(error):
        return "inf"
    if error == 0:
        return "0"
    return f"{error:.3g}"


def ulp_axis_svg(axis: UlpAxis) -> Safe:
    """The shared axis, drawn above the histograms: a label every few powers of two."""
    height = 30
    step = 2 * max(1, math.ceil(axis.bins * 30 / PLOT_WIDTH / 2))
    parts = []
    for i in range(axis.bins):
        if i == 0:
            text = "0"
        elif i == axis.bins - 1:
            text = f">{_power(axis.hi)}"
        elif (axis.lo + i - 1) % step == 0 and i < axis.bins - 2:
            text = _power(axis.lo + i - 1)
        else:
            continue
        x = axis.x(i + 0.5) if i in (0, axis.bins - 1) else axis.x(i + 1)
        parts.append(f'<text x="{x:.1f}" y="12" text-anchor="middle">{escape(text)}</text>'
                     f'<line class="tick" x1="{x:.1f}" x2="{x:.1f}" y1="16" y2="{height}"/>')
    return Safe(f'<svg class="axis" width="{PLOT_WIDTH}" height="{height}" '
                f'viewBox="0 0 {PLOT_WIDTH} {height}" role="img" aria-label="ULP axis, log2">'
                + "".join(parts) + "</svg>")
