"""Small cases that exercise every option, for the adapters' API-mapping tests.

``check_every_api`` runs each case through each API of an adapter (on CPU, in float32 and
float64) and checks the records: a case the API declares it can run must pass against the
oracle (output and gradient; a forward-only API's gradient ``unsupported`` with its declared
``no_grad`` reason); a case it cannot must be ``unsupported`` with the API's own declared
reason.  It also checks that every option each API declares was exercised by at
least one passing case, so a declaration cannot claim what no test has checked.

A framework's known discrepancy is passed in ``known`` (API id and case id, or API id, case
id and dtype -> why); such a run must still fail (like a strict xfail), so the test notices
when the framework is fixed.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from conformance.adapters.base import Adapter, Api
from conformance.cases.loading import Case, load_file
from conformance.judge.check import check_case
from conformance.results.records import Record

API_CASES = """\
defaults:
  source: tests/frameworks/api_cases.py
  dtypes: [float32, float64]
cases:
  - {id: softmax-2x3, op: softmax, input: [[1.0, 2.0, 3.0], [-1.0, 0.5, 0.25]]}
  - {id: log-softmax-2x3, op: log_softmax, input: [[1.0, 2.0, 3.0], [-1.0, 0.5, 0.25]]}
  - {id: softmax-k-dim, op: softmax, input: [[[1.0, 0.0], [2.0, -1.0], [0.5, 3.0]]]}
  - {id: log-softmax-unbatched, op: log_softmax, input: [0.5, -2.0, 1.5, 0.0]}
  - {id: log-softmax-k-dim, op: log_softmax, input: [[[1.0, 0.0], [2.0, -1.0], [0.5, 3.0]]]}
  - id: index-mean
    op: cross_entropy
    input: [[2.5, -1.0, 0.5, 0.0], [0.1, 0.2, 0.3, 0.4], [-3.0, 4.0, 1.0, 1.0]]
    target: [3, 0, 1]
  - id: index-none-unbatched
    op: cross_entropy
    input: [2.5, -1.0, 0.5, 0.0]
    target: 2
    reduction: none
  - id: index-sum
    op: cross_entropy
    input: [[2.5, -1.0, 0.5, 0.0], [0.1, 0.2, 0.3, 0.4]]
    target: [1, 2]
    reduction: sum
  - id: index-weighted-ignored-mean
    op: cross_entropy
    input: [[2.5, -1.0, 0.5, 0.0], [0.1, 0.2, 0.3, 0.4], [-3.0, 4.0, 1.0, 1.0]]
    target: [3, 9, 1]
    weight: [0.5, 1.0, 2.0, 4.0]
    ignore_index: 9
  - id: index-ignored-mean
    op: cross_entropy
    input: [[2.5, -1.0, 0.5, 0.0], [0.1, 0.2, 0.3, 0.4], [-3.0, 4.0, 1.0, 1.0]]
    target: [3, -100, 1]
  - id: index-ignored-none
    op: cross_entropy
    input: [[2.5, -1.0, 0.5, 0.0], [0.1, 0.2, 0.3, 0.4]]
    target: [-100, 2]
    reduction: none
  - id: index-weighted-sum
    op: cross_entropy
    input: [[2.5, -1.0, 0.5], [0.1, 0.2, 0.3]]
    target: [0, 2]
    weight: [0.5, 1.0, 2.0]
    reduction: sum
  - id: index-k-dim-none
    op: cross_entropy
    input: [[[1.0, 0.0], [2.0, -1.0], [0.5, 3.0]]]
    target: [[1, 2]]
    reduction: none
  - id: index-k-dim-weighted-mean
    op: cross_entropy
    input: [[[1.0, 0.0], [2.0, -1.0], [0.5, 3.0]], [[0.0, 1.0], [1.0, 1.0], [2.0, -2.0]]]
    target: [[1, 2], [0, 1]]
    weight: [1.0, 2.0, 0.5]
  - id: index-smoothed
    op: cross_entropy
    input: [[2.5, -1.0, 0.5, 0.0], [0.1, 0.2, 0.3, 0.4]]
    target: [3, 0]
    label_smoothing: 0.1
  - id: probability-mean
    op: cross_entropy
    input: [[1.0, 2.0, -2.0], [0.0, 0.0, 5.0]]
    target: [[0.2, 0.3, 0.5], [0.9, 0.1, 0.0]]
  - id: probability-none-unbatched
    op: cross_entropy
    input: [0.6, 0.4, -1.0]
    target: [0.25, 0.5, 0.25]
    reduction: none
  - id: probability-smoothed-sum
    op: cross_entropy
    input: [[1.0, 2.0, -2.0], [0.0, 0.0, 5.0]]
    target: [[0.2, 0.3, 0.5], [0.9, 0.1, 0.0]]
    reduction: sum
    label_smoothing: 0.25
  - id: probability-weighted-smoothed-sum
    op: cross_entropy
    input: [[1.0, 2.0, -2.0], [0.0, 0.0, 5.0]]
    target: [[0.2, 0.3, 0.5], [0.9, 0.1, 0.0]]
    weight: [1.0, 0.5, 2.0]
    reduction: sum
    label_smoothing: 0.25
  - id: probability-k-dim-none
    op: cross_entropy
    input: [[[1.0, 0.0], [2.0, -1.0], [0.5, 3.0]]]
    target: [[[0.5, 0.0], [0.25, 1.0], [0.25, 0.0]]]
    reduction: none
  - id: probability-k-dim-smoothed-none
    op: cross_entropy
    input: [[[1.0, 0.0], [2.0, -1.0], [0.5, 3.0]]]
    target: [[[0.5, 0.0], [0.25, 1.0], [0.25, 0.0]]]
    reduction: none
    label_smoothing: 0.2
  - id: probability-k-dim-weighted-mean
    op: cross_entropy
    input: [[[1.0, 0.0], [2.0, -1.0], [0.5, 3.0]]]
    target: [[[0.5, 0.0], [0.25, 1.0], [0.25, 0.0]]]
    weight: [2.0, 1.0, 0.5]
  - id: nll-weighted-ignored-mean
    op: nll_loss
    input: [[-1.5, -0.5, -2.0], [-0.1, -3.0, -2.5], [-1.0, -1.0, -1.2]]
    target: [2, 0, -100]
    weight: [1.0, 3.0, 0.5]
  - id: nll-k-dim-sum
    op: nll_loss
    input: [[[-1.5, -0.5], [-0.5, -1.5], [-2.0, -3.0]]]
    target: [[0, 2]]
    reduction: sum
  - id: nll-mean
    op: nll_loss
    input: [[-1.5, -0.5, -2.0], [-0.1, -3.0, -2.5]]
    target: [1, 0]
  - id: nll-ignored-none
    op: nll_loss
    input: [[-1.5, -0.5, -2.0], [-0.1, -3.0, -2.5]]
    target: [1, -100]
    reduction: none
  - id: nll-none-unbatched
    op: nll_loss
    input: [-1.5, -0.5, -2.0]
    target: 1
    reduction: none
  - id: linear-index-mean
    op: linear_cross_entropy
    input: [[1.0, 2.0, -1.0], [0.5, 0.25, 3.0], [-2.0, 1.0, 0.5]]
    linear_weight: [[0.1, 0.2, 0.3], [-0.5, 0.25, 1.0], [2.0, -1.0, 0.5], [0.0, 0.1, -0.2]]
    linear_bias: [0.5, -0.5, 1.0, 0.0]
    target: [1, 3, 0]
  - id: linear-weighted-ignored-sum
    op: linear_cross_entropy
    input: [[1.0, 2.0, -1.0], [0.5, 0.25, 3.0], [-2.0, 1.0, 0.5]]
    linear_weight: [[0.1, 0.2, 0.3], [-0.5, 0.25, 1.0], [2.0, -1.0, 0.5], [0.0, 0.1, -0.2]]
    target: [1, -100, 2]
    weight: [0.5, 1.0, 2.0, 4.0]
    reduction: sum
  - id: linear-weighted-ignored-mean
    op: linear_cross_entropy
    input: [[1.0, 2.0, -1.0], [0.5, 0.25, 3.0], [-2.0, 1.0, 0.5]]
    linear_weight: [[0.1, 0.2, 0.3], [-0.5, 0.25, 1.0], [2.0, -1.0, 0.5], [0.0, 0.1, -0.2]]
    linear_bias: [1.0, 0.0, -1.0, 0.5]
    target: [3, 1, -100]
    weight: [0.5, 1.0, 2.0, 4.0]
  - id: linear-sum
    op: linear_cross_entropy
    input: [[1.0, 2.0, -1.0], [0.5, 0.25, 3.0], [-2.0, 1.0, 0.5]]
    linear_weight: [[0.1, 0.2, 0.3], [-0.5, 0.25, 1.0], [2.0, -1.0, 0.5], [0.0, 0.1, -0.2]]
    linear_bias: [0.5, -0.5, 1.0, 0.0]
    target: [1, 0, 2]
    reduction: sum
  - id: linear-none-unbatched
    op: linear_cross_entropy
    input: [1.0, 2.0, -1.0]
    linear_weight: [[0.1, 0.2, 0.3], [-0.5, 0.25, 1.0], [2.0, -1.0, 0.5], [0.0, 0.1, -0.2]]
    linear_bias: [0.5, -0.5, 1.0, 0.0]
    target: 2
    reduction: none
  - id: linear-ignored-none
    op: linear_cross_entropy
    input: [[1.0, 2.0, -1.0], [0.5, 0.25, 3.0]]
    linear_weight: [[0.1, 0.2, 0.3], [-0.5, 0.25, 1.0], [2.0, -1.0, 0.5], [0.0, 0.1, -0.2]]
    target: [-100, 2]
    reduction: none
  - id: linear-smoothed
    op: linear_cross_entropy
    input: [[1.0, 2.0, -1.0], [0.5, 0.25, 3.0]]
    linear_weight: [[0.1, 0.2, 0.3], [-0.5, 0.25, 1.0], [2.0, -1.0, 0.5], [0.0, 0.1, -0.2]]
    linear_bias: [0.5, -0.5, 1.0, 0.0]
    target: [3, 0]
    label_smoothing: 0.1
  - id: linear-probability-weighted-smoothed-sum
    op: linear_cross_entropy
    input: [[1.0, 2.0, -1.0], [0.5, 0.25, 3.0]]
    linear_weight: [[0.1, 0.2, 0.3], [-0.5, 0.25, 1.0], [2.0, -1.0, 0.5], [0.0, 0.1, -0.2]]
    linear_bias: [0.5, -0.5, 1.0, 0.0]
    target: [[0.25, 0.25, 0.5, 0.0], [0.1, 0.2, 0.3, 0.4]]
    weight: [1.0, 0.5, 2.0, 1.0]
    reduction: sum
    label_smoothing: 0.25
  - id: linear-probability-mean
    op: linear_cross_entropy
    input: [[1.0, 2.0, -1.0], [0.5, 0.25, 3.0]]
    linear_weight: [[0.1, 0.2, 0.3], [-0.5, 0.25, 1.0], [2.0, -1.0, 0.5], [0.0, 0.1, -0.2]]
    target: [[0.25, 0.25, 0.5, 0.0], [0.1, 0.2, 0.3, 0.4]]
  - id: linear-probability-none
    op: linear_cross_entropy
    input: [[1.0, 2.0, -1.0], [0.5, 0.25, 3.0]]
    linear_weight: [[0.1, 0.2, 0.3], [-0.5, 0.25, 1.0], [2.0, -1.0, 0.5], [0.0, 0.1, -0.2]]
    linear_bias: [0.5, -0.5, 1.0, 0.0]
    target: [[0.25, 0.25, 0.5, 0.0], [0.1, 0.2, 0.3, 0.4]]
    reduction: none
  # issue 20: the class axis (channels last and elsewhere), where, per-example weights and
  # the named reductions, probabilities (Keras' from_logits=False)
  - {id: softmax-channels-last, op: softmax, axis: -1,
     input: [[[1.0, 2.0, 3.0], [0.5, -1.0, 2.0]]]}
  - {id: log-softmax-channels-last, op: log_softmax, axis: -1,
     input: [[[1.0, 2.0, 3.0], [0.5, -1.0, 2.0]]]}
  - {id: softmax-axis-2, op: softmax, axis: 2,
     input: [[[[1.0, 0.0], [2.0, -1.0], [0.5, 3.0]]]]}
  - {id: log-softmax-axis-2, op: log_softmax, axis: 2,
     input: [[[[1.0, 0.0], [2.0, -1.0], [0.5, 3.0]]]]}
  - id: softmax-where
    op: softmax
    input: [[1.0, 2.0, 3.0], [0.5, -1.0, 2.0], [1.0, 1.0, 1.0]]
    where: [[true, false, true], [true, true, true], [false, false, false]]
  - id: log-softmax-where
    op: log_softmax
    input: [[1.0, 2.0, 3.0], [0.5, -1.0, 2.0], [1.0, 1.0, 1.0]]
    where: [[true, false, true], [true, true, true], [false, false, false]]
  - id: index-channels-last-mean
    op: cross_entropy
    axis: -1
    input: [[[1.0, 2.0, 3.0], [0.5, -1.0, 2.0]], [[0.25, 0.0, -2.0], [1.5, 1.0, 0.0]]]
    target: [[2, 0], [1, 1]]
  - id: index-channels-last-none
    op: cross_entropy
    axis: -1
    input: [[[1.0, 2.0, 3.0], [0.5, -1.0, 2.0]]]
    target: [[2, 0]]
    reduction: none
  - id: index-axis-2-none
    op: cross_entropy
    axis: 2
    input: [[[[1.0, 0.0], [2.0, -1.0], [0.5, 3.0]]]]
    target: [[[1, 0]]]
    reduction: none
  - id: probability-channels-last-none
    op: cross_entropy
    axis: -1
    input: [[[1.0, 2.0, 3.0], [0.5, -1.0, 2.0]]]
    target: [[[0.25, 0.25, 0.5], [1.0, 0.0, 0.0]]]
    reduction: none
  - id: probability-axis-2-none
    op: cross_entropy
    axis: 2
    input: [[[[1.0, 0.0], [2.0, -1.0], [0.5, 3.0]]]]
    target: [[[[0.5, 0.0], [0.25, 1.0], [0.25, 0.0]]]]
    reduction: none
  - id: index-where-none
    op: cross_entropy
    input: [[1.0, 2.0, 3.0], [0.5, -1.0, 2.0], [1.0, 1.0, 1.0]]
    target: [2, 1, 0]
    where: [[true, false, true], [true, true, true], [false, false, false]]
    reduction: none
  - id: probability-where-none
    op: cross_entropy
    input: [[1.0, 2.0, 3.0], [0.5, -1.0, 2.0], [1.0, 1.0, 1.0]]
    target: [[0.5, 0.0, 0.5], [0.25, 0.25, 0.5], [1.0, 0.0, 0.0]]
    where: [[true, false, true], [true, true, true], [false, false, false]]
    reduction: none
  - id: index-sample-weight-sum-over-batch-size
    op: cross_entropy
    input: [[2.5, -1.0, 0.5, 0.0], [0.1, 0.2, 0.3, 0.4], [-3.0, 4.0, 1.0, 1.0]]
    target: [3, 0, 1]
    sample_weight: [0.5, 2.0, 0.0]
    reduction: sum_over_batch_size
  - id: index-sample-weight-mean-with-sample-weight
    op: cross_entropy
    input: [[2.5, -1.0, 0.5, 0.0], [0.1, 0.2, 0.3, 0.4], [-3.0, 4.0, 1.0, 1.0]]
    target: [3, 0, 1]
    sample_weight: [0.5, 2.0, 0.25]
    reduction: mean_with_sample_weight
  - id: index-sample-weight-nonzero
    op: cross_entropy
    input: [[2.5, -1.0, 0.5, 0.0], [0.1, 0.2, 0.3, 0.4], [-3.0, 4.0, 1.0, 1.0]]
    target: [3, 0, 1]
    sample_weight: [0.5, 2.0, 0.0]
    reduction: sum_by_nonzero_weights
  - id: index-sample-weight-none
    op: cross_entropy
    input: [[2.5, -1.0, 0.5, 0.0], [0.1, 0.2, 0.3, 0.4]]
    target: [3, 0]
    sample_weight: [0.5, 2.0]
    reduction: none
  - id: index-sample-weight-sum
    op: cross_entropy
    input: [[2.5, -1.0, 0.5, 0.0], [0.1, 0.2, 0.3, 0.4]]
    target: [3, 0]
    sample_weight: [0.5, 2.0]
    reduction: sum
  - id: index-sample-weight-channels-last-ignored
    op: cross_entropy
    axis: -1
    input: [[[1.0, 2.0, 3.0], [0.5, -1.0, 2.0]], [[0.25, 0.0, -2.0], [1.5, 1.0, 0.0]]]
    target: [[2, -100], [1, 1]]
    sample_weight: [[1.0, 3.0], [0.5, 2.0]]
    reduction: mean_with_sample_weight
  - id: index-class-and-sample-weights
    op: cross_entropy
    input: [[2.5, -1.0, 0.5, 0.0], [0.1, 0.2, 0.3, 0.4], [-3.0, 4.0, 1.0, 1.0]]
    target: [3, 0, 1]
    weight: [0.5, 1.0, 2.0, 4.0]
    sample_weight: [0.5, 2.0, 0.25]
    reduction: sum_over_batch_size
  - id: index-sample-weight-smoothed
    op: cross_entropy
    input: [[2.5, -1.0, 0.5, 0.0], [0.1, 0.2, 0.3, 0.4]]
    target: [3, 0]
    sample_weight: [0.5, 2.0]
    label_smoothing: 0.1
    reduction: sum_over_batch_size
  - id: probability-sample-weight-mean-with-sample-weight
    op: cross_entropy
    input: [[1.0, 2.0, -2.0], [0.0, 0.0, 5.0]]
    target: [[0.2, 0.3, 0.5], [0.9, 0.1, 0.0]]
    sample_weight: [2.0, 0.5]
    reduction: mean_with_sample_weight
  - id: probability-sample-weight-sum-over-batch-size
    op: cross_entropy
    input: [[1.0, 2.0, -2.0], [0.0, 0.0, 5.0]]
    target: [[0.2, 0.3, 0.5], [0.9, 0.1, 0.0]]
    sample_weight: [2.0, 0.5]
    reduction: sum_over_batch_size
  - id: probability-sample-weight-nonzero
    op: cross_entropy
    input: [[1.0, 2.0, -2.0], [0.0, 0.0, 5.0]]
    target: [[0.2, 0.3, 0.5], [0.9, 0.1, 0.0]]
    sample_weight: [2.0, 0.0]
    reduction: sum_by_nonzero_weights
  - id: nll-sample-weight-mean-with-sample-weight
    op: nll_loss
    input: [[-1.5, -0.5, -2.0], [-0.1, -3.0, -2.5], [-1.0, -1.0, -1.2]]
    target: [2, 0, -100]
    weight: [1.0, 3.0, 0.5]
    sample_weight: [2.0, 0.5, 1.0]
    reduction: mean_with_sample_weight
  - id: nll-sample-weight-nonzero
    op: nll_loss
    input: [[-1.5, -0.5, -2.0], [-0.1, -3.0, -2.5], [-1.0, -1.0, -1.2]]
    target: [2, 0, 1]
    sample_weight: [2.0, 0.0, 1.0]
    reduction: sum_by_nonzero_weights
  - id: nll-sample-weight-sum-over-batch-size
    op: nll_loss
    input: [[-1.5, -0.5, -2.0], [-0.1, -3.0, -2.5], [-1.0, -1.0, -1.2]]
    target: [2, 0, 1]
    sample_weight: [2.0, 0.0, 1.0]
    reduction: sum_over_batch_size
  - id: nll-channels-last-sum
    op: nll_loss
    axis: -1
    input: [[[-1.5, -0.5, -2.0], [-0.1, -3.0, -2.5]]]
    target: [[2, 0]]
    reduction: sum
  - id: nll-axis-2-none
    op: nll_loss
    axis: 2
    input: [[[[-1.5, -0.5], [-0.5, -1.5], [-2.0, -3.0]]]]
    target: [[[0, 2]]]
    reduction: none
  - id: probs-mean
    op: categorical_crossentropy_probs
    input: [[0.9, 0.05, 0.05], [0.05, 0.89, 0.06], [0.05, 0.01, 0.94]]
    target: [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
  - id: probs-unnormalised-clipped-none
    op: categorical_crossentropy_probs
    input: [[0.0, 1.0, 0.0], [0.2, 0.3, 0.1]]
    target: [[1.0, 0.0, 0.0], [0.25, 0.25, 0.5]]
    reduction: none
  - id: probs-smoothed-sum
    op: categorical_crossentropy_probs
    input: [[0.9, 0.05, 0.05], [0.05, 0.89, 0.06]]
    target: [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]
    label_smoothing: 0.1
    reduction: sum
  - id: probs-smoothed-none
    op: categorical_crossentropy_probs
    input: [[0.9, 0.05, 0.05], [0.05, 0.89, 0.06]]
    target: [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]
    label_smoothing: 0.1
    reduction: none
  - id: probs-k-dim-none
    op: categorical_crossentropy_probs
    input: [[[0.5, 0.25], [0.25, 0.5], [0.25, 0.25]]]
    target: [[[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]]
    reduction: none
  - id: probs-channels-last-none
    op: categorical_crossentropy_probs
    axis: -1
    input: [[[0.5, 0.25, 0.25], [0.25, 0.5, 0.25]]]
    target: [[[1.0, 0.0, 0.0], [0.0, 0.5, 0.5]]]
    reduction: none
  - id: probs-axis-2-none
    op: categorical_crossentropy_probs
    axis: 2
    input: [[[[0.5, 0.25], [0.25, 0.5], [0.25, 0.25]]]]
    target: [[[[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]]]
    reduction: none
  - id: probs-sample-weight-sum-over-batch-size
    op: categorical_crossentropy_probs
    input: [[0.9, 0.05, 0.05], [0.05, 0.89, 0.06]]
    target: [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]
    sample_weight: [2.0, 0.5]
    reduction: sum_over_batch_size
  - id: probs-sample-weight-mean-with-sample-weight
    op: categorical_crossentropy_probs
    input: [[0.9, 0.05, 0.05], [0.05, 0.89, 0.06]]
    target: [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]
    sample_weight: [2.0, 0.5]
    reduction: mean_with_sample_weight
  - id: probs-sparse-mean
    op: categorical_crossentropy_probs
    input: [[0.05, 0.95, 0.0], [0.1, 0.8, 0.1]]
    target: [1, 2]
  - id: probs-sparse-ignored-sum
    op: categorical_crossentropy_probs
    input: [[0.05, 0.95, 0.0], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6]]
    target: [1, -100, 2]
    reduction: sum
  - id: probs-sparse-channels-last-none
    op: categorical_crossentropy_probs
    axis: -1
    input: [[[0.05, 0.95, 0.0], [0.1, 0.8, 0.1]]]
    target: [[1, 2]]
    reduction: none
  - id: probs-sparse-sample-weight-mean-with-sample-weight
    op: categorical_crossentropy_probs
    input: [[0.05, 0.95, 0.0], [0.1, 0.8, 0.1]]
    target: [1, 2]
    sample_weight: [2.0, 0.5]
    reduction: mean_with_sample_weight
  - id: probs-sparse-sample-weight-sum-over-batch-size
    op: categorical_crossentropy_probs
    input: [[0.05, 0.95, 0.0], [0.1, 0.8, 0.1]]
    target: [1, 2]
    sample_weight: [2.0, 0.5]
    reduction: sum_over_batch_size
  - id: probs-sparse-sample-weight-none
    op: categorical_crossentropy_probs
    input: [[0.05, 0.95, 0.0], [0.1, 0.8, 0.1]]
    target: [1, 2]
    sample_weight: [2.0, 0.5]
    reduction: none
"""

DTYPES = ("float32", "float64")


def quantities(case: Case) -> list[str]:
    """The records a value case writes: output and grad; for linear_cross_entropy also the
    weight's gradient and, with a bias, the bias's."""
    if case.op != "linear_cross_entropy":
        return ["output", "grad"]
    return ["output", "grad", "grad_linear_weight",
            *(["grad_linear_bias"] if case.linear_bias is not None else [])]


def api_cases(tmp_path: Path) -> list[Case]:
    path = tmp_path / "api_cases.yaml"
    path.write_text(API_CASES, encoding="utf-8")
    return load_file(path)


def check_every_api(adapter: Adapter, cases: list[Case], apis: tuple[Api, ...] | None = None,
                    dtypes: tuple[str, ...] = DTYPES,
                    known: dict[tuple[str, ...], str] | None = None) -> list[Record]:
    """Run every case through every API (of ``apis``, default all) on the adapter's CPU and
    assert the contract described in the module docstring; returns the records."""
    cpu = next(d for d in adapter.devices() if d.kind == "cpu")
    known = known or {}
    exercised: dict[str, set[str]] = defaultdict(set)
    records: list[Record] = []
    for api in apis if apis is not None else adapter.apis():
        for case in (c for c in cases if c.op == api.op):
            reason = api.unsupported_reason(case.options())
            for dtype in dtypes:
                got = check_case(case, adapter, api, cpu, dtype)
                records += got
                where = f"{api.name} on {case.id} in {dtype}"
                if reason is not None:
                    assert [(r.status, r.message) for r in got] == [("unsupported", reason)], where
                    continue
                if (api.id, case.id) in known and any(r.status != "pass" for r in got):
                    exercised[api.name] |= set(case.options())  # checked: known to fail
                    continue
                assert [r.quantity for r in got] == quantities(case), (where, got)
                if api.no_grad:  # forward only: the gradient says why, the output is judged
                    assert (got[1].status, got[1].message) == ("unsupported", api.no_grad), where
                    got = got[:1]
                bad = [r for r in got if r.status != "pass"]
                key = next((k for k in ((api.id, case.id), (api.id, case.id, dtype))
                            if k in known), None)
                if key is not None:  # a known discrepancy, for every dtype or for this one
                    assert bad, f"{where} passes: is this fixed? {known[key]}"
                    continue
                assert not bad, (where, [(r.quantity, r.status, r.message) for r in bad])
                exercised[api.name] |= set(case.options())
        assert api.supports <= exercised[api.name], (api.name, api.supports - exercised[api.name])
    return records
