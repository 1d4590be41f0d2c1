"""One module per script (src/<name>.py calls its `main`): flags, name checks, and the plugins of the
entry-point group `defectkit.plugins` loaded before anything runs (core/plugins.py)."""
from __future__ import annotations

import functools

from defectkit.core.plugins import load_plugins
from defectkit.runtime.errors import cli_main


def command(main):
    """A script's `main(argv)`: the plugins loaded first (their kinds are then among the flags' choices),
    a bad input one line on stderr (exit 2), an OS error one line (exit 1): runtime/errors.py's rule."""
    @cli_main
    @functools.wraps(main)
    def wrapper(argv=None):
        load_plugins()
        return main(argv)
    return wrapper
