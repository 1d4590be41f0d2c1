"""Score new images with the blended ensemble that blend.py chose (submissions/blend.json).

    python src/predict.py --competition elpv input/elpv/test/ --out preds.csv
    python src/predict.py --competition elpv a.png b.png --operating-point recall_99
    python src/predict.py --competition elpv ids.csv --image-dir /data/today --threshold 0.5 --skip-bad
    python src/predict.py --competition elpv input/elpv/test/ --meta input/elpv/test.csv   # stack + --stack-meta

Input: a folder (every image in it), image files, or a CSV with an `id` column (--id-col) whose
images are <image-dir>/<id><image_ext> (default: the competition's test folder). Every fold
model of every blended experiment scores each image with its recipe's size, resize mode, border
crop and TTA (as train.py predicted the test set, the frozen-feature cache's float16 rounding
included), and the experiments are combined exactly as blend.py does (in rank space, a new
prediction is ranked against that fold model's own OOF predictions; a full-data refit's, when the
blend used refits, against all the experiment's OOF predictions). Output: a CSV with
`id, prob, defect` (prob: the blend's score, on blend.py's scale; defect: prob >= the threshold of
--operating-point, chosen on OOF predictions, or --threshold). Unreadable images are one error
listing them, or with --skip-bad are reported and left out. Nothing is written unless all is well.
"""
import sys

from defectkit.cli.predict import main

if __name__ == "__main__":
    sys.exit(main())
