"""The guide and the docs: every results table is what bench/tables.py writes from bench/results/*.json
(a number typed by hand, or a result file changed without the table, fails here); every result file
says what made it; the README stays short; every page is in the site's navigation; no text about the
project's own test machines in the user's guide."""
import json
import re
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
import tables  # noqa: E402  (bench/tables.py)

DOCS = sorted((ROOT / "docs").glob("*.md"))


def test_every_results_table_is_what_its_result_files_say():
    assert tables.stale() == []  # else: python bench/tables.py
    used = {m.group("name") for p in tables.PAGES for m in tables.BLOCK.finditer(p.read_text())}
    assert {"demo", "results", "speed", "cpu-profiles", "test-margins"} <= used


def test_the_table_check_catches_a_typed_number(tmp_path):
    page = tmp_path / "p.md"
    page.write_text("<!-- table:results -->\n" + tables.results() + "<!-- /table -->\n")
    text = page.read_text()
    assert tables.render(text) == text
    nums = re.findall(r"\| (0\.9\d+) \|", text)
    assert nums, "the results table has AUCs"
    edited = text.replace(f"| {nums[0]} |", "| 0.9999 |", 1)
    assert tables.render(edited) != edited


@pytest.mark.parametrize("path", sorted((ROOT / "bench/results").glob("*.json")), ids=lambda p: p.name)
def test_every_result_file_says_what_made_it(path):
    r = json.loads(path.read_text())
    gpu = path.name.endswith(("cuda.json", "_call1.json", "_call2.json")) or "cuda_" in path.name
    assert gpu or ("command" in r and "date" in r), f"{path.name}: no command or date"


def test_the_readme_is_a_short_guide_and_every_page_is_in_the_site():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    for link in re.findall(r"\]\((docs/[\w.-]+\.md)", readme):
        assert (ROOT / link).exists(), link
    nav = json.dumps(yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"])
    assert [p.name for p in DOCS if p.name not in nav] == []
    for text in [readme, *(p.read_text() for p in DOCS)]:
        assert not re.search(r"give_back|device call|device time|lease", text, re.I)
