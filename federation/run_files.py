"""The files a federated run (``federation.train``) reads back: ``state.json`` (the last
finished round) and ``metrics.jsonl`` (a row per organisation and round), named when damaged;
whether a folder holds a federated run that finished no round; the last round's rows."""

from __future__ import annotations

import json
from pathlib import Path


def read_state(path: Path, what: str = "the state of the run's last finished round") -> dict:
    """A run file read back for --resume; a damaged one is named (a probe: the bare JSON
    error named no file)."""
    try:
        out = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not valid JSON ({e}); expected {what}, as the run wrote "
                         f"it: --resume cannot go on from this folder") from None
    if not isinstance(out, dict) or not isinstance(out.get("round"), int):
        raise ValueError(f"{path}: no round number; expected {what}, as the run wrote it")
    return out


def federated_folder(out: Path) -> bool:
    """Whether ``out`` holds a federated run that finished no round (killed in round 1's
    commit: last.pt written, state.json not yet): its config.json records a setup."""
    try:
        return "setup" in json.loads((out / "config.json").read_text())
    except (OSError, ValueError, TypeError):
        return False


def _cut(text: str) -> bool:
    try:
        json.loads(text)
        return False
    except ValueError:
        return True


def _row_round(path: Path, line: int, text: str) -> int:
    try:
        row = json.loads(text)
        return int(row["round"])
    except (ValueError, TypeError, KeyError):
        raise ValueError(f"{path}:{line}: not a row of a federated run (JSON with its round); "
                         f"--resume cannot go on from this folder") from None


def kept_rows(path: Path, done: int, more: bool) -> list[str]:
    """The rows of ``metrics.jsonl`` of the rounds up to ``done`` (a resume redoes the
    later ones); with ``more`` rounds to run, a last line cut by a kill mid-append is one of
    theirs and dropped (a review: it blocked the resume)."""
    lines = path.read_text().splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if lines and more and _cut(lines[-1]):
        lines.pop()
    return [x for i, x in enumerate(lines) if x.strip() and _row_round(path, i + 1, x) <= done]


def last_rows(mpath: Path) -> dict:
    rows = [json.loads(x) for x in mpath.read_text().splitlines() if x.strip()]
    if not rows:
        return {}
    last = max(x["round"] for x in rows)
    return {x["site"]: {k: x[k] for k in ("eval/jct_mean_s", "eval/score", "step") if k in x}
            for x in rows if x["round"] == last}


def comparable_setups(saved: dict, now: dict, scenarios: dict) -> tuple[dict, dict]:
    """(saved, now): a run's recorded setup and today's (``Setup.to_dict``, in JSON's types)
    as a resume compares them -- organisations by name (a difference names the one), each
    file known by its digest rather than its path (``Scenario.known_by_content``;
    ``scenarios``: today's, by organisation), and the setup's ``source`` (the traces'
    paths as given) left out once every organisation's files have digests. A probe: a
    resume from another folder, or with --traces or --out absolute, was refused with the
    whole setup dumped, though every file was the same."""
    digested = all("digests" in x for x in saved.get("sites", []))

    def form(d: dict, fix) -> dict:
        head = {k: v for k, v in d.items() if k != "sites" and not (digested and k == "source")}
        return {**head, "sites": {x.get("name"): {**x, "scenario": fix(x)}
                                  for x in d.get("sites", [])}}

    def moved(x: dict) -> dict:
        sc = scenarios.get(x.get("name"))
        return sc.known_by_content(x["scenario"], x.get("digests")) if sc else x["scenario"]
    return form(saved, moved), form(now, lambda x: x["scenario"])
