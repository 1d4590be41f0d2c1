import pandas as pd
import pytest

from defectkit.core.checks import InputError
from defectkit.core.config import Competition, load_config
from defectkit.ship.submit import Submission, submit
from defectkit.testing import make_blend_workdir


class FakeKaggleApi:
    def __init__(self):
        self.calls = []

    def competition_submit(self, file_name, message, competition):
        self.calls.append((file_name, message, competition))


@pytest.fixture
def work(tmp_path):
    make_blend_workdir(tmp_path, comp=Competition(name="nex", submission_columns=["id", "label"]))
    sample = pd.read_csv(tmp_path / "input/nex/sample_submission.csv")
    (tmp_path / "submissions").mkdir()
    sample.assign(label=0.25).to_csv(tmp_path / "submissions/submission.csv", index=False)
    comp = load_config(tmp_path / "configs/nex.yaml").competition
    comp.source = {"type": "kaggle", "slug": "nexperia-comp"}
    return tmp_path, comp, sample


def test_valid_submission_is_submitted_with_the_api(work):
    base, comp, _ = work
    api = FakeKaggleApi()
    msg = submit(comp, base, Submission("first try"), api=api)
    assert api.calls == [(str(base / "submissions/submission.csv"), "first try", "nexperia-comp")]
    assert "submitted" in msg


def test_dry_run_validates_without_calling_kaggle(work):
    base, comp, _ = work
    api = FakeKaggleApi()
    assert "dry run" in submit(comp, base, Submission("m", dry_run=True), api=api) and not api.calls


@pytest.mark.parametrize("corrupt, match", [
    (lambda s: s.rename(columns={"label": "target"}),
     r"columns \['id', 'target'\]; expected exactly \['id', 'label'\]"),
    (lambda s: s.iloc[::-1], "row 2: id 'r00499', expected 'r00400'"),
    (lambda s: s.iloc[:-1], "99 rows; .* has 100"),
    (lambda s: s.assign(label=[float("nan")] + [0.5] * (len(s) - 1)), "row 2: 'label' = empty; expected a probability"),
    (lambda s: s.assign(label=[1.5] + [0.5] * (len(s) - 1)),
     r"row 2: 'label' = 1.5; expected a probability in \[0, 1\]"),
])
def test_bad_submission_is_refused_before_submitting(work, corrupt, match):
    base, comp, sample = work
    corrupt(sample.assign(label=0.5)).to_csv(base / "submissions/submission.csv", index=False)
    api = FakeKaggleApi()
    with pytest.raises(InputError, match=match):
        submit(comp, base, Submission("m"), api=api)
    assert not api.calls


def test_no_credentials_is_a_clear_error(work, monkeypatch, tmp_path):
    base, comp, _ = work
    for var in ("KAGGLE_API_TOKEN", "KAGGLE_USERNAME", "KAGGLE_KEY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path / "none"))
    with pytest.raises(InputError, match="Kaggle credentials not found.*kaggle.json"):
        submit(comp, base, Submission("m"))
