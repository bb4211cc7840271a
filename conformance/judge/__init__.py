"""Judgement: how far a framework's value is from the exact one, and the verdict.

Owns the comparison rules and the tolerance policy (``compare``), one case on one framework
API, device and dtype turned into records (``check``, the single place where a case, the
oracle, an adapter and the rules meet), framework against framework after a run
(``pairwise``); for what a person reads (the report and the terminal summary, which both
import it): discrepancies grouped by cause, worst first (``grouping``), and how far off a
record is, in words (``wording``); and the oracle's values of whole cases written for users'
own tests (``references``, ``conformance oracle``); known discrepancies, matched and
drafted (``baseline``); one record as a standalone script for an upstream report (``repro``).

May import: ``conformance.adapters``, ``conformance.oracle``, ``conformance.results``,
``conformance.cases`` and ``reference``.
"""
