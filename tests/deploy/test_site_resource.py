"""The Ray custom resource that pins a site's agent (``deploy.ray_runtime.site_resource``):
``agora-site-<name>``, and only for names Ray can carry."""

from __future__ import annotations

import pytest

from agora.deploy.ray_runtime import site_of_resource, site_resource


@pytest.mark.parametrize("name", ("dc-east", "factory-b", "site-0", "a", "A.b_c-9"))
def test_site_resource_names_the_site(name):
    r = site_resource(name)
    assert r == "agora-site-" + name and site_of_resource(r) == name


@pytest.mark.parametrize("name", ["", "dc east", "dc/east", "dc:east", "east\n", "été", "a,b",
                                  None, 3])
def test_site_resource_refuses_names_ray_cannot_carry(name):
    with pytest.raises(ValueError, match="letters, digits"):
        site_resource(name)


def test_site_of_resource_ignores_other_resources():
    assert site_of_resource("CPU") is None and site_of_resource("agora-site-") is None
    assert site_of_resource("agora-site-a b") is None
