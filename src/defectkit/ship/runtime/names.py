"""The one rule for ids, experiment and competition names: plain file names, not paths. Standard
library only, so that the exported bundle ships this very file (image_inputs.py uses it there)."""
from __future__ import annotations


def is_plain_name(value: str) -> bool:
    """Not empty, not '.' or '..', no '/', '\\' or NUL, not starting with '..'."""
    s = str(value)
    return bool(s) and s not in (".", "..") and not any(c in s for c in "/\\\0") and not s.startswith("..")
