"""Judgement: how far a framework's value is from the exact one, and the verdict.

Owns the comparison rules and the tolerance policy (``compare``), one case on one framework
API, device and dtype turned into records (``check``, the single place where a case, the
oracle, an adapter and the rules meet), and framework against framework after a run
(``pairwise``).

May import: ``conformance.adapters``, ``conformance.oracle``, ``conformance.results``,
``conformance.cases`` and ``reference``.
"""
