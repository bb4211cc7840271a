"""crossentropy-conformance: does a framework compute softmax cross-entropy the way the math says?

Data flows one way: case files (``conformance.cases``) -> the mpmath oracle (``reference``) and
the framework adapters (``conformance.adapters``) -> the comparison rules
(``conformance.compare``) -> result records (``conformance.results``) -> the report.
"""

__version__ = "0.1.0"
