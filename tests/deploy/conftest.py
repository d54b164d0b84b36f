"""Fixtures of the deploy tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def up(tmp_path):
    """An agora up config of the embedded cluster, its state under ``tmp_path``; nothing
    running."""
    p = tmp_path / "up.yaml"
    p.write_text(f"out: {tmp_path / 'out'}\n")
    return p
