"""Exporters: how one fold model becomes a file the bundle's runner can score, registered by name.

An exporter is a class registered with `@register_exporter("onnx")`: `suffix` (the model file's),
`runtime` (the runner's session that loads it, ship/runtime/runner.py RUNTIMES) and
`export(net, example, path)`, where `net` maps uint8 (B, H, W, 3) RGB images to (B,) defect
probabilities (normalisation and TTA inside) and `example` is an input of the right shape.
`python src/export.py --exporter NAME` picks one; bundle.json records its runtime.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import ClassVar

import torch
from torch import nn

from defectkit.core.registry import Registry

EXPORTERS = Registry("--exporter")
register_exporter = EXPORTERS.register  # class decorator: an Exporter available as export.py --exporter NAME


def get_exporter(name: str) -> Exporter:
    return EXPORTERS.lookup(name)()


class Exporter:
    name: ClassVar[str] = ""
    suffix: ClassVar[str] = ""
    runtime: ClassVar[str] = ""

    def export(self, net: nn.Module, example: torch.Tensor, path: Path) -> None:
        raise NotImplementedError

    def versions(self) -> dict:
        return {}


@register_exporter("onnx")
class OnnxExporter(Exporter):
    """ONNX (opset 17) through the TorchScript exporter, a dynamic batch axis; run by onnxruntime."""

    suffix = ".onnx"
    runtime = "onnxruntime"
    opset = 17

    def export(self, net, example, path):
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter: no onnxscript needed
            torch.onnx.export(net, (example,), str(path), input_names=["images"], output_names=["prob"],
                              dynamic_axes={"images": {0: "batch"}, "prob": {0: "batch"}}, opset_version=self.opset,
                              dynamo=False)

    def versions(self):
        import onnx
        import onnxruntime
        return {"onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__, "opset": self.opset}
