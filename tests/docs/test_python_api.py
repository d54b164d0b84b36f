"""docs/python-api.md's notebook example runs as written, and ``import agora`` is light (no
Ray, torch or gRPC until a function is used) with the functions the page names."""

from __future__ import annotations

import contextlib
import io
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PAGE = REPO / "docs" / "python-api.md"


def test_the_simulation_example_runs_as_written():
    first = re.findall(r"```python\n(.*?)```", PAGE.read_text(), re.S)[0]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(first, str(PAGE), "exec"), {})
    lines = out.getvalue().splitlines()
    assert [x.split()[0] for x in lines] == ["fifo", "sjf", "srpt"]
    jct = {x.split()[0]: float(x.split()[3]) for x in lines}
    assert jct["sjf"] < jct["fifo"], lines     # the numbers are real results, not constants


def test_import_agora_is_light_and_names_the_api():
    code = ("import sys, agora; print(sorted(m for m in ('ray', 'torch', 'grpc') if m in "
            "sys.modules)); print(all(callable(getattr(agora, f)) for f in "
            "('simulate', 'submit', 'schedule', 'jobs'))); print(agora.__version__)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=60, cwd="/")
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines()[:2] == ["[]", "True"], p.stdout
