"""Install the repository's top-level folders as one namespace, ``agora``.

The repository keeps ``agents/``, ``coordinator/``, ``protos/``, ``federation/`` and
``deploy/`` at its top level (the product's design card); installed, they are
``agora.agents``, ``agora.coordinator``, ... beside the Python API in ``agora/``, and nothing
generic lands at the top level of site-packages (tests/test_packaging.py builds the wheel and
checks). Everything else about the distribution is in pyproject.toml.
"""

from setuptools import find_namespace_packages, setup

PARTS = ("agents", "coordinator", "protos", "federation", "deploy")

# Namespace packages too: the folders of data only (configs, the web view, checkpoints) are
# packages of their own, with their files as package data (pyproject.toml); listed as a
# parent's data, each printed a "Package would be ignored" warning at install.
# Only folders whose names can be modules (a stray build or output folder is not packaged).
packages = ["agora"] + [f"agora.{top}{'.' + sub if sub else ''}"
                        for top in PARTS for sub in ["", *find_namespace_packages(top)]
                        if all(part.isidentifier() for part in sub.split(".") if part)]
setup(packages=packages,
      package_dir={"agora": "agora", **{f"agora.{top}": top for top in PARTS}})
