"""Reading the runs' folders an ``agora up`` keeps on this machine
(``<out>/runs/<node>/<job>/<task>/<instance>-<run>``, names %-quoted; see
``agents/cluster/instance_run.run_folder``): when a run started, how each instance's last
ended run ended, and each instance's latest run -- for ``agora jobs``, ``agora logs`` and the
web view.

A task's folders are listed once per node (``task_runs``), never looked up per instance: a
task of a million instances, cancelled, made ``agora jobs`` and the web view glob the whole
runs tree once per instance, and neither answered within minutes."""

from __future__ import annotations

import json
import os
from pathlib import Path
from urllib.parse import unquote

from agora.agents.cluster.instance_run import run_folder


def task_runs(root: Path, job: str, task: str) -> dict[int, list[tuple[int, str, Path]]]:
    """instance -> [(run, node, folder)] of every run of ``job/task`` on any node, latest
    first."""
    found: dict[int, list[tuple[int, str, Path]]] = {}
    try:
        nodes = [e.name for e in os.scandir(root) if e.is_dir(follow_symlinks=False)]
    except OSError:
        return found
    for quoted in nodes:
        node = unquote(quoted)
        folder = run_folder(root, node, job, task, 0, 0).parent
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for e in entries:
            inst, _, run = e.name.partition("-")
            if inst.isascii() and inst.isdigit() and run.isascii() and run.isdigit():
                found.setdefault(int(inst), []).append((int(run), node, Path(e.path)))
    for runs in found.values():
        runs.sort(key=lambda r: -r[0])
    return found


def latest_runs(root: Path, job: str, task: str, inst: int | None) -> dict:
    """(instance, run) -> folder of each instance's latest run (of ``inst`` only, if given)."""
    return {(i, runs[0][0]): runs[0][2] for i, runs in task_runs(root, job, task).items()
            if inst is None or i == inst}


def run_started(out: Path | None, node: str, job: str, task: str, inst: int,
                run: int) -> float | None:
    """When the run started, from its folder (local runs only)."""
    if out is None:
        return None
    try:
        return (run_folder(out / "runs", node, job, task, inst, run) / "pid").stat().st_mtime
    except OSError:
        return None


def read_end(folder: Path) -> dict | None:
    """A run's ``end.json`` (None: not ended yet, or unreadable)."""
    try:
        e = json.loads((folder / "end.json").read_text())
    except (OSError, ValueError):
        return None
    return e if isinstance(e, dict) else None


class TaskEnds:
    """How each instance of one task last ended, read from its run folders when first asked
    (one listing of the task's folders per node, then one ``end.json`` per instance asked
    about). ``files``: the caller's cache of ``end.json`` contents, which never change once
    written (the web view keeps it between refreshes)."""

    def __init__(self, out: Path | None, job: str, task: str, files: dict | None = None):
        self.out, self.job, self.task = out, job, task
        self.files = files if files is not None else {}
        self._runs: dict | None = None

    def __call__(self, inst: int) -> dict:
        """Where the instance's last ended run ran, its exit code, reason, start and end ({}
        if none ended here: a remote node's run folders stay on that node)."""
        if self.out is None:
            return {}
        if self._runs is None:
            self._runs = task_runs(self.out / "runs", self.job, self.task)
        for run, node, folder in self._runs.get(inst, ()):
            e = self._end(folder)
            if e is None:
                continue
            row = {"ran_on": node, "last_run": run, "exit_code": e.get("exit_code"),
                   "last_reason": e.get("reason", "")}
            for k in ("start", "end"):
                if isinstance(e.get(k), (int, float)):
                    row[f"last_{k}"] = e[k]
            return row
        return {}

    def _end(self, folder: Path) -> dict | None:
        key = ("end.json", str(folder))
        if key in self.files:
            return self.files[key]
        e = read_end(folder)
        if e is None:
            return None                        # not ended yet (or unreadable): look again
        if len(self.files) > 200_000:
            self.files.clear()
        self.files[key] = e
        return e
