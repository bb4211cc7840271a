"""Cases: the suite's inputs and their language.

Owns the case files' schema (``schema.json``) and loading (``loading``: YAML with line numbers,
within limits, every error naming file, line and field), the seeded generators of large inputs
(``generate``), the option vocabulary (``options.OPTIONS``) that cases use and adapters
declare, a case made concrete for one dtype (``problem.Problem``, the numbers every framework
and the oracle are handed), and the library at a glance (``catalog``).

May import: ``reference`` only.
"""
