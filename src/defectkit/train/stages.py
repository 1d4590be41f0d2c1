"""Stage tables: what a "stage" is for a backbone family, in one place, registered by family.

A table names the modules of a model, input to output: its `stem`, its `stages` (the unit of
`freeze_stages`: the stem counts as stage 1, then each of these), and its `tail` (after the last
stage, before the pooling and classifier). Freezing (which parameters stay fixed) and the
frozen-feature cache (which modules run once per image) both read it, so the two can never
disagree. A family without a table can still freeze stages by timm's own coarse grouping
(`group_matcher`), but not cache them.

    register_stages("convnext", matches=lambda m: hasattr(m, "stem") and hasattr(m, "stages"),
                    stem=lambda m: [m.stem], stages=lambda m: list(m.stages), tail=lambda m: [m.norm_pre])
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

Modules = Callable[[nn.Module], list[nn.Module]]


@dataclass(frozen=True)
class StageTable:
    name: str
    matches: Callable[[nn.Module], bool]
    stem: Modules
    stages: Modules
    tail: Modules


STAGE_TABLES: dict[str, StageTable] = {}


def register_stages(name: str, matches: Callable[[nn.Module], bool], stem: Modules, stages: Modules,
                    tail: Modules = lambda m: []) -> StageTable:
    STAGE_TABLES[name] = table = StageTable(name, matches, stem, stages, tail)
    return table


def table_for(model: nn.Module) -> StageTable | None:
    """The first registered table that matches the model's structure, or None."""
    return next((t for t in STAGE_TABLES.values() if t.matches(model)), None)


# timm's EfficientNet / MobileNet family (conv_stem, bn1, blocks, then conv_head and bn2 before the
# pooling; MobileNetV3 has its conv_head after the pooling, in forward_head)
register_stages("efficientnet",
                matches=lambda m: hasattr(m, "conv_stem") and isinstance(getattr(m, "blocks", None), nn.Sequential),
                stem=lambda m: [m.conv_stem, m.bn1], stages=lambda m: list(m.blocks),
                tail=lambda m: [m.conv_head, m.bn2] if hasattr(m, "bn2") else [])
# timm's ResNet family (conv1, bn1, act1, maxpool, layer1..4)
register_stages("resnet", matches=lambda m: hasattr(m, "layer4") and hasattr(m, "conv1"),
                stem=lambda m: [m.conv1, m.bn1, m.act1, m.maxpool],
                stages=lambda m: [m.layer1, m.layer2, m.layer3, m.layer4])
