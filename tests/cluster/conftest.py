"""Fixtures of the cluster tests."""

import pytest

from tests.cluster.runner_support import runner_on_local_ray


@pytest.fixture(scope="module")
def runner(tmp_path_factory):
    """(handle, runs root) of a node runner on a local Ray, per module."""
    yield from runner_on_local_ray(tmp_path_factory)
