"""Named training recipes that fit the hardware, independent of any competition.

A competition's YAML picks one (`recipe: {preset: auto}`, or a name) and overrides fields;
`auto` takes `cpu-fast` when no CUDA device will be used and `gpu` when one will. Order of
precedence: Recipe defaults < preset < the YAML's recipe fields < command-line flags.

cpu-fast   A laptop or 2-core CPU, any binary inspection set of 100 to a few thousand images.
           Two ImageNet EfficientNet-Lites at 160 px; each one's stem and first 5 stages stay
           frozen and run once per image and symmetry (a float16 cache), the last 2 stages
           and the head are fine-tuned on that output for 5 epochs; TTA x4.
cpu-300    The same scheme at 300 px, one backbone, 8 epochs, TTA x8: fine defects a few
           pixels wide, at about 3x the time of cpu-fast.
gpu        One GPU: three EfficientNet-Lites fully fine-tuned at 300 px for 20 epochs with
           strong augmentation, EMA of weights and TTA x8.
gpu-large  One GPU and more time: the same at 384 px for 30 epochs with mixup.
"""
from __future__ import annotations

LITES = ["tf_efficientnet_lite0", "tf_efficientnet_lite1", "tf_efficientnet_lite2"]

_CPU = {"archs": LITES[:2], "name": "{arch}_cpu{img_size}", "img_size": 160, "freeze_stages": 6,
        "cache_frozen": True, "aug": "light", "epochs": 5, "batch_size": 64, "lr": 4.0e-3,
        "backbone_lr_factor": 0.25, "weight_decay": 1.0e-2, "warmup_epochs": 0.5, "drop_rate": 0.3,
        "ema": 0.0, "tta": 4, "mixup": 0.0}

_GPU = {"archs": LITES, "name": "{arch}_{img_size}", "img_size": 300, "freeze_stages": 0,
        "cache_frozen": False, "aug": "strong", "epochs": 20, "batch_size": 32, "lr": 1.0e-3,
        "backbone_lr_factor": 0.3, "weight_decay": 1.0e-2, "warmup_epochs": 1.0, "drop_rate": 0.3,
        "ema": 0.999, "tta": 8, "mixup": 0.0,
        "checkpoint_s": 30.0}  # a GPU epoch takes seconds: a resumable checkpoint every epoch would cost more

PRESETS: dict[str, dict] = {
    "cpu-fast": _CPU,
    "cpu-300": {**_CPU, "archs": LITES[:1], "img_size": 300, "epochs": 8, "lr": 3.0e-3, "tta": 8},
    "gpu": _GPU,
    "gpu-large": {**_GPU, "name": "{arch}_{img_size}L", "img_size": 384, "epochs": 30, "mixup": 0.3},
}

AUTO = {"cpu": "cpu-fast", "cuda": "gpu"}


def resolve_preset(name: str, device: str = "auto") -> str:
    """The preset `name` stands for: `auto` follows the device the run will use."""
    if name != "auto":
        return name
    if device == "auto":
        import torch
        kind = "cuda" if torch.cuda.is_available() else "cpu"
    else:
        kind = "cuda" if device.startswith("cuda") else "cpu"
    return AUTO[kind]
