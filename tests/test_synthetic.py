"""Synthetic defects (data/synthetic.py): each kind changes its area and nothing far from it, the same seed
draws the same defects, every kind and size comes about equally often, and a detector that knows the good
images finds them while one that does not cannot."""
import cv2
import numpy as np
import pandas as pd
import pytest

from defectkit.core.checks import InputError
from defectkit.core.metrics import auc
from defectkit.data.synthetic import KINDS, SIZES, make_defect, synthetic_set


def _good(n: int, seed: int = 0, hw=(64, 96)) -> np.ndarray:
    """Aligned good images: one smooth pattern (a cell's structure), a little noise, a small shift in level."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:hw[0], 0:hw[1]]
    base = 110 + 40 * np.sin(xx / 9.0) * np.cos(yy / 13.0)
    out = [np.clip(base + rng.normal(0, 4, hw) + rng.normal(0, 3), 0, 255) for _ in range(n)]
    return np.repeat(np.stack(out).astype(np.uint8)[..., None], 3, axis=3)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("size", SIZES)
def test_a_defect_changes_its_area_and_nothing_far_from_it(kind, size):
    img, donor = _good(2)
    out, mask = make_defect(img, kind, size, np.random.default_rng(3), donor)
    assert out.shape == img.shape and out.dtype == np.uint8 and mask.shape == img.shape[:2] and mask.any()
    changed = np.abs(out.astype(int) - img.astype(int)).max(2) > 0
    assert changed[mask].mean() > 0.5  # the defect is where its mask says
    reach = int(size * min(img.shape[:2])) + 3  # a soft edge reaches a little beyond the mask
    near = cv2.dilate(mask.astype(np.uint8), np.ones((2 * reach + 1, 2 * reach + 1), np.uint8)) > 0
    assert not changed[~near].any()
    assert mask.mean() < 4 * size  # a defect, not the whole image


def test_the_same_seed_draws_the_same_defects_and_every_kind_and_size_comes_as_often():
    good = _good(30)
    a, ma, ta = synthetic_set(good, seed=5)
    b, mb, tb = synthetic_set(good, seed=5)
    c, _, _ = synthetic_set(good, seed=6)
    assert np.array_equal(a, b) and np.array_equal(ma, mb) and ta.equals(tb) and not np.array_equal(a, c)
    assert list(ta.columns) == ["source", "kind", "size", "area"] and list(ta.source) == list(range(30))
    assert ta.kind.value_counts().tolist() == [6] * 5 and ta["size"].value_counts().max() <= 10
    with pytest.raises(InputError, match="expected one of patch, scratch"):
        make_defect(good[0], "crack", 0.1, np.random.default_rng(0))
    with pytest.raises(InputError, match="at least 2"):
        synthetic_set(good[:1], seed=0)


def test_a_detector_that_knows_the_good_images_finds_them_and_one_that_does_not_cannot():
    train, fresh = _good(40, seed=1), _good(60, seed=2)
    defects, _, table = synthetic_set(_good(60, seed=3), seed=0)
    ref = np.median(train.astype(np.float32), 0)

    def knows(imgs):  # the largest local deviation from the good images' median
        dev = np.abs(imgs.astype(np.float32) - ref).mean(3)
        return np.array([cv2.blur(d, (5, 5)).max() for d in dev])

    def blind(imgs):  # the image's own mean: what a defect of either sign does not move on average
        return imgs.reshape(len(imgs), -1).mean(1)

    y = np.r_[np.zeros(len(fresh)), np.ones(len(defects))]
    found = {k: auc(np.r_[np.zeros(len(fresh)), np.ones(int((table.kind == k).sum()))],
                    np.r_[knows(fresh), knows(defects[(table.kind == k).to_numpy()])]) for k in KINDS}
    # measured: patch 0.94, scratch 1.0, blob 0.95, brightness 1.0; blur 0.59, as a blur only moves what
    # has detail, and these images are smooth but for their noise
    assert all(found[k] > 0.85 for k in KINDS if k != "blur"), found
    assert abs(auc(y, np.r_[blind(fresh), blind(defects)]) - 0.5) < 0.2


def test_the_blend_estimates_recall_on_the_members_common_synthetic_defects_and_only_on_those():
    """Operating points from good images' scores get the share of synthetic defects above each threshold,
    from the blend of the members' scores of the same defects; members that scored different defects
    (another seed) give no estimate rather than a wrong one."""
    from defectkit.ensemble.experiments import Experiment
    from defectkit.ensemble.methods import MeanBlend, synthetic_matrix, synthetic_recall

    def member(preds, ids=None):
        t = pd.DataFrame({"id": ids or [f"synthetic-0-{i}" for i in range(len(preds))],
                          "kind": ["patch", "scratch"] * (len(preds) // 2), "pred": preds})
        return Experiment("m", np.zeros(4), [np.zeros(2)], np.zeros(4, int), synthetic=[t])

    a, b = member([0.9, 0.2, 0.7, 0.6]), member([0.7, 0.4, 0.7, 0.4])  # blended: 0.8, 0.3, 0.7, 0.5
    ops = {"chosen": {"threshold": 0.6}, "false_alarm_0.1pct": {"threshold": 0.75}}
    syn = synthetic_recall(synthetic_matrix([a, b]), MeanBlend().fit(np.zeros((4, 2)), None), ops)
    assert ops["chosen"]["synthetic_recall"] == 0.5 and ops["false_alarm_0.1pct"]["synthetic_recall"] == 0.25
    assert syn["n"] == 4 and syn["chosen_by_kind"] == {"patch": 1.0, "scratch": 0.0}
    other_seed = member([0.7, 0.4, 0.3, 0.8], ids=[f"synthetic-0-{i}" for i in (1, 0, 2, 3)])
    ops = {"chosen": {"threshold": 0.6}}
    assert synthetic_recall(synthetic_matrix([a, other_seed]), MeanBlend().fit(np.zeros((4, 2)), None), ops) is None
    assert "synthetic_recall" not in ops["chosen"]
    assert synthetic_recall(synthetic_matrix([a, Experiment("c", np.zeros(4), [np.zeros(2)], np.zeros(4, int))]),
                            MeanBlend().fit(np.zeros((4, 2)), None), ops) is None  # a classifier has none


def test_without_defects_the_mean_keeps_the_members_the_yardstick_says_help_and_drops_a_blind_one():
    """Forward selection on the synthetic AUC: a member that sees half the kinds, one that sees the other
    half (the blend beats both), one that sees nothing (left out); a single member: no choice."""
    from defectkit.ensemble.experiments import Experiment
    from defectkit.ensemble.methods import choose_by_yardstick, synthetic_matrix
    rng = np.random.default_rng(0)
    n = 200
    kinds = np.array(["patch", "scratch"] * (n // 2))
    good = rng.normal(0.3, 0.05, (n, 3))
    sees_patch = np.where(kinds == "patch", 0.6, 0.3) + rng.normal(0, 0.05, n)
    sees_scratch = np.where(kinds == "scratch", 0.6, 0.3) + rng.normal(0, 0.05, n)
    blind = rng.normal(0.3, 0.05, n)

    def member(name, preds):
        t = pd.DataFrame({"id": [f"synthetic-0-{i}" for i in range(n)], "kind": kinds, "pred": preds})
        return Experiment(name, np.zeros(n), [np.zeros(2)], np.zeros(n, int), synthetic=[t])
    exps = [member("blind", blind), member("patch", sees_patch), member("scratch", sees_scratch)]
    names = [e.name for e in exps]
    chosen = choose_by_yardstick(synthetic_matrix(exps), good, np.zeros(n, int), names)
    assert list(chosen["weights"]) == [0.0, 0.5, 0.5]
    assert chosen["aucs"]["blend"] > max(chosen["aucs"]["patch"], chosen["aucs"]["scratch"]) + 0.1
    assert abs(chosen["aucs"]["blind"] - 0.5) < 0.1 and "not a result" in chosen["note"]
    assert choose_by_yardstick(synthetic_matrix(exps[1:2]), good[:, :1], np.zeros(n, int), names[1:2]) is None
    # a few real defects join the yardstick (half its say): the one member that sees them is kept first
    y = np.r_[np.zeros(n, int), np.ones(3, int)]
    real = np.array([[0.3, 0.3, 0.9]] * 3)  # only "scratch" scores them above the good rows
    chosen = choose_by_yardstick(synthetic_matrix(exps), np.r_[good, real], y, names)
    assert chosen["weights"][2] > 0 and "the 3 real one(s) held out" in chosen["note"]
    assert chosen["aucs"]["scratch"] > chosen["aucs"]["patch"] + 0.2
