"""Tools the suite needs from the machine (scripts/test.sh installs them).

Every test that needs an external program gets it through ``require_tool``:
on a developer machine a missing tool skips the test (and the skip is
counted in scripts/test.sh's summary); on CI (``CI=true``) it fails the
test, so that a missing install step cannot turn into silently skipped
tests.
"""

from __future__ import annotations

import os
import shutil

import pytest


def on_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def require_tool(*names: str, why: str = "") -> str:
    """The path of the first of ``names`` found on PATH; otherwise skip the
    test, or fail it on CI."""
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    msg = f"{' or '.join(names)} is not installed"
    if why:
        msg += f" ({why})"
    if on_ci():
        pytest.fail(f"{msg}: on CI a missing tool fails the test", pytrace=False)
    pytest.skip(msg)
