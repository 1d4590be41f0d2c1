"""Member kinds (recipe field `member`): what a kind of model needs of the data, and how the blend
treats it. The kinds themselves are defined and registered in train/ (train/classifier.py,
train/anomaly.py), or by a plugin.

A kind is a class registered with `@register_member("name")`: `needs_defects` (every fold validates
on defects: a classifier; the anomaly member learns from good images and takes folds without any),
`on_trial` (the blend keeps it only if the fold-wise cross-check with it beats the one without; the
fold's record carries it, so the blend never asks for the kind), `fit(cfg, arch, fold, layout, opts)`
(one fold, run as the FitOptions `opts` say: its files and its FoldRecord, through
train.fold.write_fold_outputs)
`build(checkpoint)` (the model a checkpoint rebuilds, in eval mode) and, for a kind with maps of its own,
`patch_scores(model, images, mean, std)` (explain.py's map instead of a Grad-CAM).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from defectkit.core.registry import MEMBERS

register_member = MEMBERS.register  # class decorator: a MemberKind available as recipe field member: NAME


@dataclass(frozen=True)
class FitOptions:
    """How one fold's training runs, never what it learns: progress bars, `resume` from its last
    checkpoint, `force` (train again over a complete fold of another recipe), and `on_epoch_end(epoch)`
    called after every epoch of a kind that has epochs."""
    progress: bool = True
    resume: bool = False
    force: bool = False
    on_epoch_end: Callable[[int], None] | None = None


QUIET = FitOptions(progress=False)


def get_member(name: str) -> MemberKind:
    return MEMBERS.lookup(name or "classifier")()


class MemberKind:
    name: ClassVar[str] = ""
    needs_defects: ClassVar[bool] = True
    on_trial: ClassVar[bool] = False

    def fit(self, cfg, arch: str, fold, layout, opts: FitOptions):
        raise NotImplementedError

    def build(self, ck):
        raise NotImplementedError

    def patch_scores(self, model, images, mean, std):
        """(N, h, w) of where a model of this kind finds each uint8 NHWC image unusual, or None: explain.py
        then shows a classifier's Grad-CAM."""
        return None
