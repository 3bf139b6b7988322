"""Deployment: the zero-state model as a traceable graph (``torch.export``) and as ONNX.

:class:`EmbeddingsGraph` is the graph; :func:`export_onnx` / ``elmo-fast export-onnx`` write it as
ONNX (``pip install 'elmo_fast[onnx]'``), :func:`onnx_session` + :func:`run_onnx` run the file in
ONNX Runtime. ``torch.compile`` needs none of this: compile ``Elmo(..., state="zero")`` itself.
"""
from elmo_fast.export.graph import EmbeddingsGraph
from elmo_fast.export.onnx import OnnxUnavailable, check_onnx, export_onnx, model_weights, onnx_session, run_onnx

__all__ = [
    "EmbeddingsGraph",
    "OnnxUnavailable",
    "check_onnx",
    "export_onnx",
    "model_weights",
    "onnx_session",
    "run_onnx",
]
