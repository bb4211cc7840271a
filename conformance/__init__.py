"""crossentropy-conformance: does a framework compute softmax cross-entropy the way the math says?

The pipeline, one folder a step; imports run one way, from the doors down to ``reference``
(``tests/test_layout.py`` guards it):

* the doors: ``cli`` (``conformance ...``) and ``pytest_plugin`` (case files as pytest items);
* ``report``: the HTML page, from results files alone;
* ``run``: ``conformance run``'s runner, workers, summary and terminal progress;
* ``judge``: the comparison rules, the per-job check, framework against framework;
* ``adapters``: one module per framework, and the support matrix of their declarations;
* ``oracle``: the cache of the oracle's certified results;
* ``results``: records and the JSON Lines file, the only meeting point of running and reporting;
* ``cases``: case files, their schema, generators, options and the per-dtype problem;
* ``files``: opening a user's file as a regular file only (case files and results files);
* ``reference`` (beside this package, importing nothing from it): the mpmath oracle.
"""

__version__ = "0.1.0"
