"""ONNX Runtime adapter: one-node ONNX graphs built with ``onnx.helper``, run by an
``onnxruntime.InferenceSession`` on its CPU execution provider.

Every graph imports the default domain at ``OPSET`` (recorded in ``version()``), the newest
opset that defines each op's latest version (``NegativeLogLikelihoodLoss``-22; ``Softmax``,
``LogSoftmax`` and ``SoftmaxCrossEntropyLoss`` are at 13), with the oldest IR version that
opset needs (``onnx.helper.find_min_ir_version_for``).

APIs:

* native, one node each: ``Softmax`` and ``LogSoftmax`` (``axis``), ``SoftmaxCrossEntropyLoss``
  (class-index labels, optional ``weights`` input, ``ignore_index``, ``reduction`` none / sum /
  mean, K-dimensional scores ``(N, C, D1, ...)``) and ``NegativeLogLikelihoodLoss`` (the same
  on log-probabilities).  ``ignore_index`` is set only when a target equals it, as a user who
  needs it sets it (ONNX gives the attribute no default).  Both losses take scores of shape
  ``(N, C)`` or ``(N, C, D1, ...)``: an unbatched ``(C,)`` input is outside their domain and
  is ``unsupported`` (ONNX's shape rule), not run.
* ``SoftmaxCrossEntropyLoss``'s optional second output, ``log_prob``, as a ``log_softmax``
  API (composed: it needs a label input, all zeros, that does not change ``log_prob``).
* composed: each op's function body, expanded into the graph as in ONNX's ``_expanded``
  backend tests (``onnx.backend.test.case.node.function_expand_helper``) -- the decomposition
  (``ReduceMax``, ``Exp``, ``ReduceSum``, ``Log``, ``GatherElements``, ...) that a runtime
  without a kernel for the op executes -- under the opset that function body imports.

Forward only: an ``InferenceSession`` has no gradients (training is onnxruntime-training, a
separate package), so every API declares ``no_grad``.  A dtype or op the CPU provider has no
kernel for (``NOT_IMPLEMENTED``) is ``unsupported`` with ORT's message; the output's element
type is reported (``Outcome.dtype``).  So is an element type the ONNX schema itself does not
allow for an op (``INVALID_GRAPH`` with a ``Type Error``: the function body of
``SoftmaxCrossEntropyLoss``-13 has no bfloat16).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np

from conformance.adapters.base import Api, Device, Outcome
from conformance.adapters.common import NLL_OPTIONS, CpuAdapter, Settings, one_line, settings_for
from conformance.cases.problem import Problem

OPSET = 22
NO_GRAD = ("onnxruntime's InferenceSession runs the forward graph only; gradients need the "
           "separate onnxruntime-training build")
INDEX_ONLY = ("ONNX's SoftmaxCrossEntropyLoss takes class-index labels only (no probability "
              "labels)")
NO_SMOOTHING = "ONNX's SoftmaxCrossEntropyLoss has no label smoothing attribute"
NLL_NO_SMOOTHING = "NegativeLogLikelihoodLoss has no label smoothing attribute"
UNBATCHED = ("ONNX's {op} takes scores of shape (N, C) or (N, C, D1, ..., Dk): an unbatched "
             "(C,) input is outside its domain")
LOSSES = {"SoftmaxCrossEntropyLoss", "NegativeLogLikelihoodLoss"}
ELEMENT_TYPES = {"float64": "DOUBLE", "float32": "FLOAT", "float16": "FLOAT16",
                 "bfloat16": "BFLOAT16"}
DTYPES = tuple(ELEMENT_TYPES)
SESSIONS_KEPT = 256  # sessions built for distinct shapes and settings, the oldest dropped
NO_STAND_IN = ("ONNX Runtime runs ONNX graphs, not Python functions: each of its APIs is an "
               "ONNX operator in a graph built with onnx.helper and run by an "
               "InferenceSession, so there is no Python function an --impl could stand in for")


def _apis() -> tuple[Api, ...]:
    loss = NLL_OPTIONS
    native = (
        Api("Softmax", f"onnx Softmax (opset {OPSET})", "softmax", frozenset({"k_dim"}),
            no_grad=NO_GRAD),
        Api("LogSoftmax", f"onnx LogSoftmax (opset {OPSET})", "log_softmax",
            frozenset({"k_dim"}), no_grad=NO_GRAD),
        Api("SoftmaxCrossEntropyLoss", f"onnx SoftmaxCrossEntropyLoss (opset {OPSET})",
            "cross_entropy", loss,
            reasons={"probability_target": INDEX_ONLY, "label_smoothing": NO_SMOOTHING},
            no_grad=NO_GRAD),
        Api("NegativeLogLikelihoodLoss", f"onnx NegativeLogLikelihoodLoss (opset {OPSET})",
            "nll_loss", loss, reasons={"label_smoothing": NLL_NO_SMOOTHING}, no_grad=NO_GRAD),
    )
    log_prob = Api("SoftmaxCrossEntropyLoss-log_prob",
                   f"onnx SoftmaxCrossEntropyLoss(x, zeros) log_prob output (opset {OPSET})",
                   "log_softmax", frozenset({"k_dim"}), kind="composed", no_grad=NO_GRAD)
    expanded = tuple(
        Api(f"{api.id}-expanded", f"onnx {api.id} function body (ONNX's _expanded graph)",
            api.op, api.supports, kind="composed", reasons=dict(api.reasons), no_grad=NO_GRAD)
        for api in native)
    return (*native, log_prob, *expanded)


APIS = _apis()


class OnnxRuntimeAdapter(CpuAdapter):
    name = "onnxruntime"
    declared_apis, declared_dtypes = APIS, DTYPES
    no_stand_in = NO_STAND_IN

    def __init__(self) -> None:
        import onnx
        import onnxruntime
        from onnx import helper

        self.onnx, self.ort, self.helper = onnx, onnxruntime, helper
        self._sessions: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
        options = onnxruntime.SessionOptions()
        # fatal only: ORT logs a warning per session it optimises and an error per kernel that
        # raises, on stderr; what a run raises reaches the record as the exception's message
        options.log_severity_level = 4
        self._options = options
        onnxruntime.set_default_logger_severity(4)

    def version(self) -> str:
        return f"{self.ort.__version__} (onnx {self.onnx.__version__}, opset {OPSET})"

    def run(self, api: Api, problem: Problem, device: Device) -> Outcome:
        op_type = api.id.removesuffix("-expanded").removesuffix("-log_prob")
        if (op_type in LOSSES or api.id.endswith("-log_prob")) and problem.input.ndim < 2:
            op = "SoftmaxCrossEntropyLoss" if api.id.endswith("-log_prob") else op_type
            return Outcome("unsupported", message=UNBATCHED.format(op=op))
        settings = settings_for(problem)
        try:
            session = self._session(api, op_type, problem, settings)
            feeds = self._feeds(problem, settings, log_prob=api.id.endswith("-log_prob"))
            out = session.run_with_ort_values([session.get_outputs()[-1].name], feeds)[0]
            return self._outcome(out, problem.dtype)
        except Exception as error:  # ORT's own verdict on the graph or the inputs
            message = one_line(str(error))
            refused = "NOT_IMPLEMENTED" in message or "NotImplemented" in type(error).__name__ \
                or ("INVALID_GRAPH" in message and "Type Error" in message)
            return Outcome("unsupported" if refused else "error", error_type=type(error).__name__,
                           message=message)

    def _outcome(self, value: Any, dtype: str) -> Outcome:
        if value.data_type() == "tensor(bfloat16)":
            import ml_dtypes

            raw = np.asarray(value.numpy())
            array = raw.view(np.uint16).view(ml_dtypes.bfloat16).astype(np.float64)
            return Outcome("ok", array, dtype="bfloat16")
        array = np.asarray(value.numpy())
        return Outcome("ok", array.astype(np.float64), dtype=str(array.dtype))

    def _feeds(self, problem: Problem, s: Settings, log_prob: bool) -> dict[str, Any]:
        feeds = {"x": self._value(problem.input, problem.dtype)}
        if log_prob:
            shape = tuple(n for i, n in enumerate(problem.input.shape) if i != s.axis)
            feeds["t"] = self.ort.OrtValue.ortvalue_from_numpy(np.zeros(shape, dtype=np.int64))
        elif problem.target is not None:
            feeds["t"] = self.ort.OrtValue.ortvalue_from_numpy(
                np.ascontiguousarray(problem.target, dtype=np.int64))
        if s.weighted and problem.weight is not None:
            feeds["w"] = self._value(problem.weight, problem.dtype)
        return feeds

    def _value(self, array: np.ndarray, dtype: str) -> Any:
        """An OrtValue of ``array`` (float64 holding values exact in ``dtype``) in ``dtype``."""
        if dtype == "bfloat16":
            import ml_dtypes

            bits = np.ascontiguousarray(array.astype(ml_dtypes.bfloat16)).view(np.uint16)
            return self.ort.OrtValue.ortvalue_from_numpy_with_onnx_type(
                bits, self.onnx.TensorProto.BFLOAT16)
        numpy_dtype = {"float64": np.float64, "float32": np.float32, "float16": np.float16}[dtype]
        return self.ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(array, numpy_dtype))

    def _session(self, api: Api, op_type: str, problem: Problem, s: Settings) -> Any:
        key = (api.id, problem.dtype, problem.input.shape,
               None if problem.target is None else problem.target.shape, s)
        if key in self._sessions:
            self._sessions.move_to_end(key)
            return self._sessions[key]
        model = self._model(api, op_type, problem, s)
        session = self.ort.InferenceSession(model.SerializeToString(), self._options,
                                            providers=["CPUExecutionProvider"])
        self._sessions[key] = session
        if len(self._sessions) > SESSIONS_KEPT:
            self._sessions.popitem(last=False)
        return session

    def _model(self, api: Api, op_type: str, problem: Problem, s: Settings) -> Any:
        helper, tensor = self.helper, self.onnx.TensorProto
        element = getattr(tensor, ELEMENT_TYPES[problem.dtype])
        inputs = [helper.make_tensor_value_info("x", element, list(problem.input.shape))]
        names = ["x"]
        attributes: dict[str, Any] = {}
        log_prob = api.id.endswith("-log_prob")
        if op_type in LOSSES:
            label_shape = [n for i, n in enumerate(problem.input.shape) if i != s.axis]
            inputs.append(helper.make_tensor_value_info("t", tensor.INT64, label_shape))
            names.append("t")
            if s.weighted:
                inputs.append(helper.make_tensor_value_info("w", element, [s.classes]))
                names.append("w")
            attributes["reduction"] = s.reduction
            if s.ignoring:
                attributes["ignore_index"] = s.ignore_index
        else:
            attributes["axis"] = s.axis
        outputs = ["y", "log_prob"] if log_prob else ["y"]
        node = helper.make_node(op_type, names, outputs, **attributes)
        nodes, opsets = [node], [helper.make_opsetid("", OPSET)]
        if api.id.endswith("-expanded"):
            nodes, opsets = self._expanded(node, inputs)
        graph = helper.make_graph(
            nodes, f"conformance_{api.id}", inputs,
            [helper.make_tensor_value_info(outputs[-1], element, None)])
        return helper.make_model(graph, opset_imports=opsets,
                                 ir_version=helper.find_min_ir_version_for(opsets))

    def _expanded(self, node: Any, inputs: list[Any]) -> tuple[list[Any], list[Any]]:
        """``node``'s function body for the newest function version at most ``OPSET``, as
        ONNX's ``_expanded`` tests build it, and the opsets that body imports."""
        from onnx.backend.test.case.node import function_expand_helper

        schema: Any = self.onnx.defs.get_schema(node.op_type, OPSET)  # stubs lack the functions
        version = max(v for v in schema.context_dependent_function_opset_versions if v <= OPSET)
        body = self.onnx.FunctionProto()
        body.ParseFromString(schema.get_context_dependent_function_with_opset_version(
            version, node.SerializeToString(), [i.type.SerializeToString() for i in inputs]))
        for name, attribute in schema.attributes.items():  # defaults the node leaves unset
            if name not in {a.name for a in node.attribute} and attribute.default_value.name:
                node.attribute.extend([attribute.default_value])
        nodes = function_expand_helper(node, body, f"{node.op_type}_expanded_")
        return list(nodes), list(body.opset_import)
