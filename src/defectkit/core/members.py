"""Member kinds (recipe field `member`), registered by name: what a kind of model needs of the data,
how the blend treats it, and where its fold training and its model's rebuilding live.

A kind is a class registered with `@register_member("name")`: `needs_defects` (every fold validates
on defects: a classifier; the anomaly member learns from good images and takes folds without any),
`on_trial` (the blend keeps it only if the fold-wise cross-check with it beats the one without),
`fit(cfg, arch, fold, layout, progress, resume, on_epoch_end)` (one fold: its files and its
FoldRecord, through train.fold.write_fold_outputs) and `build(checkpoint)` (the model a checkpoint
rebuilds, in eval mode). The imports of torch stay inside the methods: this module is read by the
blend, which never needs torch.
"""
from __future__ import annotations

from typing import ClassVar

from defectkit.core.registry import Registry

MEMBERS = Registry("member")
register_member = MEMBERS.register  # class decorator: a MemberKind available as recipe field member: NAME


def get_member(name: str) -> MemberKind:
    return MEMBERS.lookup(name or "classifier")()


class MemberKind:
    name: ClassVar[str] = ""
    needs_defects: ClassVar[bool] = True
    on_trial: ClassVar[bool] = False

    def fit(self, cfg, arch: str, fold, layout, progress: bool = True, resume: bool = False, on_epoch_end=None):
        raise NotImplementedError

    def build(self, ck):
        raise NotImplementedError


@register_member("classifier")
class Classifier(MemberKind):
    """A timm backbone and head trained on both classes (train/fold.py's FoldTrainer)."""

    def fit(self, cfg, arch, fold, layout, progress=True, resume=False, on_epoch_end=None):
        from defectkit.train.fold import FoldTrainer, prepare_outputs
        trainer = FoldTrainer(cfg, arch, fold, layout, progress)
        prepare_outputs(layout.fold(cfg.exp_name(arch), fold))
        return trainer.fit(resume, on_epoch_end)

    def build(self, ck):
        from defectkit.train.models import create_model
        model, _ = create_model(ck.arch, pretrained="none", num_classes=1, pool=ck.recipe.get("pool", "avg"))
        model.load_state_dict(ck.model)
        return model.eval()


@register_member("anomaly")
class Anomaly(MemberKind):
    """A memory bank of the good training images' patch features (train/anomaly.py): no epochs."""

    needs_defects = False
    on_trial = True

    def fit(self, cfg, arch, fold, layout, progress=True, resume=False, on_epoch_end=None):
        from defectkit.train.anomaly import fit_anomaly_fold
        from defectkit.train.fold import prepare_outputs
        prepare_outputs(layout.fold(cfg.exp_name(arch), fold))
        return fit_anomaly_fold(cfg, arch, fold, layout, progress)

    def build(self, ck):
        from defectkit.train.anomaly import load_anomaly_net
        return load_anomaly_net(ck)
