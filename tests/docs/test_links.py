"""Every relative link in README.md and docs/*.md points at a file of the repository, and
every #anchor at a heading of its page (GitHub's slugs)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def slug(heading: str) -> str:
    s = heading.strip().lower()
    s = re.sub(r"[^\w\- ]", "", s)
    return s.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    return {slug(m.group(1)) for m in re.finditer(r"^#+ (.+)$", page.read_text(), re.M)}


def test_there_are_docs_pages():
    names = {p.name for p in PAGES}
    assert {"README.md", "concepts.md", "running-jobs.md", "deploying.md", "training.md",
            "security.md", "benchmarks.md"} <= names


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_links_resolve(page):
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    for target in LINK.findall(text):
        if "://" in target or target.startswith("mailto:"):
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        assert dest.exists(), f"{page.name}: {target} -> {dest} does not exist"
        assert REPO in dest.parents or dest == REPO, f"{page.name}: {target} leaves the repo"
        if anchor and dest.suffix == ".md":
            assert anchor in anchors(dest), f"{page.name}: #{anchor} is no heading of {dest.name}"


def test_the_readme_opens_with_the_two_commands_and_stays_short():
    text = (REPO / "README.md").read_text()
    first = text.split("```sh", 1)[1].split("```", 1)[0]
    assert "make run" in first and "make test" in first
    assert len(text.splitlines()) <= 150
