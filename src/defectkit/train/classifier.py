"""The classifier member (recipe `member: classifier`, the default): a timm backbone and head trained on
both classes by train/fold.py's FoldTrainer."""
from __future__ import annotations

from defectkit.core.members import FitOptions, MemberKind, register_member
from defectkit.train.fold import FoldTrainer, prepare_outputs
from defectkit.train.models import create_model


@register_member("classifier")
class Classifier(MemberKind):
    """Every fold validates on both classes; its model is the backbone and a one-logit head."""

    def fit(self, cfg, arch, fold, layout, opts: FitOptions):
        trainer = FoldTrainer(cfg, arch, fold, layout, opts.progress)
        prepare_outputs(layout.fold(cfg.exp_name(arch), fold))
        return trainer.fit(opts.resume, opts.on_epoch_end)

    def build(self, ck):
        model, _ = create_model(ck.arch, pretrained="none", num_classes=1, pool=ck.recipe.get("pool", "avg"))
        model.load_state_dict(ck.model)
        return model.eval()
