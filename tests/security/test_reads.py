"""Finding 3 (issue 16): reading was not authorised -- ``GetStatus`` and ``WatchSchedule``
needed no credentials. Now both need a ``ReadAuth`` signed by a client of the key file (within
300 s of the replica's clock, bound to the method and the watched version); schedule queries
were signed PBFT requests already. Auditors (``auditor:<name>``) read everything and can
change nothing. A site reads its own in full and of others only what the market needs
(``coordinator/read_scope.py``)."""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest
from nacl.signing import SigningKey, VerifyKey

from agora.coordinator.client import CoordinatorError
from agora.deploy.local_group import LocalGroup
from agora.coordinator.pbft.keys import generate_keys
from agora.coordinator.read_auth import WINDOW_MS, read_refusal, sign_read
from agora.protos.agora.v1 import coordinator_pb2 as pb
from agora.protos.agora.v1 import coordinator_pb2_grpc as rpc
from tests.coordinator.grpc_helpers import CLUSTER, job

CLIENTS = ["site:east", "site:west", "site:edge", "operator", "auditor:alice"]


def test_a_read_signature_is_bound_to_its_client_method_version_and_time():
    keys = generate_keys(4, CLIENTS, seed=b"reads")
    verify = {c: VerifyKey(k)
              for c, k in keys.client_verify.items()}
    signer = SigningKey(keys.client_signing["site:west"])
    now = 1_800_000_000_000
    good = sign_read(signer, "site:west", "WatchSchedule", 5, now_ms=now, replica=1)

    def refusal(auth, method="WatchSchedule", since=5, now_ms=now, replica=1):
        return read_refusal(verify, auth, method, since, now_ms=now_ms, replica=replica)
    assert refusal(good, now_ms=now + 1000) is None
    assert "signature" in refusal(good, "GetStatus")
    assert "signature" in refusal(good, since=0)
    assert "timestamp_ms" in refusal(good, now_ms=now + WINDOW_MS + 1)
    claimed = pb.ReadAuth(client_id="operator", timestamp_ms=now, signature=good.signature,
                          replica=1)
    assert "signature" in refusal(claimed)
    # made out to replica 1: another replica refuses it (a faulty replica 1 cannot replay a
    # site's watch requests at the others), and naming another replica breaks the signature
    assert refusal(good, replica=2).startswith("auth.replica: 1; expected 2")
    moved = pb.ReadAuth()
    moved.CopyFrom(good)
    moved.replica = 2
    assert "signature" in refusal(moved, replica=2)
    assert "missing" in refusal(pb.ReadAuth(), "GetStatus", 0)
    assert "no key" in refusal(pb.ReadAuth(client_id="site:mars"), "GetStatus", 0)
    # an id no client can have is refused by its length, not echoed (100,000 characters in
    # the status details passed gRPC's 16 KiB limit and the reader saw "Stream removed")
    assert refusal(pb.ReadAuth(client_id="x" * 100_000), "GetStatus", 0) == "auth.client_id: 100000 characters; expected at most " \
        "256 (operator, site:<name>, replica:<i> or auditor:<name>)"


@pytest.fixture(scope="module")
def group(tmp_path_factory):
    g = LocalGroup(tmp_path_factory.mktemp("reads"), n=4, clients=CLIENTS, cluster=str(CLUSTER),
                   key_seed=b"reads", round_timeout_s=4.0, site_timeout_s=3600.0)  # close_round
    with g.serving():
        yield g


@pytest.mark.timeout(120)
def test_status_and_watch_without_valid_credentials_are_refused(group):
    other = generate_keys(4, CLIENTS, seed=b"someone else")
    forged = sign_read(SigningKey(other.client_signing["operator"]), "operator", "GetStatus",
                       replica=0)
    stale = sign_read(SigningKey(group.keys.client_signing["operator"]), "operator",
                      "GetStatus", now_ms=int(time.time() * 1000) - 2 * WINDOW_MS, replica=0)
    for_another = sign_read(SigningKey(group.keys.client_signing["operator"]), "operator",
                            "GetStatus", replica=1)
    with group.channel(0) as ch:
        stub = rpc.CoordinatorStub(ch)
        for req in (pb.StatusRequest(), pb.StatusRequest(auth=forged),
                    pb.StatusRequest(auth=stale), pb.StatusRequest(auth=for_another)):
            with pytest.raises(grpc.RpcError) as e:
                stub.GetStatus(req, timeout=5)
            assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert e.value.details().startswith("auth")
        with pytest.raises(grpc.RpcError) as e:
            next(iter(stub.WatchSchedule(pb.WatchRequest(since_version=0), timeout=5)))
        assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert stub.GetStatus(group.status_request("site:edge"), timeout=5).n == 4


@pytest.mark.timeout(120)
def test_an_auditor_reads_everything_and_changes_nothing(group):
    async def go():
        async with group.client("operator") as op:
            await op.submit_jobs([job("audited", origin="east")])
        async with group.client("auditor:alice") as alice:
            statuses = await alice.status()
            assert all(not isinstance(s, str) for s in statuses)
            ledger = await alice.ledger()
            assert [r.job.id for r in ledger.jobs] == ["audited"]
            updates = []

            async def first():
                async for u in alice.watch(0):
                    updates.append(u)
                    return
            await asyncio.wait_for(first(), 30)
            assert updates
            for attempt in (alice.submit_jobs([job("by-auditor", origin="east")]),
                            alice.cancel_job("audited")):
                with pytest.raises(CoordinatorError) as e:
                    await attempt
                assert e.value.code == grpc.StatusCode.PERMISSION_DENIED
                assert "auditor" in e.value.message
            assert [r.job.id for r in (await alice.ledger()).jobs] == ["audited"]
    asyncio.run(asyncio.wait_for(go(), 90))


@pytest.mark.timeout(120)
def test_a_site_reads_its_own_in_full_and_of_others_only_what_the_market_needs(group):
    """Finding 3's second half (``coordinator/read_scope.py``): east's job placed at east is
    not west's business. West still sees the job and its instances' states (it bids on open
    work, and its ledger must move as the coordinator's), but not where they run nor why
    they ended; east, the operator and auditors see all of it."""
    from agora.agents.ledger_codec import FOREIGN_NODE
    from tests.coordinator.grpc_helpers import close_round, decision

    async def go():
        async with group.client("site:east") as east, group.client("site:west") as west, \
                group.client("operator") as op, group.client("auditor:alice") as alice:
            r = await east.submit_jobs([job("scoped", origin="east", n=2)])
            rnd = r.round
            closed = await close_round(group, rnd, {
                "east": decision("east", rnd, ("scoped", "map", 2, 5))})
            assert all(a.site == "" for a in closed.allocations)   # edge closed it: redacted
            await east.submit_round(pb.SiteRound(site="east", ends=[
                pb.End(job_id="scoped", task_id="map", instance=0, kind=pb.END_FAILED,
                       start_s=1.0, end_s=2.0, exit_code=3, reason="disk full at east/n1")]))
            full = await op.schedule(job_id="scoped")
            assert full.schedule.allocations and all(
                a.site == "east" for a in full.schedule.allocations)
            assert (await alice.schedule(job_id="scoped")) == full
            assert (await east.schedule(job_id="scoped")) == full
            assert not (await west.schedule(job_id="scoped")).schedule.allocations
            assert not (await west.schedule(site="east")).schedule.allocations

            def placements(view):
                rec = next(j for j in view.jobs if j.job.id == "scoped")
                return [p.node for t in rec.tasks for p in t.running], rec
            nodes, rec = placements(await east.ledger())
            assert nodes and FOREIGN_NODE not in nodes
            west_nodes, west_rec = placements(await west.ledger())
            assert west_nodes == [FOREIGN_NODE] * len(nodes)      # running, but not where
            assert [t.states for t in west_rec.tasks] == [t.states for t in rec.tasks]
            assert rec.tasks[0].failed_attempts == west_rec.tasks[0].failed_attempts
            status = await west.job_status("scoped")
            assert status.job_status.tasks[0].failures == 1
            assert "disk full" not in str(status) and "disk full" not in str(west_rec)

            async def stream(c):
                out = []

                async def read():
                    async for u in c.watch(0):
                        out.append(u)
                        if any(ch.kind == "failed" for ch in u.changes):
                            return
                await asyncio.wait_for(read(), 30)
                return out
            mine, theirs = await stream(east), await stream(west)
            seen = [(a.site, a.node) for u in theirs for a in u.allocations
                    if a.job_id == "scoped"]
            assert seen and all(x == ("", "") for x in seen)
            assert [(a.site, a.node) for u in mine for a in u.allocations
                    if a.job_id == "scoped"][0][0] == "east"
            fails = [c for u in theirs for c in u.changes if c.job_id == "scoped"]
            assert fails and all((c.site, c.reason, c.exit_code) == ("", "", 0) for c in fails)
    asyncio.run(asyncio.wait_for(go(), 100))
