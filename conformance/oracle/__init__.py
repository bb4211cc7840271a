"""The oracle's results on disk: the cache of ``reference``'s certified values per case and dtype.

Owns ``cache``: entries keyed by a case's semantic content, the dtype and the oracle's version,
stored exactly with a digest of every array, read lazily as float64 views; an unwritable cache
costs the cache, not the run.

May import: ``conformance.cases`` and ``reference``.
"""
