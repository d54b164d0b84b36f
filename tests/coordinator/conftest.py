"""Fixtures of the coordinator tests: ``group``, the gRPC tests' four `agora coordinator`
processes on loopback (grpc_helpers.make_group), started once per test module (a module that
defines its own ``group`` uses that one)."""

from __future__ import annotations

import pytest

from tests.coordinator.grpc_helpers import make_group


@pytest.fixture(scope="module")
def group(tmp_path_factory):
    g = make_group(tmp_path_factory.mktemp("coordinator"))
    with g.serving():
        yield g
