"""The report: one offline HTML page rebuilt from results files alone.

Owns the page (``page.write_report``; its sections in order in ``page.SECTIONS``), the
sections (``grid``, the first screen; ``discrepancies``; ``unsupported``; ``support``), the
SVG plots (``plots``), the inline styles and script (``assets``) and the escaping HTML
builder and its element trees for on-demand details (``html``).

May import: ``conformance.results``, ``conformance.adapters`` (the support matrix),
``conformance.cases`` (a record's case, for its inputs and YAML), ``conformance.judge`` (the
grouping by cause and the words for how far off) and ``reference``.
"""
