"""Results: the only meeting point of running and reporting.

Owns the record (``records.Record`` and its JSON form), the environment line (``environment``),
the JSON Lines file written and read with its closed schema (``jsonl``, ``schema.json``,
checked by ``line_schema``), merging files from several runs (``merge``), the guard that
no output path names an input (``paths``), and records as JUnit XML (``junit``).

May import: ``reference`` only; every step above reads and writes records through it.
"""
