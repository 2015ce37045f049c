"""ONNX Runtime as an embedding backend: export an Embedder to ONNX, and run the exported graph.

Why ONNX Runtime: measured on this project's 2-core AVX2 CPU (benchmarks/bench_embed_backend.py),
its CPU kernels and graph optimisations (conv + batch-norm + activation fusion, NCHWc layouts)
ran resnet18 at 112 px 2.5-8x faster than eager PyTorch, where channels-last, TorchScript
freezing and ``torch.compile`` gained 1.0-1.7x and bf16 was 5-14x slower (no native bf16 units)
and off by 1e-3 in cosine. It is a well-kept, widely deployed runtime with wheels for every
platform torch has, and the exported file is the same graph the user's weights define.

This module only knows ONNX: which file belongs to which model and when to use it is decided in
:mod:`verikit.models.backend`. onnxruntime and onnx are the optional extra ``verikit[onnx]``;
both are imported inside functions so that ``import verikit`` never needs them.
"""

from __future__ import annotations

import io
import warnings
from typing import Any

import numpy as np
import torch

from ..errors import ModelError, one_line

OPSET = 17              # supported by every onnxruntime >= 1.14; covers the ops timm backbones export to
INPUT_NAME = "images"
OUTPUT_NAME = "embeddings"
EXTRA = "pip install 'verikit[onnx]'"


def missing() -> str | None:
    """Why the ONNX backend cannot run here (None: it can). An import failure, never an exception."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        return f"onnxruntime is not installed ({one_line(exc)}; {EXTRA})"
    return None


def versions() -> dict[str, str]:
    """The versions that produced or run an export (recorded next to it)."""
    import onnxruntime

    out = {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__}
    try:
        import onnx
        out["onnx"] = onnx.__version__
    except ImportError:  # running needs only onnxruntime; exporting needs onnx too
        pass
    return out


def export(model: torch.nn.Module, example: torch.Tensor) -> bytes:
    """The eval-mode forward of ``model`` as ONNX bytes, with a dynamic batch dimension.

    The model is traced in eval mode on its own device and left in the mode it was in. The
    TorchScript-based exporter (``dynamo=False``) is used: it needs only the ``onnx`` package,
    takes seconds rather than tens of seconds here, and exports the timm backbones verikit trains.
    """
    try:
        import onnx  # noqa: F401  (torch.onnx.export needs it to write the file)
    except ImportError as exc:
        raise ModelError(f"exporting to ONNX needs the onnx package ({one_line(exc)}; {EXTRA})") from exc
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    buf = io.BytesIO()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporter's deprecation and tracer notices are not the user's
            torch.onnx.export(model, (example.to(device),), buf, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                              dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                              opset_version=OPSET, dynamo=False)
    except Exception as exc:  # an op the exporter cannot express: the model stays on eager
        raise ModelError(f"this model cannot be exported to ONNX: {one_line(exc)}") from exc
    finally:
        model.train(was_training)
    return buf.getvalue()


class OnnxRunner:
    """An onnxruntime session over an exported embedder: float32 NCHW batch in, embeddings out.

    ``threads`` sets ORT's intra-op pool; it follows ``torch.get_num_threads()`` at creation, so
    ``torch.set_num_threads`` / ``OMP_NUM_THREADS`` limit both backends alike.
    """

    def __init__(self, onnx_bytes: bytes, *, threads: int | None = None, source: str = "ONNX export") -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = int(threads or torch.get_num_threads())
        options.inter_op_num_threads = 1      # one graph, run sequentially: parallelism is inside ops
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3        # errors only: ORT's info lines are not the user's business
        # Idle pool threads sleep instead of spinning: a spinning pool took the cores from image
        # decoding (and from PyTorch, timed in the same process) between batches; measured on 2 cores.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # truncated or foreign bytes: onnxruntime's own reason, on one line
            raise ModelError(f"{source} cannot be loaded by onnxruntime: {one_line(exc)}") from exc
        self.threads = options.intra_op_num_threads

    def run(self, images: np.ndarray) -> np.ndarray:
        return self.session.run([OUTPUT_NAME], {INPUT_NAME: np.ascontiguousarray(images, dtype=np.float32)})[0]

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.run(images.detach().cpu().numpy()))

