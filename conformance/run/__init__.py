"""Running: ``conformance run`` as processes.

Owns the runner (``runner``: the oracle phase, the framework phase, resume, the results file's
lock), the worker processes that run one framework's jobs or fill the oracle cache
(``worker``), what a run counted (``summary``), what the terminal shows (``progress``) and
``--shard K/N`` (``shards``).

May import: ``conformance.judge`` and everything below it (``adapters``, ``oracle``,
``results``, ``cases``, ``reference``).
"""
