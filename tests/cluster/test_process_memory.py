"""An agent's process memory figures (``agents.cluster.process_memory``), which its ``info``
reports and the replay benchmark prints."""

from __future__ import annotations

import sys


def test_the_memory_figures_are_in_mib_and_name_their_parts():
    from agora.agents.cluster.process_memory import memory_mib, traced_memory

    mem = memory_mib()
    if sys.platform.startswith("linux"):
        assert set(mem) == {"pss", "anon"} and 0 < mem["anon"] < 4096 and 0 < mem["pss"]
    assert traced_memory() is None                   # no AGORA_MEMTRACE: nothing traced
