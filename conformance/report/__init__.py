"""The report: one offline HTML page rebuilt from results files alone.

Owns the page (``page.write_report``), its sections (``support``, ``discrepancies``), the SVG
plots (``plots``), the inline styles and script (``assets``) and the escaping HTML builder
(``html``).

May import: ``conformance.results``, ``conformance.adapters`` (the support matrix),
``conformance.cases`` (a record's case, for its inputs and YAML) and ``reference``.
"""
