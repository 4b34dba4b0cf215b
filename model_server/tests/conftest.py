"""Fixtures for the model server tests (helpers: model_server_harness.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from model_server_harness import BINARY, ModelServer, export


def pytest_configure(config):
    if not BINARY.exists():
        raise pytest.UsageError(f"{BINARY} is not built: cmake --preset release && cmake --build --preset release")


@pytest.fixture(scope="session")
def model_base(tmp_path_factory) -> Path:
    """A model base path holding version 1 (read-only for tests)."""
    base = tmp_path_factory.mktemp("models") / "f2c"
    export(base, version=1)
    return base


@pytest.fixture
def start(request):
    """Starts model servers for one test and stops them afterwards (SIGTERM, exit code 0)."""
    started: list[ModelServer] = []

    def run(base: Path, *extra: str, **kwargs) -> ModelServer:
        server = ModelServer(base, *extra, **kwargs)
        started.append(server)
        return server

    yield run
    for server in started:
        code = server.stop()
        assert code == 0, f"exit code {code}:\n{server.log()}"
