"""The one error wrapper of every entry point (the scripts and the bundle's runner): a problem the
user can fix is one `error: ...` line on stderr naming the file, flag or key, exit status 2; an
OSError (permissions, a full disk, a symlink loop) one line naming the path, exit status 1; never a
traceback. Standard library only, so that the bundle ships it."""
from __future__ import annotations

import errno
import functools
import sys


class OneLineError(ValueError):
    """A problem with the user's input, files or flags: its message is printed as is."""


def describe_os_error(e: OSError) -> str:
    """One line for an OSError: the path, what went wrong, and a hint for the usual causes."""
    where = e.filename or "a file"
    if getattr(e, "filename2", None):
        where = f"{where} -> {e.filename2}"
    hint = {errno.ENOSPC: " (the disk is full: free space, or use --workdir elsewhere)",
            errno.EACCES: " (no permission: check the folder's owner and mode)",
            errno.EROFS: " (read-only file system)",
            errno.ELOOP: " (a symbolic link loop)",
            errno.EISDIR: " (a folder, where a file was expected)"}.get(e.errno or 0, "")
    return f"{where}: {e.strerror or e}{hint}"


def cli_main(main):
    """Decorate an entry point's `main(argv)` with the rule above; a `main` returning None gives 0."""
    @functools.wraps(main)
    def wrapper(argv=None) -> int:
        try:
            return main(argv) or 0
        except OneLineError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        except OSError as e:
            print(f"error: {describe_os_error(e)}", file=sys.stderr)
            return 1
    return wrapper
