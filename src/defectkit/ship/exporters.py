"""Exporters: how one fold model becomes a file the bundle's runner can score, registered by name.

An exporter is a class registered with `@register_exporter("onnx")`: `suffix` (the model file's),
`runtime` (the runner's session that loads it, runtime/runner.py RUNTIMES) and
`export(net, example, path, precision, calib)`, where `net` maps uint8 (B, H, W, 3) RGB images to
(B,) defect probabilities (normalisation and TTA inside), `example` is an input of the right shape,
`precision` is fp32 or int8 and `calib` holds images of the training set at the model's size (int8:
static quantisation calibrated on them; a submodule whose class says `keep_fp32 = True`, such as the
anomaly member's nearest-neighbour distances, stays in fp32). `python src/export.py --target NAME
--precision P` picks one; bundle.json records its runtime and precision.
"""
from __future__ import annotations

import importlib
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from defectkit.core.checks import InputError
from defectkit.core.registry import EXPORTERS
from defectkit.runtime.runner import RUNTIMES, onnx_session, run_model


def register_exporter(name: str):
    """Class decorator: an Exporter available as export.py --target NAME; with `runtime_module`, the
    runtime that scores its files is registered with it (the runner's RUNTIMES), and travels in every
    bundle it writes."""
    def deco(cls):
        EXPORTERS.register(name)(cls)
        if cls.runtime_module:
            RUNTIMES[cls.runtime] = importlib.import_module(cls.runtime_module).session
        return cls
    return deco

PRECISIONS = ("fp32", "int8")


def get_exporter(name: str) -> Exporter:
    return EXPORTERS.lookup(name)()


class Exporter:
    name: ClassVar[str] = ""
    suffix: ClassVar[str] = ""
    runtime: ClassVar[str] = ""
    # An outside runtime: the import name of a module (standard library, numpy and the runtime's own package
    # only) whose `session(path, threads, alone)` opens a model file; copied into every bundle this writes.
    runtime_module: ClassVar[str] = ""
    precisions: ClassVar[tuple] = ("fp32",)

    def export(self, net: nn.Module, example: torch.Tensor, path: Path, precision: str = "fp32",
               calib: np.ndarray | None = None) -> dict | None:
        """Write the model file; may return a note on it (what int8 kept in fp32) for the log."""
        raise NotImplementedError

    def versions(self) -> dict:
        return {}

    def check_precision(self, precision: str) -> None:
        if precision not in self.precisions:
            raise InputError(f"--precision {precision!r}: the {self.name} target writes "
                             f"{' or '.join(self.precisions)}")


def onnx_fp32(net: nn.Module, example: torch.Tensor, path: Path, opset: int = 17) -> None:
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter: no onnxscript needed
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # sizes traced as constants: a model's input
        # size is fixed (only the batch axis is dynamic), so 'same' padding and feature-level resizes hold
        torch.onnx.export(net, (example,), str(path), input_names=["images"], output_names=["prob"],
                          dynamic_axes={"images": {0: "batch"}, "prob": {0: "batch"}}, opset_version=opset,
                          dynamo=False)


def fp32_scopes(net: nn.Module) -> list[str]:
    """The ONNX node-name prefixes of the submodules that must stay in fp32 (`keep_fp32 = True`):
    the TorchScript exporter names a module's nodes by its path, /a/b/ for net.a.b."""
    return [f"/{name.replace('.', '/')}/" for name, m in net.named_modules() if name and getattr(m, "keep_fp32", False)]


MIN_INT8_CORR = 0.998  # int8 vs fp32 scores on the calibration images, below which more layers stay fp32


def quantize_int8(src: Path, dst: Path, calib: np.ndarray, keep: tuple = (), start: int = 0) -> dict:
    """onnxruntime static quantisation (QDQ, int8 weights per channel, activations per tensor) of the
    convolutions and matrix products, calibrated on `calib` (uint8 NHWC images). The first layers
    see the widest per-channel ranges, which one scale per tensor serves worst (on ELPV's lite0 the
    whole net in int8 lost 0.03 of AUC, with the first 8 of 50 convolutions in fp32 0.001): the
    first k stay in fp32, k the smallest of 0, 2, 4, 8, ... whose int8 scores on the calibration
    images correlate with the fp32 ones at MIN_INT8_CORR or more. Nodes named under a `keep` prefix
    stay in fp32 and are not counted. The ladder starts at `start` (the k a sibling of this graph needed:
    its experiment's previous fold). Returns {fp32_layers, layers, corr}."""
    import onnx
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        nodes = [n.name for n in onnx.load(str(pre)).graph.node if n.op_type in ("Conv", "MatMul", "Gemm")]
        fixed = [n for n in nodes if n.startswith(tuple(keep))]
        layers = [n for n in nodes if n not in fixed]
        want = run_model(onnx_session(src, 1), calib, 1, f"{dst.name}: the fp32 model")
        best, n = None, len(layers)
        for k in sorted({min(k, n) for k in [0] + [2 ** i for i in range(1, max(1, n).bit_length() + 1)]
                         if min(k, n) >= min(start, n)}):
            out = Path(tmp) / f"q{k}.onnx"
            _quantize(pre, out, calib, fixed + layers[:k])
            got = run_model(onnx_session(out, 1), calib, 1, f"{dst.name}: the int8 trial with {k} layers in fp32")
            corr = float(np.corrcoef(got, want)[0, 1]) if np.std(got) > 0 and np.std(want) > 0 else 1.0
            if best is None or corr > best[1]:
                best = (k, corr, out)
            if corr >= MIN_INT8_CORR or k == len(layers):
                break
        k, corr, out = best
        shutil.copyfile(out, dst)
    return {"fp32_layers": k, "layers": len(layers), "corr": round(corr, 5)}


def _quantize(pre: Path, out: Path, calib: np.ndarray, keep_fp32: list[str]) -> None:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{"images": calib[i:i + 1]} for i in range(len(calib))])

        def get_next(self):
            return next(self.batches, None)
    quantize_static(str(pre), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8,
                    op_types_to_quantize=["Conv", "MatMul", "Gemm"], nodes_to_exclude=keep_fp32)


@register_exporter("onnx")
class OnnxExporter(Exporter):
    """ONNX (opset 17) through the TorchScript exporter, a dynamic batch axis; run by onnxruntime.
    int8: onnxruntime's static quantisation (QDQ)."""

    suffix = ".onnx"
    runtime = "onnxruntime"
    precisions = PRECISIONS
    opset = 17

    def __init__(self):
        self.ladder_start = {}  # a graph's shapes -> the fp32 layers its last int8 export needed

    def export(self, net, example, path, precision="fp32", calib=None):
        if precision == "fp32":
            return onnx_fp32(net, example, path, self.opset)
        shapes = tuple((k, tuple(v.shape)) for k, v in net.state_dict().items())  # one experiment's folds: equal
        with tempfile.TemporaryDirectory() as tmp:
            onnx_fp32(net, example, Path(tmp) / "fp32.onnx", self.opset)
            note = quantize_int8(Path(tmp) / "fp32.onnx", path, calib, tuple(fp32_scopes(net)),
                                 self.ladder_start.get(shapes, 0))
        self.ladder_start[shapes] = note["fp32_layers"]
        return note

    def versions(self):
        import onnx
        import onnxruntime
        return {"onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__, "opset": self.opset}


@register_exporter("openvino")
class OpenVinoExporter(OnnxExporter):
    """OpenVINO IR (model.xml + model.bin), converted from the ONNX graph (int8: from its QDQ form, which
    OpenVINO runs with int8 kernels); run by the openvino runtime."""

    suffix = ".xml"
    runtime = "openvino"

    def export(self, net, example, path, precision="fp32", calib=None):
        import openvino as ov
        with tempfile.TemporaryDirectory() as tmp:
            onnx_path = Path(tmp) / "model.onnx"
            info = super().export(net, example, onnx_path, precision, calib)
            ov.save_model(ov.convert_model(str(onnx_path)), str(path), compress_to_fp16=False)
        return info

    def versions(self):
        import openvino
        return {**super().versions(), "openvino": openvino.__version__}
