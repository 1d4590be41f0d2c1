"""The Kaggle API client, authenticated, or a one-line error saying where credentials go."""
from __future__ import annotations

import contextlib
import io

from defectkit.core.checks import InputError


class KaggleAuthError(InputError):
    pass


CREDENTIALS_HELP = ("Kaggle credentials not found: set KAGGLE_API_TOKEN or put access_token in ~/.kaggle/, "
                    "or the legacy kaggle.json in ~/.kaggle/ (or $KAGGLE_CONFIG_DIR); "
                    "see https://www.kaggle.com/settings -> API")


def kaggle_api():
    """An authenticated KaggleApi (authenticate() exits the process without credentials:
    that becomes a KaggleAuthError)."""
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # import prints a help text without credentials
            from kaggle.api.kaggle_api_extended import KaggleApi
        api = KaggleApi()
        api.authenticate()
    except SystemExit as e:
        raise KaggleAuthError(CREDENTIALS_HELP) from e
    except OSError as e:
        raise KaggleAuthError(f"{CREDENTIALS_HELP} ({e})") from e
    return api
