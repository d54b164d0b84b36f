"""One-command rounds (``Round``): every site's signed part -- ended instances first, then
bids -- then the clearing, checked by every replica's state machine. The carrier cannot
forge, alter, redirect or replay a part; a part that fails is rejected alone, by index."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from coordinator.pbft.keys import generate_keys
from coordinator.site_round import sign, verifier
from protos.agora.v1 import coordinator_pb2 as pb
from tests.test_coordinator_state import SETTINGS, job, submit
from tests.test_coordinator_state import Run as StateRun

KEYS = generate_keys(4, ["site:a", "site:b", "site:c", "operator"], seed=b"round-tests")


def Run(verify: bool = True) -> StateRun:
    """The state tests' runner, with the clients' public keys (or none)."""
    return StateRun(verifier(KEYS.client_verify) if verify else None)


def part(client: str, site: str, rnd: int, *, bids=(), completions=(),
         key_of: str | None = None) -> pb.SignedSiteRound:
    rep = pb.SiteRound(site=site, round=rnd)
    for j, t, n, p in bids:
        rep.bids.add(job_id=j, task_id=t, instances=n, price=p)
    for j, t, b, e in completions:
        rep.completions.add(job_id=j, task_id=t, instance_begin=b, instance_end=e, site=site)
    return sign(KEYS.client_signing[key_of or client], client, rep)


def round_cmd(rnd: int, *parts: pb.SignedSiteRound, at: float = 0.0) -> bytes:
    return pb.Command(round=pb.Round(round=rnd, at_s=at, sites=list(parts))).SerializeToString()


def allocated(res: pb.Result) -> list[tuple[str, str, int, int, str]]:
    return [(a.job_id, a.task_id, a.instance_begin, a.instance_end, a.site)
            for a in res.allocations]


def test_a_completion_and_a_bid_for_the_work_it_opens_clear_in_one_round():
    run = Run()
    assert run("operator", submit(job("j0", n=2))).accepted == 1
    r0 = run("operator", round_cmd(0, part("site:a", "a", 0, bids=[("j0", "map", 2, 9)])))
    assert allocated(r0) == [("j0", "map", 0, 2, "a")] and r0.round == 1
    # site a reports map done; site b bids for reduce, which that completion opens -- in
    # the same round: every part's reports are applied before any part's bids
    r1 = run("operator", round_cmd(
        1, part("site:b", "b", 1, bids=[("j0", "reduce", 2, 5)]),
        part("site:a", "a", 1, completions=[("j0", "map", 0, 2)]), at=10.0))
    assert not r1.rejections, [x.reason for x in r1.rejections]
    assert allocated(r1) == [("j0", "reduce", 0, 2, "b")]


def test_forged_altered_redirected_and_replayed_parts_are_rejected_alone():
    run = Run()
    run("operator", submit(job("j0", n=2), job("j1", "c", n=1, dag=False)))
    good = part("site:c", "c", 0, bids=[("j1", "map", 1, 3)])
    forged = part("site:a", "a", 0, bids=[("j0", "map", 2, 9)], key_of="site:b")
    altered = part("site:a", "a", 0, bids=[("j0", "map", 1, 9)])
    altered.report = altered.report[:-1] + bytes([altered.report[-1] ^ 1])
    redirected = part("site:b", "a", 0, bids=[("j0", "map", 2, 9)])
    res = run("operator", round_cmd(0, forged, altered, redirected, good))
    fields = [x.field for x in res.rejections]
    assert fields[:2] == ["command.round.sites[0].signature", "command.round.sites[1].signature"]
    assert fields[2] == "command.round.sites[2].report.site"
    assert allocated(res) == [("j1", "map", 0, 1, "c")], "the good part still counts"
    replay = run("operator", round_cmd(1, good))
    assert [x.field for x in replay.rejections] == ["command.round.sites[0].report.round"]
    assert not replay.allocations


def test_a_round_needs_the_current_round_and_client_keys():
    run = Run()
    res = run("operator", round_cmd(3))
    assert res.rejections[0].field == "command.round.round" and run.state.round == 0
    bare = Run(verify=False)
    res = bare("operator", round_cmd(0))
    assert res.rejections[0].field == "command.round" and "keys" in res.rejections[0].reason


@SETTINGS
@given(parts=st.lists(st.tuples(st.sampled_from(["site:a", "site:b", "x", ""]),
                                st.binary(max_size=40), st.binary(max_size=70)), max_size=4))
def test_arbitrary_parts_never_raise_and_allocate_nothing(parts):
    run = Run()
    run("operator", submit(job("j0", n=2)))
    signed = [pb.SignedSiteRound(client_id=c, report=r, signature=s) for c, r, s in parts]
    res = run("operator", round_cmd(0, *signed))
    assert res.kind == "round" and res.round == 1
    assert not res.allocations
    assert len(res.rejections) == len(parts)


@pytest.mark.parametrize("bad", ["round", "at_s", "signature", "client_id", "report"])
def test_the_service_refuses_malformed_rounds_naming_the_field(bad):
    import grpc

    from coordinator.validate import Refusal, check_command

    p = part("site:a", "a", 0, bids=[("j0", "map", 1, 1)])
    r = pb.Round(round=0, at_s=1.0, sites=[p])
    if bad == "round":
        r.round = -1
    elif bad == "at_s":
        r.at_s = float("nan")
    elif bad == "signature":
        r.sites[0].signature = b"short"
    elif bad == "client_id":
        r.sites[0].client_id = ""
    else:
        r.sites[0].report = b""
    with pytest.raises(Refusal) as e:
        check_command(pb.Command(round=r), "operator", "request.op")
    assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert bad in e.value.message
