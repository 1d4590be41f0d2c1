"""The bundle's runtimes compute in the precision the bundle was checked at, on any CPU: OpenVINO is held
to fp32 for float layers (a CPU with bf16 or AMX units would otherwise run them in bf16), and a runtime
that reports another precision is refused in one line."""
import numpy as np
import pytest

from defectkit.runtime.runner import BundleError, openvino_session

ov = pytest.importorskip("openvino")
pytestmark = pytest.mark.numeric


@pytest.fixture
def tiny_ir(tmp_path):
    """An OpenVINO IR of y = relu(x) @ w: float layers only."""
    from openvino import opset13 as ops
    x = ops.parameter([-1, 4], np.float32, name="x")
    w = ops.constant(np.arange(8, dtype=np.float32).reshape(4, 2) / 7)
    path = tmp_path / "tiny.xml"
    ov.save_model(ov.Model([ops.matmul(ops.relu(x), w, False, False)], [x]), str(path), compress_to_fp16=False)
    return path


def test_openvino_runs_float_layers_in_fp32_here(tiny_ir):
    sess = openvino_session(tiny_ir, 1)
    x = np.array([[1.0, -2.0, 3.0, 1e-3]], np.float32)
    want = np.maximum(x, 0) @ (np.arange(8, dtype=np.float32).reshape(4, 2) / 7)
    got = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    np.testing.assert_allclose(got, want, rtol=1e-6)  # fp32 to the last bit or two (bf16: ~4e-3 off)


def test_a_runtime_that_would_compute_in_bf16_is_refused_in_one_line(tiny_ir, monkeypatch):
    class Bf16Core(ov.Core):  # as OpenVINO answers on a CPU whose bf16 units it uses despite the hint
        def compile_model(self, *args, **kwargs):
            real = super().compile_model(*args, **kwargs)

            class Compiled:
                inputs = real.inputs

                def get_property(self, name):
                    return ov.Type.bf16 if name == "INFERENCE_PRECISION_HINT" else real.get_property(name)
            return Compiled()
    monkeypatch.setattr(ov, "Core", Bf16Core)
    with pytest.raises(BundleError) as e:
        openvino_session(tiny_ir, 1)
    msg = str(e.value)
    assert "\n" not in msg and str(tiny_ir) in msg and "bf16" in msg and "fp32" in msg
