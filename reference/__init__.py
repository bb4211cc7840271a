"""The high-precision reference (oracle) for softmax cross-entropy and its family.

``reference.oracle.evaluate`` computes an op and its gradient in mpmath; ``reference.formats``
rounds exact values into float64/float32/float16/bfloat16 and measures units in the last
place.  The definitions are in ``reference/SPEC.md``; the docstring of ``reference/oracle.py``
lists the modules behind it, one job each.  This package owns the exact values and how they
are known to be right; it imports nothing from ``conformance`` (``tests/test_layout.py``).
"""

from reference.formats import DTYPES, FORMATS, FloatFormat, round_to_float, round_to_format, ulp
from reference.oracle import OPS, OracleDomainError, OracleResult, check_inputs, evaluate

__all__ = [
    "DTYPES", "FORMATS", "OPS", "FloatFormat", "OracleDomainError", "OracleResult", "check_inputs",
    "evaluate", "round_to_float", "round_to_format", "ulp",
]
