"""Commands while ``agora up``'s keeper starts its service again (after it died): not
"nothing is running". A probe killed the serving process: for the ~30 s the keeper took to
start it again, `agora status` and `agora jobs` said "offline: no agora up runs", and
`agora submit --follow` gave up on jobs the restarted service then finished. Here this test
process stands in for the keeper (its pid in ``agora.pid``, no ``ready.json``); nothing is
started."""

from __future__ import annotations

import os

from agora.deploy import pid_file
from agora.deploy.cli import main
from agora.deploy.service_client import target


def test_a_keeper_starting_its_service_is_told_apart_from_nothing_running(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    cfg = tmp_path / "up.yaml"
    cfg.write_text(f"out: {out}\n")
    t = target(str(cfg))
    assert t.restarting() is None and not t.running()
    pid_file.write(out / "agora.pid")                   # the keeper: alive, not serving
    assert t.restarting() == os.getpid() and t.running() and not t.serving()
    assert main(["status", "--config", str(cfg)]) == 1
    err = capsys.readouterr()
    said = err.out + err.err
    assert f"agora up (pid {os.getpid()}) is starting its service from {out}" in said, said
    (out / "agora.pid").unlink()
    assert main(["status", "--config", str(cfg)]) == 1
    err = capsys.readouterr()
    assert "nothing is running" in err.out + err.err


def test_submit_follow_follows_the_restarted_service_at_its_new_addresses(monkeypatch, capsys):
    """A probe: after the keeper restarted a killed service, ``submit --follow`` kept asking
    the old replicas' addresses (a restart picks new ports) and never told the jobs' ends.
    Fakes (this test's): the ledger follower, whose old client never answers, and the
    renewal, which hands a client of the restarted service on its first look."""
    import asyncio
    from types import SimpleNamespace

    from agora.coordinator import ledger_follow
    from agora.deploy import cli_jobs

    async def follow(client, config, state):
        if client == "new":
            job = SimpleNamespace(outcome="completed", reason="", tasks=[])
            state["ledger"] = SimpleNamespace(jobs={"j": job})
        await asyncio.sleep(3600)                   # the old replicas: no answer, ever

    class New(str):
        async def close(self):
            closed.append(self)
    closed: list = []
    looks = iter([(New("new"), "config after")])
    monkeypatch.setattr(ledger_follow, "follow_ledger", follow)
    a = SimpleNamespace(json=False, timeout=30.0)
    ends = asyncio.run(cli_jobs._follow("old", "config before", ["j"], a, lambda: True,
                                        lambda: next(looks, None)))
    assert ends["j"]["outcome"] == "completed" and closed == ["new"]
    assert "j: completed after" in capsys.readouterr().out


def test_a_watch_goes_on_at_the_restarted_service_from_past_its_last_update(
        up, monkeypatch, capsys):
    """A probe: ``agora schedule watch`` ended (exit 1) while the keeper started a killed
    service again. It now waits, then watches the restarted service (new addresses: a
    client made anew) from past the last update it received. Fakes (this test's): the
    service's serving checks, and two clients -- the old one's watch goes silent after
    version 4, the new one's starts where it is asked to."""
    import asyncio
    from types import SimpleNamespace

    from agora.deploy import cli_coordinator, cli_schedule
    from agora.protos.agora.v1 import coordinator_pb2 as pb

    def alloc(v: int) -> pb.ScheduleUpdate:
        u = pb.ScheduleUpdate(version=v)
        u.allocations.add(job_id=f"j{v}", task_id="t", instance_begin=0, instance_end=1,
                          site="east", node="n0")
        return u

    asked: list = []

    class Client:
        f = 1

        def __init__(self, first: int, last: int, then_silent: bool) -> None:
            self.first, self.last, self.silent = first, last, then_silent

        async def __aenter__(self):
            return self

        async def __aexit__(self, *exc):
            return False

        async def status(self):
            return [object()] * 4

        async def watch(self, since):
            asked.append(since)
            for v in range(max(since or self.first, self.first), self.last + 1):
                yield pb.ScheduleUpdate(version=v) if v % 2 else alloc(v)
            if self.silent:                         # the old service: killed
                state["serving"] = False
                await asyncio.sleep(60)

    state = {"serving": True, "looks": 0}

    def serving() -> bool:
        if not state["serving"]:
            state["looks"] += 1
            state["serving"] = state["looks"] > 2    # starting again for a few looks
        return state["serving"]

    clients = iter([Client(1, 4, True), Client(1, 9, False)])   # the new one from `since`
    monkeypatch.setattr(cli_schedule, "SERVING_CHECK_S", 0.1)
    monkeypatch.setattr(cli_schedule, "target", lambda config: SimpleNamespace(
        serving=serving, running=lambda: True))
    monkeypatch.setattr(cli_coordinator, "_client", lambda a: (None, next(clients)))
    assert main(["schedule", "watch", "--count", "4", "--config", str(up)]) == 0
    got = capsys.readouterr()
    assert [x.split()[0] for x in got.out.strip().splitlines()] == ["2", "4", "6", "8"]
    assert asked[1:] == [4]            # from the last version received, not printed again
    assert "the service is starting again; the watch goes on once it serves" in got.err


def test_a_keeper_asked_to_stop_is_not_taken_for_a_restart(tmp_path):
    """A probe: during ``agora down`` (the keeper alive, nothing serving) ``logs --follow``
    said the service was starting again and ``agora jobs`` that it might be overloaded or
    restarting. A keeper asked to stop writes ``stopping`` (its signal handler, here called
    as the signal would); a keeper starting removes an earlier one's."""
    import signal

    from agora.deploy import service_files
    from agora.deploy.supervise import _Signals

    out = tmp_path / "out"
    out.mkdir()
    cfg = tmp_path / "up.yaml"
    cfg.write_text(f"out: {out}\n")
    pid_file.write(out / "agora.pid")                   # the keeper: alive, not serving
    t = target(str(cfg))
    assert t.restarting() == os.getpid() and t.running() and not t.stopping()
    sig = _Signals(out)
    sig._on(signal.SIGTERM, None)
    assert sig.asked == "SIGTERM" and service_files.stopping(out)
    assert t.stopping() and t.restarting() is None and not t.running()
    said = str(t.unanswered(SimpleError()))
    assert "is stopping (agora down" in said, said


class SimpleError:
    """A ``CoordinatorError``'s parts ``Target.unanswered`` reads (this test's stand-in)."""
    errors = {0: "UNAVAILABLE: down"}
    message = "no f+1 answers"
