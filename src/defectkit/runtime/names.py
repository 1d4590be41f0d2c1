"""The one rule for ids, experiment and competition names: plain file names, not paths. Standard
library only, so that the exported bundle ships this very file (image_inputs.py uses it there)."""
from __future__ import annotations


def is_plain_name(value: str) -> bool:
    """Not empty, not '.' or '..', no '/', '\\' or control character (NUL, a newline, a tab), not
    starting with '..'."""
    s = str(value)
    return (bool(s) and s not in (".", "..") and not any(c in s for c in "/\\") and not s.startswith("..")
            and not any(ord(c) < 32 or ord(c) == 127 for c in s))
