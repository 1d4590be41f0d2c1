"""The survey: the training images' count and median size, the test images' count (a seeded sample of up
to 48 images decoded: their sizes and the seconds one decode and resize takes)."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from defectkit.core.config import Config
from defectkit.core.layout import Layout
from defectkit.data.tables import load_test_ids, load_train_table
from defectkit.runtime.imaging import fit_image, read_image
from defectkit.train.planner.cost import Survey


def survey(cfg: Config, base: Path, n_sample: int = 48) -> Survey:
    """The images' count and shape, from the tables and a seeded sample of training images."""
    comp, layout = cfg.competition, Layout(base)
    train = load_train_table(comp, layout, check_images=False)
    ids = train[comp.id_col].astype(str).to_numpy()
    pick = np.random.default_rng(0).permutation(len(ids))[:n_sample]
    sizes, t0 = [], time.perf_counter()
    for i in ids[pick]:
        img = read_image(layout.train_dir(comp) / f"{i}{comp.image_ext}")
        sizes.append(img.shape[:2])
        fit_image(img, (224, 224))
    decode = (time.perf_counter() - t0) / max(len(pick), 1)
    hw = np.array(sizes, float)
    aspect = hw[:, 1] / hw[:, 0]
    lo, hi = np.quantile(aspect, [0.05, 0.95])
    return Survey(len(ids), len(load_test_ids(comp, layout)), (int(np.median(hw[:, 0])), int(np.median(hw[:, 1]))),
                  float(lo), float(hi), float(decode), int(train[comp.target_col].sum()))
