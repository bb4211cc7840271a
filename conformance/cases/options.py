"""The option vocabulary of cases: the names ``Case.options()`` gives and an adapter's
API declares it ``supports`` (``conformance.adapters.base.Api``)."""

# The option names a case can require (Case.options()) and an API can support.  A loss case
# needs "index_target" or "probability_target", so an API taking only one kind declares it.
OPTIONS = (
    "index_target", "probability_target", "weight", "ignore_index", "label_smoothing",
    "reduction_none", "reduction_mean", "reduction_sum", "k_dim",
)

# Options an API supports only where its adapter names them one by one (issue 20).  They are
# kept out of OPTIONS on purpose: an adapter that declares ``frozenset(OPTIONS)`` ("every
# option") was written before they existed and does not pass a class axis, sample weights
# or a class mask on, so a case using one is ``unsupported`` there (with a reason), never
# run with the key silently dropped.
#
# * k_dim_class_last: an (N, d1, ..., dk, C) input, classes last (axis: -1), in place of
#   k_dim: what class-last APIs take natively (Keras, tf.nn.sparse_*) and axis-taking APIs
#   take with their axis argument;
# * class_axis: any other class axis than the default one (1) and the last, e.g. axis 2 of
#   (N, d1, C, d2) (with k_dim);
# * sample_weight: one weight per example (row);
# * where: a boolean mask over the classes;
# * reduction_<name>: Keras' and TF v1's named reductions (reference/SPEC.md, Reductions).
NAMED_REDUCTIONS = ("sum_over_batch_size", "mean_with_sample_weight", "sum_by_nonzero_weights")
OPT_IN_OPTIONS = (
    "k_dim_class_last", "class_axis", "sample_weight", "where",
    *(f"reduction_{name}" for name in NAMED_REDUCTIONS),
)
ALL_OPTIONS = OPTIONS + OPT_IN_OPTIONS
