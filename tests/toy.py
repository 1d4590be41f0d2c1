"""A tiny made-up competition that a model can learn in seconds: grey noise cells, the
defective ones crossed by a bright scratch at a random place and angle."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import yaml

TOY_RECIPE = {"archs": ["test_efficientnet"], "n_folds": 2, "img_size": 32, "epochs": 4, "batch_size": 16,
              "lr": 3e-3, "backbone_lr_factor": 1.0, "warmup_epochs": 0.5, "pretrained": "none", "tta": 2,
              "aug": "light", "num_workers": 0, "drop_rate": 0.0}


def toy_image(rng: np.random.Generator, defect: bool, size: int = 40) -> np.ndarray:
    img = rng.normal(90, 18, (size, size)).clip(0, 255).astype(np.uint8)
    if defect:
        x0, y0 = rng.integers(4, size - 4, 2)
        angle = rng.uniform(0, np.pi)
        dx, dy = np.cos(angle) * size * 0.35, np.sin(angle) * size * 0.35
        cv2.line(img, (int(x0 - dx), int(y0 - dy)), (int(x0 + dx), int(y0 + dy)), 230, 2)
    return img


def make_toy_competition(out: Path, n_train: int = 96, n_test: int = 32, seed: int = 0,
                         name: str = "toy", sub_cols=("id", "target")) -> Path:
    """input/<name>/ in Kaggle's shape, with solution.csv; half of the images are defects."""
    rng = np.random.default_rng(seed)
    root = out / "input" / name
    (root / "train").mkdir(parents=True, exist_ok=True)
    (root / "test").mkdir(parents=True, exist_ok=True)
    y = rng.permutation(np.arange(n_train + n_test) % 2)
    ids = [f"img{i:04d}" for i in range(n_train + n_test)]
    for i, (id_, t) in enumerate(zip(ids, y)):
        cv2.imwrite(str(root / ("train" if i < n_train else "test") / f"{id_}.png"), toy_image(rng, bool(t)))
    pd.DataFrame({"id": ids[:n_train], "target": y[:n_train]}).to_csv(root / "train.csv", index=False)
    pd.DataFrame({sub_cols[0]: ids[n_train:], sub_cols[1]: 0.5}).to_csv(root / "sample_submission.csv", index=False)
    pd.DataFrame({"id": ids[n_train:], "target": y[n_train:], "Usage": "Public"}).to_csv(root / "solution.csv", index=False)
    return root


def write_toy_config(base: Path, name: str = "toy", **recipe) -> Path:
    path = base / "configs" / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"competition": {"name": name, "source": {"type": "toy"}},
                                    "recipe": {**TOY_RECIPE, **recipe}}))
    return path


def make_toy_workdir(base: Path) -> Path:
    from config import load_config
    from make_folds import make_folds
    make_toy_competition(base)
    cfg = load_config(write_toy_config(base))
    make_folds(cfg.competition, cfg.recipe.n_folds, cfg.recipe.seed, base=base)
    return base
