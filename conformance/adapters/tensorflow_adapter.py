"""TensorFlow adapter: ``tf.nn`` and the Keras losses, eager and under ``tf.function``.

APIs (``apis()``; each also exists as a ``tf.function(...)`` twin, since a traced graph is
optimised by Grappler and may fuse or reorder what eager mode runs op by op):

* native ``tf.nn``: ``softmax``, ``log_softmax`` (``axis``), ``softmax_cross_entropy_with_logits``
  (probability targets, ``axis``) and ``sparse_softmax_cross_entropy_with_logits`` (index
  targets, class axis last only).  Both losses return one loss per example and have no class
  weights, no smoothing and no ignore_index; a label outside ``[0, C)`` raises on CPU and gives
  NaN on GPU (documented in ``tf.nn.sparse_softmax_cross_entropy_with_logits``).
* native Keras (``keras.losses``, Keras 3 on the TensorFlow backend):
  ``CategoricalCrossentropy(from_logits=True, label_smoothing, axis)`` and
  ``SparseCategoricalCrossentropy(from_logits=True, ignore_class)``.  Keras reduces by its own
  convention: reduction ``mean`` is Keras' default ``"sum_over_batch_size"`` (sum divided by
  the number of losses; with ``ignore_class`` the mask rescales it to the number of kept
  losses), ``sum`` and ``none`` are Keras' ``"sum"`` and ``None``.  Keras losses compute in
  ``keras.backend.floatx()`` (float32) unless given ``dtype``; the adapter passes the dtype
  under test, as a user who wants that precision must.
* composed: ``tf.nn`` losses with the glue a user writes (class weights, ``tf.gather``,
  an ignore mask, ``tf.reduce_mean``/``tf.reduce_sum``), and a class-weighted Keras
  ``SparseCategoricalCrossentropy`` through ``sample_weight`` and Keras'
  ``"mean_with_sample_weight"`` reduction; NLL written with ``tf.gather`` for ``nll_loss``.

Issue 20: ``axis`` reaches every API with an axis argument as it is; the class-last APIs
(``tf.nn.sparse_softmax_cross_entropy_with_logits``, Keras' ``SparseCategoricalCrossentropy``,
``tf.compat.v1.losses.sparse_softmax_cross_entropy``) take ``(N, d1, ..., dk, C)`` inputs
natively and no other layout; the composed sparse variant moves the class axis last (an exact
transpose, named in its API).  Keras' losses take ``sample_weight`` with Keras' reductions
(``sum_over_batch_size``, ``mean_with_sample_weight``), ``tf.compat.v1.losses`` with TF v1's
(``SUM_BY_NONZERO_WEIGHTS`` ...; it reduces in float32 whatever the dtype,
``compute_weighted_loss``).  ``categorical_crossentropy_probs`` (probabilities in) runs on
Keras' ``from_logits=False`` losses and on the plain ``-sum y log p``, whose differences are
declared ``semantic``.  No API here has ``where=``.

Gradients are ``tf.GradientTape`` gradients of the sum of the outputs (``reference/SPEC.md``).
``softmax_cross_entropy_with_logits`` documents its gradient (``softmax - labels``) as
incorrect unless each label row is a probability distribution; the APIs whose gradient is that
op's (its composed variant, Keras' ``CategoricalCrossentropy(from_logits=True)``) declare it
(``Api.semantics``, key ``grad:labels_not_a_distribution``), so such a gradient is recorded as
``semantic``, TensorFlow's own definition, not as a numeric failure.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable
from dataclasses import astuple
from typing import Any

import numpy as np

from conformance.adapters.base import Adapter, Api, Device, Outcome
from conformance.adapters.common import (
    AXES,
    NAMED,
    NLL_OPTIONS,
    NO_WHERE,
    PROBABILITY_OPTIONS,
    REDUCTIONS,
    UNREDUCED,
    Settings,
    one_line,
    settings_for,
    stand_in_roots,
    twin,
)
from conformance.cases.problem import Problem
from conformance.results.environment import cpu_name

NO_WEIGHTS = "tf.nn losses have no class-weight argument (see the composed variants)"
NO_SMOOTHING = "tf.nn losses have no label_smoothing argument (see the composed variant)"
NO_IGNORE = ("no ignore_index: a label outside [0, C) raises on CPU and gives NaN on GPU "
             "(see the composed variant)")
CLASS_LAST = "takes the class axis last and has no axis argument"
INDEX_FOR_PROBABILITY = ("takes probability labels shaped like the logits; index labels go to "
                         "tf.nn.sparse_softmax_cross_entropy_with_logits")
PROBABILITY_FOR_INDEX = ("takes index labels; probability labels go to "
                         "tf.nn.softmax_cross_entropy_with_logits")
KERAS_WEIGHTS = ("Keras losses take per-example sample_weight, not class weights; with the "
                 "default reduction sum_over_batch_size a weighted sum is divided by the number "
                 "of examples, not by the total weight (see the composed variant)")
KERAS_NO_SMOOTHING = "SparseCategoricalCrossentropy has no label_smoothing argument"
KERAS_AXIS = ("Keras' TensorFlow backend refuses it: 'Only axis=-1 is currently supported' "
              "(keras.src.backend.tensorflow.nn.sparse_categorical_crossentropy)")
NLL_NO_SMOOTHING = "NLL of one picked log-probability has no label smoothing"
# Keras' own definitions of its means (keras/src/losses/loss.py, Keras 3.15), each keyed to
# the data condition where it differs from reference/SPEC.md's (conformance/judge/check.py,
# CONDITIONS; ZERO_DIVISOR below): reduce_values returns a scalar loss unreduced, so the
# mean of an unbatched input is its weighted loss, not that divided by its weight; and the
# composed variant's class weights enter as sample weights (s * w[t]), so
# mean_with_sample_weight divides by sum s w[t], not by SPEC.md's sum s.  Everywhere else
# Keras' sum_over_batch_size (with ignore_class's mask) and mean_with_sample_weight are
# SPEC.md's: a discrepancy there (a NaN from 0 x NaN on a weight-0 row, a rounding) is not
# Keras' definition.
UNBATCHED_MEAN = "unbatched_mean"
KERAS_UNBATCHED_MEAN = ("Keras' reduce_values returns the loss of an unbatched input (a scalar) "
                        "unreduced: the row's loss times its sample weight, where the mean "
                        "divides that by its divisor")
CLASS_WEIGHTS_IN_SAMPLE_WEIGHT_MEAN = "class_weights_in_sample_weight_mean"
KERAS_CLASS_WEIGHTS_AS_SAMPLE_WEIGHTS = (
    "the class weights enter Keras as sample weights (s * w[t]), so mean_with_sample_weight "
    "divides by their total sum s w[t], not by the total sample weight sum s")
# tf.raw_ops.SoftmaxCrossEntropyWithLogits: "The caller must ensure that each batch of labels
# represents a valid probability distribution"; its gradient is softmax(x) - labels.
# tf.nn.softmax_cross_entropy_with_logits (TensorFlow 2.x API docs, Note): "All that is
# required is that each row of `labels` is a valid probability distribution. If they are
# not, the computation of the gradient will be incorrect."  The loss, -sum labels * log p,
# holds for any labels; the gradient of a row with sum A is A softmax(x) - labels, so a row
# that is not a distribution gets TensorFlow's declared gradient, not the oracle's.
# conformance/judge/check.py evaluates the condition on the case's labels.
LABELS_OFF_A_DISTRIBUTION = "grad:labels_not_a_distribution"
SOFTMAX_XENT_GRADIENT = ("tf.nn.softmax_cross_entropy_with_logits documents its gradient "
                         "(softmax - labels) as incorrect unless each row of labels is a "
                         "valid probability distribution")
# Keras: CategoricalCrossentropy "expect[s] labels to be provided in a one_hot
# representation"; on the TensorFlow backend from_logits=True calls
# tf.nn.softmax_cross_entropy_with_logits (keras/src/backend/tensorflow/nn.py,
# categorical_crossentropy), so its gradient is that op's.
KERAS_SOFTMAX_XENT_GRADIENT = ("Keras expects one-hot labels and, on the TensorFlow backend, "
                               "computes from_logits=True with "
                               "tf.nn.softmax_cross_entropy_with_logits, whose gradient "
                               "(softmax - labels) TensorFlow documents as incorrect unless "
                               "each row of labels is a valid probability distribution")
LABELS_MUST_SUM_TO_ONE = ("class weights would scale the labels off a probability distribution, "
                          "where TensorFlow documents the gradient (softmax - labels) as invalid; "
                          "see the tf.nn.log_softmax variant")

# Issue 20.  Keras' reductions (keras/src/losses/loss.py, reduce_values) divide with
# divide_no_nan: a zero divisor (no kept example, a zero total sample weight) gives 0.
ZERO_DIVISOR = "zero_divisor"
KERAS_NO_NAN_DIVISOR = ("Keras divides with divide_no_nan: a zero divisor (no kept example, "
                        "or sample weights that sum to 0) gives 0, not 0/0 = NaN or x/0 = inf")
AXIS = AXES
CLASSES_LAST = frozenset({"k_dim_class_last"})  # (N, d1, ..., dk, C): what class-last APIs take
KERAS_SAMPLE_WEIGHTS = frozenset({"sample_weight", "reduction_sum_over_batch_size",
                                  "reduction_mean_with_sample_weight"})
KERAS_NO_NONZERO = ("Keras has no SUM_BY_NONZERO_WEIGHTS reduction (TF v1's: see "
                    "tf.compat.v1.losses.sparse_softmax_cross_entropy)")
TF_NN_UNWEIGHTED = ("tf.nn losses return one loss per example: per-example weights and their "
                    "reductions are a user's glue (see the Keras losses and tf.compat.v1.losses)")
TF_NN_NO_SAMPLE_WEIGHT = {"sample_weight": TF_NN_UNWEIGHTED,
                          **{name: TF_NN_UNWEIGHTED for name in NAMED}}
V1_SPARSE = ("tf.compat.v1.losses.sparse_softmax_cross_entropy(t, x, weights=sample_weight, "
             "reduction=...)")
V1_REDUCTION = {"none": "none", "sum": "weighted_sum",
                "sum_over_batch_size": "weighted_sum_over_batch_size",
                "mean_with_sample_weight": "weighted_mean",
                "sum_by_nonzero_weights": "weighted_sum_by_nonzero_weights"}
V1_MEAN = ("TF v1's MEAN is the sample-weighted mean (case reduction "
           "mean_with_sample_weight), not torch's mean")
# categorical_crossentropy_probs (reference/SPEC.md): Keras' from_logits=False, and the
# plain -sum y log p a user writes, which neither renormalises nor clips.
PROBS_CLIPPED = "probs_clipped"
PLAIN_PROBS = ("-sum y log p as written: no renormalisation of p and no clip to "
               "[epsilon, 1 - epsilon] (Keras' from_logits=False does both)")
PLAIN_PROBS_GRAD = ("the gradient of -sum y log p is -y / p: it lacks the renormalisation's "
                    "term sum(y) / sum(p) that Keras' p / sum(p) adds, even where the row "
                    "sums to 1")
PROBS = "categorical_crossentropy_probs"
GLUE = "class weights, ignore mask, mean/sum"
KERAS_SPARSE = "keras.losses.SparseCategoricalCrossentropy(from_logits=True, dtype=x.dtype)"
EAGER_APIS: tuple[Api, ...] = (
    Api("softmax", "tf.nn.softmax", "softmax", frozenset({"k_dim"}) | AXIS,
        reasons={"where": NO_WHERE}, callee="tf.nn.softmax"),
    Api("log_softmax", "tf.nn.log_softmax", "log_softmax", frozenset({"k_dim"}) | AXIS,
        reasons={"where": NO_WHERE}, callee="tf.nn.log_softmax"),
    Api("softmax_cross_entropy_with_logits", "tf.nn.softmax_cross_entropy_with_logits",
        "cross_entropy", frozenset({"probability_target", "reduction_none", "k_dim"}) | AXIS,
        reasons={"index_target": INDEX_FOR_PROBABILITY, "weight": NO_WEIGHTS,
                 "label_smoothing": NO_SMOOTHING, "reduction_mean": UNREDUCED,
                 "reduction_sum": UNREDUCED, "where": NO_WHERE, **TF_NN_NO_SAMPLE_WEIGHT},
        semantics={LABELS_OFF_A_DISTRIBUTION: SOFTMAX_XENT_GRADIENT},
        callee="tf.nn.softmax_cross_entropy_with_logits"),
    Api("sparse_softmax_cross_entropy_with_logits",
        "tf.nn.sparse_softmax_cross_entropy_with_logits", "cross_entropy",
        frozenset({"index_target", "reduction_none"}) | CLASSES_LAST,
        reasons={"probability_target": PROBABILITY_FOR_INDEX, "weight": NO_WEIGHTS,
                 "ignore_index": NO_IGNORE, "label_smoothing": NO_SMOOTHING,
                 "reduction_mean": UNREDUCED, "reduction_sum": UNREDUCED, "k_dim": CLASS_LAST,
                 "class_axis": CLASS_LAST, "where": NO_WHERE, **TF_NN_NO_SAMPLE_WEIGHT},
        callee="tf.nn.sparse_softmax_cross_entropy_with_logits"),
    Api("softmax_cross_entropy_with_logits-composed",
        "tf.nn.softmax_cross_entropy_with_logits(smoothed y, x) + tf.reduce_mean/tf.reduce_sum",
        "cross_entropy", (PROBABILITY_OPTIONS - {"weight"}) | AXIS, kind="composed",
        reasons={"index_target": INDEX_FOR_PROBABILITY, "weight": LABELS_MUST_SUM_TO_ONE,
                 "where": NO_WHERE},
        # smoothing keeps a row's sum (y (1 - eps) + eps / C), so the rows it is given are
        # distributions exactly where the case's are
        semantics={LABELS_OFF_A_DISTRIBUTION: SOFTMAX_XENT_GRADIENT},
        callee="tf.nn.softmax_cross_entropy_with_logits"),
    Api("log_softmax-composed",
        "-tf.reduce_sum(w * smoothed y * tf.nn.log_softmax(x)) + tf.reduce_mean/tf.reduce_sum",
        "cross_entropy", PROBABILITY_OPTIONS | AXIS, kind="composed",
        reasons={"index_target": INDEX_FOR_PROBABILITY, "where": NO_WHERE},
        callee="tf.nn.log_softmax"),
    Api("sparse_softmax_cross_entropy_with_logits-composed",
        f"tf.nn.sparse_softmax_cross_entropy_with_logits (class axis moved last) + {GLUE}",
        "cross_entropy", NLL_OPTIONS | AXIS, kind="composed",
        reasons={"probability_target": PROBABILITY_FOR_INDEX,
                 "label_smoothing": NO_SMOOTHING, "where": NO_WHERE, **TF_NN_NO_SAMPLE_WEIGHT},
        callee="tf.nn.sparse_softmax_cross_entropy_with_logits"),
    Api("CategoricalCrossentropy",
        "keras.losses.CategoricalCrossentropy(from_logits=True, dtype=x.dtype)", "cross_entropy",
        frozenset({"probability_target", "label_smoothing", "k_dim"}) | REDUCTIONS | AXIS
        | KERAS_SAMPLE_WEIGHTS,
        reasons={"index_target": "takes probability (one-hot) labels; index labels go to "
                                 "SparseCategoricalCrossentropy",
                 "weight": KERAS_WEIGHTS, "where": NO_WHERE,
                 "reduction_sum_by_nonzero_weights": KERAS_NO_NONZERO},
        semantics={LABELS_OFF_A_DISTRIBUTION: KERAS_SOFTMAX_XENT_GRADIENT,
                   ZERO_DIVISOR: KERAS_NO_NAN_DIVISOR, UNBATCHED_MEAN: KERAS_UNBATCHED_MEAN},
        callee="keras.losses.CategoricalCrossentropy"),
    Api("SparseCategoricalCrossentropy", KERAS_SPARSE, "cross_entropy",
        frozenset({"index_target", "ignore_index"}) | REDUCTIONS | KERAS_SAMPLE_WEIGHTS
        | CLASSES_LAST,
        reasons={"probability_target": "takes index labels; probability labels go to "
                                       "CategoricalCrossentropy",
                 "weight": KERAS_WEIGHTS, "label_smoothing": KERAS_NO_SMOOTHING,
                 "k_dim": KERAS_AXIS, "class_axis": KERAS_AXIS, "where": NO_WHERE,
                 "reduction_sum_by_nonzero_weights": KERAS_NO_NONZERO},
        semantics={ZERO_DIVISOR: KERAS_NO_NAN_DIVISOR, UNBATCHED_MEAN: KERAS_UNBATCHED_MEAN},
        callee="keras.losses.SparseCategoricalCrossentropy"),
    Api("SparseCategoricalCrossentropy-sample_weight",
        f"{KERAS_SPARSE[:-1]}, reduction='mean_with_sample_weight')"
        "(t, x, sample_weight=tf.gather(w, t))",
        "cross_entropy", frozenset({"index_target", "weight", "ignore_index"}) | REDUCTIONS
        | KERAS_SAMPLE_WEIGHTS | CLASSES_LAST,
        kind="composed",
        reasons={"probability_target": "takes index labels", "label_smoothing": KERAS_NO_SMOOTHING,
                 "k_dim": KERAS_AXIS, "class_axis": KERAS_AXIS, "where": NO_WHERE,
                 "reduction_sum_by_nonzero_weights": KERAS_NO_NONZERO},
        semantics={ZERO_DIVISOR: KERAS_NO_NAN_DIVISOR, UNBATCHED_MEAN: KERAS_UNBATCHED_MEAN,
                   CLASS_WEIGHTS_IN_SAMPLE_WEIGHT_MEAN: KERAS_CLASS_WEIGHTS_AS_SAMPLE_WEIGHTS},
        callee="keras.losses.SparseCategoricalCrossentropy"),
    Api("nll", f"NLL(logp, t) via tf.gather + {GLUE}", "nll_loss", NLL_OPTIONS | AXIS,
        kind="composed", reasons={"label_smoothing": NLL_NO_SMOOTHING}),
    # issue 20: TF v1's weighted losses, with SUM_BY_NONZERO_WEIGHTS (its default)
    Api("v1-sparse_softmax_cross_entropy", V1_SPARSE, "cross_entropy",
        frozenset({"index_target", "reduction_none", "reduction_sum", "sample_weight",
                   "reduction_sum_over_batch_size", "reduction_mean_with_sample_weight",
                   "reduction_sum_by_nonzero_weights"}) | CLASSES_LAST,
        reasons={"probability_target": PROBABILITY_FOR_INDEX, "weight": NO_WEIGHTS,
                 "ignore_index": NO_IGNORE, "label_smoothing": NO_SMOOTHING,
                 "reduction_mean": V1_MEAN, "k_dim": CLASS_LAST, "class_axis": CLASS_LAST,
                 "where": NO_WHERE},
        semantics={ZERO_DIVISOR: "tf.compat.v1.losses divides with div_no_nan (_safe_mean): "
                                 "a zero divisor gives 0"}),
    # issue 20: probabilities (from_logits=False), op categorical_crossentropy_probs
    Api("CategoricalCrossentropy-probs",
        "keras.losses.CategoricalCrossentropy(from_logits=False, dtype=x.dtype)", PROBS,
        frozenset({"probability_target", "label_smoothing", "k_dim"}) | REDUCTIONS | AXIS
        | KERAS_SAMPLE_WEIGHTS,
        reasons={"index_target": "takes probability (one-hot) labels; index labels go to "
                                 "SparseCategoricalCrossentropy",
                 "weight": KERAS_WEIGHTS, "reduction_sum_by_nonzero_weights": KERAS_NO_NONZERO},
        semantics={ZERO_DIVISOR: KERAS_NO_NAN_DIVISOR, UNBATCHED_MEAN: KERAS_UNBATCHED_MEAN}),
    Api("SparseCategoricalCrossentropy-probs",
        "keras.losses.SparseCategoricalCrossentropy(from_logits=False, dtype=x.dtype)", PROBS,
        frozenset({"index_target", "ignore_index"}) | REDUCTIONS | KERAS_SAMPLE_WEIGHTS
        | CLASSES_LAST,
        reasons={"probability_target": "takes index labels", "weight": KERAS_WEIGHTS,
                 "label_smoothing": KERAS_NO_SMOOTHING, "k_dim": KERAS_AXIS,
                 "class_axis": KERAS_AXIS,
                 "reduction_sum_by_nonzero_weights": KERAS_NO_NONZERO},
        semantics={ZERO_DIVISOR: KERAS_NO_NAN_DIVISOR, UNBATCHED_MEAN: KERAS_UNBATCHED_MEAN}),
    Api("categorical_crossentropy-probs", "keras.losses.categorical_crossentropy(y, p)", PROBS,
        frozenset({"probability_target", "label_smoothing", "reduction_none", "k_dim"}) | AXIS,
        reasons={"index_target": "takes probability labels", "weight": KERAS_WEIGHTS,
                 "reduction_mean": UNREDUCED, "reduction_sum": UNREDUCED}),
    Api("plain-probs", "-tf.reduce_sum(y * tf.math.log(p)) + tf.reduce_mean/tf.reduce_sum",
        PROBS, frozenset({"probability_target", "k_dim"}) | REDUCTIONS | AXIS, kind="composed",
        reasons={"index_target": "takes probability labels", "weight": "not written here",
                 "label_smoothing": "not written here"},
        semantics={PROBS_CLIPPED: PLAIN_PROBS, "grad:*": PLAIN_PROBS_GRAD}),
)
# linear_cross_entropy: the composed losses above on logits tf.matmul(x, W, transpose_b=True)
# + b (tf.linalg.matvec for a (D,) input), materialised in the dtype; TensorFlow and Keras
# have no fused linear cross-entropy.
LINEAR_OP = "linear_cross_entropy"
LINEAR = "tf.matmul(x, W, transpose_b=True) + b"
LINEAR_APIS = (
    Api("sparse_softmax_cross_entropy_with_logits-linear",
        f"tf.nn.sparse_softmax_cross_entropy_with_logits(t, {LINEAR}) + {GLUE}",
        LINEAR_OP, NLL_OPTIONS - {"k_dim"}, kind="composed", materialises_logits=True,
        reasons={"probability_target": PROBABILITY_FOR_INDEX, "label_smoothing": NO_SMOOTHING}),
    Api("SparseCategoricalCrossentropy-linear", f"{KERAS_SPARSE}(t, {LINEAR})", LINEAR_OP,
        frozenset({"index_target", "ignore_index"}) | REDUCTIONS, kind="composed",
        materialises_logits=True,
        reasons={"probability_target": "takes index labels; probability labels go to "
                                       "CategoricalCrossentropy",
                 "weight": KERAS_WEIGHTS, "label_smoothing": KERAS_NO_SMOOTHING},
        semantics={ZERO_DIVISOR: KERAS_NO_NAN_DIVISOR}),
)
EAGER_APIS = EAGER_APIS + LINEAR_APIS
FUNCTION_PREFIX = "function"
APIS = EAGER_APIS + tuple(twin(api, FUNCTION_PREFIX, "tf.function") for api in EAGER_APIS)
DTYPES = ("float64", "float32", "float16", "bfloat16")
KERAS_REDUCTION = {"none": None, "sum": "sum", "mean": "sum_over_batch_size",
                   "sum_over_batch_size": "sum_over_batch_size",
                   "mean_with_sample_weight": "mean_with_sample_weight"}

Recipe = Callable[..., Any]  # f(x, target, weight, settings, extra=(sample_weight, where))


class TensorFlowAdapter(Adapter):
    name = "tensorflow"

    def __init__(self) -> None:
        # TensorFlow's C++ logging prints a warning per refused op; keep the user's setting.
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import keras
        import tensorflow as tf

        self.tf, self.keras = tf, keras
        _one_op_at_a_time(tf)
        _quiet_retracing_warnings()
        self._recipes = _recipes(tf, keras)
        # One tf.function per API (forward, and forward+grad), built once per process; it
        # traces once per input signature and Settings.
        self._functions: dict[tuple[str, bool], Callable[..., Any]] = {}
        self._devices = _discover(tf)

    def version(self) -> str:
        return f"{self.tf.__version__} (keras {self.keras.__version__})"

    def apis(self) -> tuple[Api, ...]:
        return APIS

    def dtypes(self) -> tuple[str, ...]:
        return DTYPES

    def devices(self) -> tuple[Device, ...]:
        return tuple(device for device, _ in self._devices)

    def build(self) -> dict[str, str | None]:
        return tensorflow_build(self.tf)

    def stand_in(self, like: Api, api: Api,
                 replacement: Callable[[Any], Callable[..., Any]]) -> None:
        """``api`` runs ``like``'s recipe eagerly (no ``tf.function``), ``like.callee``
        replaced."""
        roots = stand_in_roots({"tf": self.tf, "keras": self.keras}, like.callee, replacement)
        self._recipes[api.id] = _recipes(roots["tf"], roots["keras"])[like.id]

    def run(self, api: Api, problem: Problem, device: Device) -> Outcome:
        tf = self.tf
        if api.id.removeprefix(FUNCTION_PREFIX + "-").startswith(("Categorical", "Sparse")):
            backend = self.keras.backend.backend()
            if backend != "tensorflow":
                return Outcome("unsupported", error_type="KerasBackend",
                               message=f"Keras runs on {backend!r} (KERAS_BACKEND), not TensorFlow")
        try:
            with tf.device(dict(self._devices)[device]):
                return self._run(api, problem)
        except Exception as error:  # the framework's own verdict on the inputs
            status = "unsupported" if _is_dtype_refusal(error) else "error"
            return Outcome(status, error_type=type(error).__name__, message=one_line(str(error)))

    def _run(self, api: Api, problem: Problem) -> Outcome:
        tf = self.tf
        dtype = getattr(tf, problem.dtype)
        # Through float64: the values are exact in the dtype, so the cast is exact.
        x = tf.cast(tf.constant(problem.input, dtype=tf.float64), dtype)
        target = weight = None
        if problem.target is not None:
            target = (tf.constant(problem.target, dtype=tf.int64) if problem.index_target
                      else tf.cast(tf.constant(problem.target, dtype=tf.float64), dtype))
        if problem.weight is not None:
            weight = tf.cast(tf.constant(problem.weight, dtype=tf.float64), dtype)
        settings = settings_for(problem)
        if problem.case.op == LINEAR_OP:
            return self._run_linear(api, problem, dtype, x, target, weight, settings)
        # issue 20: per-example weights (the where mask is never run here: NO_WHERE)
        extra = (None if problem.sample_weight is None
                 else tf.cast(tf.constant(problem.sample_weight, dtype=tf.float64), dtype), None)
        if not problem.case.grad:
            out = self._function(api, grad=False)(x, target, weight, settings, extra)
            return Outcome("ok", _numpy(tf, out))
        out, grad = self._function(api, grad=True)(x, target, weight, settings, extra)
        return Outcome("ok", _numpy(tf, out),
                       np.zeros(problem.input.shape) if grad is None else _numpy(tf, grad))

    def _run_linear(self, api: Api, problem: Problem, dtype: Any, x: Any, target: Any,
                    weight: Any, settings: Settings) -> Outcome:
        """A linear_cross_entropy recipe on ``(x, W, b)``; with the gradients of the sum of
        its outputs with respect to all three (one ``tf.GradientTape``)."""
        tf = self.tf

        def constant(values: Any) -> Any:
            return tf.cast(tf.constant(values, dtype=tf.float64), dtype)

        params: tuple[Any, ...] = (x, constant(problem.linear_weight))
        if problem.linear_bias is not None:
            params += (constant(problem.linear_bias),)
        function = self._function(api, grad=problem.case.grad)
        if not problem.case.grad:
            return Outcome("ok", _numpy(tf, function(params, target, weight, settings)))
        out, grads = function(params, target, weight, settings)
        dense = [np.zeros(np.shape(p)) if g is None else _numpy(tf, g)
                 for p, g in zip(params, grads)]
        named = {"grad_linear_weight": dense[1]}
        if len(dense) == 3:
            named["grad_linear_bias"] = dense[2]
        return Outcome("ok", _numpy(tf, out), dense[0], grads=named)

    def _function(self, api: Api, grad: bool) -> Callable[..., Any]:
        """The callable for ``api``: eager, or its ``tf.function`` twin (built once)."""
        traced = api.id.startswith(FUNCTION_PREFIX + "-")
        base_id = api.id.removeprefix(FUNCTION_PREFIX + "-")
        recipe = self._recipes[base_id]
        with_grad = _with_linear_grad if base_id in LINEAR_IDS else _with_grad
        function = with_grad(self.tf, recipe) if grad else recipe
        if not traced:
            return function
        key = (base_id, grad)
        if key not in self._functions:
            self._functions[key] = _traced(self.tf, function)
        return self._functions[key]


def _traced(tf: Any, function: Callable[..., Any]) -> Callable[..., Any]:
    """``tf.function(function)``, tracing once per shape, dtype and Settings value.

    Settings cross the boundary as a tuple: tf.function keys a tuple of Python scalars by
    value but an arbitrary object by identity (one trace per call).  No reduce_retracing:
    it relaxes shapes up to an unknown rank, where ``tf.nn.softmax(x, axis=1)`` fails while
    tracing ("unsupported operand type(s) for -: 'NoneType' and 'int'"), an error of our
    harness, not of the call a user writes with a concrete shape.
    """

    def body(x: Any, target: Any, weight: Any, key: tuple[Any, ...], extra: Any) -> Any:
        return function(x, target, weight, Settings(*key), extra)

    traced = tf.function(body)
    return lambda x, target, weight, settings, extra=(None, None): traced(
        x, target, weight, astuple(settings), extra)


def _with_grad(tf: Any, recipe: Recipe) -> Callable[..., Any]:
    """The outputs and, by ``tf.GradientTape``, the gradient of their sum (SPEC.md)."""

    def forward_and_grad(x: Any, target: Any, weight: Any, settings: Settings,
                         extra: Any = (None, None)) -> Any:
        with tf.GradientTape() as tape:
            tape.watch(x)
            out = recipe(x, target, weight, settings, extra)
        grad = tape.gradient(out, x, output_gradients=tf.ones_like(out))
        # tf.gather's gradient is sparse (IndexedSlices); densify it for comparison.
        return out, None if grad is None else tf.convert_to_tensor(grad)

    return forward_and_grad


LINEAR_IDS = frozenset(api.id for api in LINEAR_APIS)


def _with_linear_grad(tf: Any, recipe: Recipe) -> Callable[..., Any]:
    """The outputs and the gradients of their sum w.r.t. each of ``params`` (x, W[, b])."""

    def forward_and_grad(params: Any, target: Any, weight: Any, settings: Settings,
                         extra: Any = None) -> Any:
        with tf.GradientTape() as tape:
            for p in params:
                tape.watch(p)
            out = recipe(params, target, weight, settings)
        grads = tape.gradient(out, list(params), output_gradients=tf.ones_like(out))
        return out, [None if g is None else tf.convert_to_tensor(g) for g in grads]

    return forward_and_grad


def _recipes(tf: Any, keras: Any) -> dict[str, Recipe]:
    """What each API computes, as ``f(x, target, weight, settings)``."""

    def class_last(x: Any, s: Settings) -> Any:
        """The class axis moved last ((N, C, d1, ..., dk) -> (N, d1, ..., dk, C)): an exact
        layout move, no arithmetic."""
        rank = x.shape.rank
        if s.axis == rank - 1:
            return x
        return tf.transpose(x, [*(i for i in range(rank) if i != s.axis), s.axis])

    def reduce_rows(rows: Any, target: Any, weight: Any, s: Settings) -> Any:
        """A user's weighted, masked reduction of per-example losses (SPEC.md, Reduction).
        Without weights or ignored targets it is plain tf.reduce_mean/tf.reduce_sum."""
        if not (s.weighted or s.ignoring):
            return rows if s.reduction == "none" else _reduce(tf, rows, s.reduction)
        keep = tf.not_equal(target, s.ignore_index)
        safe = tf.where(keep, target, tf.zeros_like(target))
        kept = tf.gather(weight, safe) if s.weighted else tf.ones_like(rows)
        weights = tf.where(keep, kept, tf.zeros_like(rows))
        # where, not a product: an ignored row's loss may be NaN and must not leak in.
        losses = tf.where(keep, rows * weights, tf.zeros_like(rows))
        if s.reduction == "none":
            return losses
        total = tf.reduce_sum(losses)
        return total if s.reduction == "sum" else total / tf.reduce_sum(weights)

    def safe_labels(t: Any, s: Settings) -> Any:
        return tf.where(tf.not_equal(t, s.ignore_index), t, tf.zeros_like(t)) if s.ignoring else t

    def picked(logp: Any, t: Any, s: Settings) -> Any:
        """-logp[t] along the class axis (ignored targets pick class 0, masked later)."""
        last = class_last(logp, s)
        index = tf.expand_dims(safe_labels(t, s), -1)
        return -tf.squeeze(tf.gather(last, index, batch_dims=last.shape.rank - 1), -1)

    def smoothed(y: Any, s: Settings) -> Any:
        """torch's and Keras' smoothing: y (1 - eps) + eps / C."""
        if not s.label_smoothing:
            return y
        return y * (1 - s.label_smoothing) + s.label_smoothing / s.classes

    def probability_composed(x: Any, y: Any, w: Any, s: Settings, e: Any = None) -> Any:
        rows = tf.nn.softmax_cross_entropy_with_logits(labels=smoothed(y, s), logits=x, axis=s.axis)
        return rows if s.reduction == "none" else _reduce(tf, rows, s.reduction)

    def log_softmax_composed(x: Any, y: Any, w: Any, s: Settings, e: Any = None) -> Any:
        labels = smoothed(y, s)
        if s.weighted:
            labels = labels * tf.reshape(w, [s.classes if i == s.axis else 1
                                             for i in range(x.shape.rank)])
        rows = -tf.reduce_sum(labels * tf.nn.log_softmax(x, axis=s.axis), axis=s.axis)
        return rows if s.reduction == "none" else _reduce(tf, rows, s.reduction)

    def sparse_composed(x: Any, t: Any, w: Any, s: Settings, e: Any = None) -> Any:
        rows = tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=safe_labels(t, s), logits=class_last(x, s))
        return reduce_rows(rows, t, w, s)

    def sample_weight_of(extra: Any) -> Any:
        return None if extra is None else extra[0]

    def keras_categorical(x: Any, y: Any, w: Any, s: Settings, e: Any = None,
                          from_logits: bool = True) -> Any:
        loss = keras.losses.CategoricalCrossentropy(
            from_logits=from_logits, label_smoothing=s.label_smoothing, axis=s.axis,
            reduction=KERAS_REDUCTION[s.reduction], dtype=x.dtype.name)
        return loss(y, x, sample_weight=sample_weight_of(e))

    def keras_sparse(x: Any, t: Any, w: Any, s: Settings, e: Any = None,
                     from_logits: bool = True) -> Any:
        # ignore_class only where a target is ignored, as a user who needs it passes it.
        loss = keras.losses.SparseCategoricalCrossentropy(
            from_logits=from_logits, ignore_class=s.ignore_index if s.ignoring else None,
            reduction=KERAS_REDUCTION[s.reduction], dtype=x.dtype.name)
        return loss(t, x, sample_weight=sample_weight_of(e))

    def keras_sample_weight(x: Any, t: Any, w: Any, s: Settings, e: Any = None) -> Any:
        reduction = ("mean_with_sample_weight" if s.reduction == "mean"
                     else KERAS_REDUCTION[s.reduction])
        loss = keras.losses.SparseCategoricalCrossentropy(
            from_logits=True, ignore_class=s.ignore_index if s.ignoring else None,
            reduction=reduction, dtype=x.dtype.name)
        sample_weight = tf.gather(w, safe_labels(t, s)) if s.weighted else None
        given = sample_weight_of(e)
        if given is not None:  # the case's own per-example weights, times the class weights
            sample_weight = given if sample_weight is None else given * sample_weight
        return loss(t, x, sample_weight=sample_weight)

    def v1_sparse(x: Any, t: Any, w: Any, s: Settings, e: Any = None) -> Any:
        given = sample_weight_of(e)
        return tf.compat.v1.losses.sparse_softmax_cross_entropy(
            t, x, weights=1.0 if given is None else given,
            reduction=V1_REDUCTION[s.reduction])

    def plain_probs(p: Any, y: Any, w: Any, s: Settings, e: Any = None) -> Any:
        rows = -tf.reduce_sum(y * tf.math.log(p), axis=s.axis)
        return rows if s.reduction == "none" else _reduce(tf, rows, s.reduction)

    def keras_function_probs(p: Any, y: Any, w: Any, s: Settings, e: Any = None) -> Any:
        return keras.losses.categorical_crossentropy(
            y, p, from_logits=False, label_smoothing=s.label_smoothing, axis=s.axis)

    def logits(params: Any) -> Any:
        """``x @ W^T + b`` as a user writes it (``params``: (x, W) or (x, W, b))."""
        x, w = params[0], params[1]
        z = (tf.linalg.matvec(w, x) if x.shape.rank == 1
             else tf.matmul(x, w, transpose_b=True))
        return z + params[2] if len(params) == 3 else z

    return {
        "sparse_softmax_cross_entropy_with_logits-linear":
            lambda p, t, w, s, e=None: sparse_composed(logits(p), t, w, s),
        "SparseCategoricalCrossentropy-linear": lambda p, t, w, s, e=None: keras_sparse(
            logits(p), t, w, s),
        "softmax": lambda x, t, w, s, e=None: tf.nn.softmax(x, axis=s.axis),
        "log_softmax": lambda x, t, w, s, e=None: tf.nn.log_softmax(x, axis=s.axis),
        "softmax_cross_entropy_with_logits": lambda x, y, w, s, e=None:
            tf.nn.softmax_cross_entropy_with_logits(labels=y, logits=x, axis=s.axis),
        "sparse_softmax_cross_entropy_with_logits": lambda x, t, w, s, e=None:
            tf.nn.sparse_softmax_cross_entropy_with_logits(labels=t, logits=x),
        "softmax_cross_entropy_with_logits-composed": probability_composed,
        "log_softmax-composed": log_softmax_composed,
        "sparse_softmax_cross_entropy_with_logits-composed": sparse_composed,
        "CategoricalCrossentropy": keras_categorical,
        "SparseCategoricalCrossentropy": keras_sparse,
        "SparseCategoricalCrossentropy-sample_weight": keras_sample_weight,
        "nll": lambda x, t, w, s, e=None: reduce_rows(picked(x, t, s), t, w, s),
        "v1-sparse_softmax_cross_entropy": v1_sparse,
        "CategoricalCrossentropy-probs": lambda p, y, w, s, e=None: keras_categorical(
            p, y, w, s, e, from_logits=False),
        "SparseCategoricalCrossentropy-probs": lambda p, t, w, s, e=None: keras_sparse(
            p, t, w, s, e, from_logits=False),
        "categorical_crossentropy-probs": keras_function_probs,
        "plain-probs": plain_probs,
    }


class _DropRetracingWarnings(logging.Filter):
    """Each case has its own shapes and settings, so tf.function legitimately retraces."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "triggered tf.function retracing" not in record.getMessage()


def _one_op_at_a_time(tf: Any) -> None:
    """Run a graph's independent ops one after another (one inter-op thread), so that two runs
    give the same records: with several threads, a tf.function whose gather and segment sum
    both see an invalid index raised from either (measured: either message across processes
    and within one).  Kernels keep their own threads (intra-op).  Once TensorFlow has run
    anything the setting is fixed and left as the process has it."""
    with contextlib.suppress(RuntimeError):
        tf.config.threading.set_inter_op_parallelism_threads(1)


def _quiet_retracing_warnings() -> None:
    logger = logging.getLogger("tensorflow")
    if not any(isinstance(f, _DropRetracingWarnings) for f in logger.filters):
        logger.addFilter(_DropRetracingWarnings())


def _reduce(tf: Any, rows: Any, reduction: str) -> Any:
    return tf.reduce_mean(rows) if reduction == "mean" else tf.reduce_sum(rows)


def _discover(tf: Any) -> list[tuple[Device, str]]:
    """CPU always; then every GPU ``tf.config.list_physical_devices`` reports."""
    found = [(Device("cpu", "cpu", cpu_name()), "/CPU:0")]
    for i, gpu in enumerate(tf.config.list_physical_devices("GPU")):
        details = tf.config.experimental.get_device_details(gpu)
        found.append((Device(f"cuda:{i}", "gpu", str(details.get("device_name", gpu.name))),
                      f"/GPU:{i}"))
    return found


def tensorflow_build(tf: Any) -> dict[str, str | None]:
    """TensorFlow's word on its build (``tf.sysconfig.get_build_info``), its oneDNN
    (``IsMklEnabled``; ``TF_ENABLE_ONEDNN_OPTS`` as set) and the GPUs it sees."""
    build = tf.sysconfig.get_build_info()
    info: dict[str, str | None] = {
        "cuda_built": str(build["cuda_version"]) if build.get("is_cuda_build") else None,
        "cudnn_built": str(build["cudnn_version"]) if build.get("is_cuda_build") else None,
        "rocm_built": str(build.get("rocm_version", "yes")) if build.get("is_rocm_build")
        else None,
    }
    try:
        from tensorflow.python.util import _pywrap_util_port

        info["onednn"] = "built in" if _pywrap_util_port.IsMklEnabled() else None
    except (ImportError, AttributeError):
        pass
    if "TF_ENABLE_ONEDNN_OPTS" in os.environ:
        info["TF_ENABLE_ONEDNN_OPTS"] = os.environ["TF_ENABLE_ONEDNN_OPTS"]
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        details = [tf.config.experimental.get_device_details(g) for g in gpus]
        info["gpus"] = ", ".join(f"{d.get('device_name', '?')} (compute capability "
                                 f"{d.get('compute_capability', '?')})" for d in details)
    return info


def _numpy(tf: Any, tensor: Any) -> np.ndarray:
    return np.asarray(tf.cast(tensor, tf.float64).numpy())


def _is_dtype_refusal(error: Exception) -> bool:
    """TensorFlow's refusals of a dtype: no kernel registered for it, or an attr out of list."""
    message = str(error)
    return any(text in message for text in (
        "not in the list of allowed values", "No registered", "Could not find device for node",
        "no kernel", "No OpKernel"))
