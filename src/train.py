"""Train one backbone on one fold, keep the best epoch by validation AUC, and write its
out-of-fold and test predictions with test-time augmentation.

    python src/train.py --competition elpv --fold 0 --arch tf_efficientnet_lite0
    python src/train.py --competition elpv --fold 0 --arch resnet50 --pretrained hub --epochs 15 --tta 8

Writes (exp = the recipe's name, default the arch):
    models/<exp>/fold<k>.pt            best checkpoint (weights used for predictions)
    models/<exp>/fold<k>_last.pt       last epoch, with optimizer/scheduler/scaler/EMA state (--resume)
    models/<exp>/fold<k>_log.csv, fold<k>_curves.png, fold<k>_config.yaml
    oof/<exp>/fold<k>.csv              id, target, fold, pred   (validation rows of fold k)
    oof/<exp>/test_fold<k>.csv         id, pred                 (test rows, this fold's model)
    oof/<exp>/fold<k>.json             folds hash, config, scores; written last = fold complete

A fold is trained under a lock (models/<exp>/fold<k>.lock): a second process asking for the
same fold stops with a message naming the holder. Every fold of an experiment comes from one
recipe and one folds file: replacing a complete fold made otherwise needs --force.
"""
import sys

from defectkit.cli.train import main

if __name__ == "__main__":
    sys.exit(main())
