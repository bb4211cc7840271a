"""``conformance hunt``: property-based search for discrepancies nobody wrote a case for.

Owns the Hypothesis strategies of problems (``strategies.py``), the search loop, the
signature that tells two discrepancies apart and the minimal YAML case each one is written
as (``hunter.py``).  Runs problems through ``conformance.adapters`` and judges them with
``conformance.judge`` (as ``conformance run`` does), and reads ``conformance.cases`` to check
that what it writes loads and reproduces.  A run-level step beside ``conformance.run`` and
``conformance.report``, which it does not import; only the doors (``conformance.cli``)
import it.
"""
