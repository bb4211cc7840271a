"""crossentropy-conformance: does a framework compute softmax cross-entropy the way the math says?

The pipeline, one folder a step; imports run one way, from the doors down to ``reference``
(``tests/test_layout.py`` guards it):

* the doors: ``cli`` (``conformance ...``), ``pytest_plugin`` (case files as pytest items) and
  this package's ``audit`` (``auditing``: a user's function audited from Python);
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

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from conformance.auditing import AuditResult

__version__ = "0.1.0"


def audit(function: Callable[..., Any], like: str,
          cases: Iterable[str | Path] = ("cases",), dtypes: Iterable[str] | None = None,
          devices: Iterable[str] | None = None, name: str | None = None,
          compare: bool = False) -> AuditResult:
    """Audit ``function``, called exactly as the API ``like`` is (a name of the API column of
    ``conformance support``), on the case files or folders ``cases``, in ``dtypes`` and on
    ``devices`` (default: all), in this process; returns the records and a summary
    (``conformance.auditing.AuditResult``: ``records``, ``counts``, ``passed``,
    ``summary()``).  ``compare=True`` also runs ``like`` itself beside it.  E.g. in a
    kernel's test suite::

        result = conformance.audit(my_cross_entropy, like="torch.nn.functional.cross_entropy",
                                   cases=["cases/edge"], dtypes=["float32", "bfloat16"])
        assert result.passed, result.summary()
    """
    from conformance.auditing import audit as run_audit  # the framework is imported there

    return run_audit(function, like, cases=cases, dtypes=dtypes, devices=devices, name=name,
                     compare=compare)
