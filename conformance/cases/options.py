"""The option vocabulary of cases: the names ``Case.options()`` gives and an adapter's
API declares it ``supports`` (``conformance.adapters.base.Api``)."""

# The option names a case can require (Case.options()) and an API can support.  A loss case
# needs "index_target" or "probability_target", so an API taking only one kind declares it.
OPTIONS = (
    "index_target", "probability_target", "weight", "ignore_index", "label_smoothing",
    "reduction_none", "reduction_mean", "reduction_sum", "k_dim",
)
