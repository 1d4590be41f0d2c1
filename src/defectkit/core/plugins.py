"""Extensions loaded the way Python packages find each other: every module named in the entry-point
group `defectkit.plugins` of an installed distribution is imported once, before anything runs (the
command-line scripts do it first, and so does every Ray worker before its job). Importing it registers
what it defines, with the same decorators the package's own kinds use: a member kind
(`core.members.register_member`), a blend method (`ensemble.methods.register_method`), a data source
(`data.sources.register_source`), an exporter with its runtime (`ship.exporters.register_exporter`).

In a plugin's pyproject.toml:

    [project.entry-points."defectkit.plugins"]
    my_exporter = "my_package.defectkit_plugin"
"""
from __future__ import annotations

from importlib import metadata

from defectkit.core.checks import InputError

GROUP = "defectkit.plugins"
_loaded: dict[str, str] = {}  # entry-point value -> its name, once imported


def load_plugins(group: str = GROUP) -> dict[str, str]:
    """Import every entry point of `group` not yet imported; a plugin that fails to import is one line
    naming it. Returns {value: name} of every plugin loaded so far."""
    for ep in sorted(metadata.entry_points(group=group), key=lambda e: e.name):
        if ep.value in _loaded:
            continue
        try:
            ep.load()
        except Exception as e:  # a plugin's own error, whatever it is, named with the plugin
            raise InputError(f"plugin {ep.name!r} ({ep.value}, entry-point group {group}): failed to load: "
                             f"{type(e).__name__}: {e}") from None
        _loaded[ep.value] = ep.name
    return dict(_loaded)
