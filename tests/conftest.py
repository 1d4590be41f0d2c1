import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))



@pytest.fixture(scope="session")
def toy_base(tmp_path_factory):
    """A workdir with input/toy/ (train/test images, tables, solution), configs/toy.yaml and
    folds/toy.csv, shared read-only by the tests of a session."""
    from synthetic import make_toy_workdir
    return make_toy_workdir(tmp_path_factory.mktemp("toy"))
