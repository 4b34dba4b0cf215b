"""Fixtures shared by the model tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from celsius_model import export


@pytest.fixture(scope="session")
def model_base(tmp_path_factory) -> Path:
    """A model base path holding the exported SavedModel as version 1 (read-only for tests)."""
    base = tmp_path_factory.mktemp("models") / "f2c"
    export(base, version=1)
    return base
