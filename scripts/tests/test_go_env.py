"""scripts/go-env.sh finds a Go toolchain new enough for the project's Go-built tools: the one on
PATH, else Go from the module proxy (real download, checked against the checksum database)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
GO_ENV = REPO / "scripts" / "go-env.sh"


def go_env(path: str, cache: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": path, "XDG_CACHE_HOME": str(cache)}
    return subprocess.run(["bash", str(GO_ENV)], capture_output=True, text=True, env=env, timeout=600)


def version(bin_dir: str) -> str:
    return subprocess.run([f"{bin_dir}/go", "env", "GOVERSION"], capture_output=True, text=True,
                          env={**os.environ, "GOTOOLCHAIN": "local"}, timeout=120, check=True).stdout.strip()


def at_least(found: str, minimum: tuple[int, int]) -> bool:
    major, minor = (int(x) for x in found.removeprefix("go").split(".")[:2])
    return (major, minor) >= minimum


@pytest.mark.skipif(shutil.which("go") is None, reason="no go on PATH on this machine")
def test_a_new_enough_go_on_path_is_used(tmp_path):
    done = go_env(os.environ["PATH"], tmp_path)
    assert done.returncode == 0, done.stderr
    on_path = str(Path(shutil.which("go")).parent)
    if at_least(version(on_path), (1, 26)):
        assert done.stdout.strip() == on_path
        assert not (tmp_path / "celsius").exists()  # nothing downloaded
    else:
        assert "older than 1.26.0" in done.stderr


def test_without_go_it_fetches_a_checked_toolchain_once(tmp_path):
    path = "/usr/bin:/bin"  # Debian's own folders: the machine's Go lives elsewhere
    assert subprocess.run(["bash", "-c", "command -v go"], env={"PATH": path}).returncode != 0
    first = go_env(path, tmp_path)
    assert first.returncode == 0, first.stderr
    bin_dir = first.stdout.strip()
    assert bin_dir == str(tmp_path / "celsius" / "go" / "go1.26.8" / "bin")
    assert "downloading Go 1.26.8" in first.stderr
    assert version(bin_dir) == "go1.26.8"
    again = go_env(path, tmp_path)
    assert again.returncode == 0 and again.stdout.strip() == bin_dir
    assert "downloading" not in again.stderr  # unpacked once
