"""Writes the graph as a SavedModel in TF Serving's layout: <output>/<version>/."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import tensorflow as tf

from celsius_model.graph import SIGNATURE, FahrenheitToCelsius


def export(output: Path | str, version: int = 1, overwrite: bool = False) -> Path:
    """Exports the model to `output/<version>` and returns that folder.

    The folder appears atomically (written beside it, then renamed), because TF Serving
    polls the base path and would try to load a half-written version.
    """
    if version < 1:
        raise ValueError(f"version must be a positive integer, got {version}")
    base = Path(output)
    target = base / str(version)
    if target.exists():
        if not overwrite:
            raise FileExistsError(f"{target} exists (use --overwrite to replace it)")
        shutil.rmtree(target)
    base.mkdir(parents=True, exist_ok=True)
    module = FahrenheitToCelsius()
    with tempfile.TemporaryDirectory(dir=base, prefix=f".{version}.tmp-") as staging:
        staged = Path(staging) / "model"
        tf.saved_model.save(module, str(staged), signatures={SIGNATURE: module.convert})
        staged.rename(target)
    return target
