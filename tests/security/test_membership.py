"""Finding 1 (issue 16), the part the key file could not give: a site's key is made on its own
node and never leaves it; the operator admits the site by its public key with an ordered
command, and removes it the same way. The key file a group starts from holds no site secret
(here: the operator's and the replicas' keys only).

What is shown: only the operator admits or removes; a site sends nothing before it is
admitted; once admitted it submits, decides and reads with replies it can authenticate
(keys derived from its own key, none handed over); a new admission replaces the key (the old
one is refused); a removal revokes it and lapses the site (its running work is lost and
reopened); and a request signed with a revoked key that a faulty primary orders anyway does
not execute on any replica, nor touch the site's reply-table entry."""

from __future__ import annotations

import asyncio
import json
import os
import stat
from pathlib import Path

import grpc
import pytest
from nacl.signing import SigningKey

from agora.coordinator.client import CoordinatorError
from agora.coordinator.pbft.log import Slot
from agora.coordinator.pbft.messages import request_signing_bytes
from agora.coordinator.pbft.recovery import _Replayer
from agora.coordinator.schedule_state import ScheduleState
from agora.coordinator.site_key import load_or_create
from agora.deploy.local_group import LocalGroup
from agora.protos.agora.v1 import coordinator_pb2 as pb
from agora.protos.agora.v1.pbft_pb2 import PbftRequest
from tests.coordinator.grpc_helpers import CLUSTER, job
from tests.coordinator.state_helpers import Run, allocate, cluster, op, submit
from tests.coordinator.state_helpers import job as small_job

pytestmark = pytest.mark.timeout(180)


def admit(site: str, key: SigningKey) -> bytes:
    return op(admit_site=pb.AdmitSite(site=site, verify_key=bytes(key.verify_key)))


def remove(site: str) -> bytes:
    return op(remove_site=pb.RemoveSite(site=site, reason="decommissioned"))


# ---- the state machine ------------------------------------------------------------------

def test_only_the_operator_admits_and_removes_and_only_usable_keys():
    r = Run()
    key = SigningKey(b"\x07" * 32)
    for client in ("site:a", "site:b", "replica:0", "auditor:x"):
        res = r(client, admit("a", key))
        assert not res.accepted and res.rejections[0].field == "command.admit_site"
        assert r(client, remove("b")).rejections[0].field == "command.remove_site"
    assert r.state.members == {}
    bad = r("operator", op(admit_site=pb.AdmitSite(site="a", verify_key=b"\x01" * 31)))
    assert bad.rejections[0].field == "command.admit_site.verify_key"
    small_order = bytes(32)            # the identity point: no key can be derived from it
    assert r("operator", op(admit_site=pb.AdmitSite(site="a", verify_key=small_order))) \
        .rejections[0].field == "command.admit_site.verify_key"
    assert r("operator", admit("mars", key)).rejections[0].field == "command.admit_site.site"
    assert r("operator", admit("a", key)).accepted == 1
    st = r.state
    assert st.member_key("site:a") == bytes(key.verify_key)
    assert st.member_key("site:a/2") == b""           # its other clients: revoked
    assert st.member_key("site:b") is None and st.member_key("operator") is None
    assert st.governs("site:b") and not st.governs("operator")


def test_one_key_is_admitted_for_one_site_only():
    """A review: the operator could admit the same key for two sites, and whoever held it
    spoke for both. The same site again with its own key (a restart) is fine."""
    r = Run()
    key = SigningKey(b"\x07" * 32)
    assert r("operator", admit("a", key)).accepted == 1
    res = r("operator", admit("b", key))
    assert not res.accepted and res.rejections[0].field == "command.admit_site.verify_key"
    assert "site 'a'" in res.rejections[0].reason
    assert r.state.member_key("site:b") is None
    assert r("operator", admit("a", key)).accepted == 1
    assert r("operator", admit("b", SigningKey(b"\x08" * 32))).accepted == 1


def test_a_removed_site_is_revoked_lapsed_and_its_running_work_reopened():
    r = Run()
    r("operator", submit(small_job("j", "a", n=2, dag=False)))
    allocate(r, "j", "b", 2)
    assert len(r.running("j", "map")) == 2
    res = r("operator", remove("b"))
    assert res.accepted == 1
    st = r.state
    assert st.member_key("site:b") == b"" and st.member_key("site:b/1") == b""
    assert st.sites["b"].lapsed and r.running("j", "map") == []
    assert st.ledger.tasks[("j", "map")].open == 2          # reopened for the others
    lost = [c for u in r.updates for c in u.changes if c.kind == "lost"]
    assert len(lost) == 2 and {c.reason for c in lost} == {"decommissioned"}
    assert "b" not in st.expected_sites()
    snap = st.snapshot()
    again = ScheduleState(cluster(), n_replicas=4)
    again.restore(snap)
    assert again.members == st.members and again.snapshot() == snap


def test_a_site_removed_already_and_the_last_member_site_are_not_removed():
    # a probe: a second removal was accepted ("lost" its work again), and so was removing
    # every site, after which nothing could ever run
    r = Run()
    sites = sorted(r.state.site_index)
    assert r("operator", remove(sites[0])).accepted == 1
    again = r("operator", remove(sites[0]))
    assert not again.accepted and again.rejections[0].field == "command.remove_site.site"
    assert "removed already" in again.rejections[0].reason
    for s in sites[1:-1]:
        assert r("operator", remove(s)).accepted == 1
    last = r("operator", remove(sites[-1]))
    assert not last.accepted and "the last member site" in last.rejections[0].reason
    assert r.state.member_key(f"site:{sites[-1]}") is None      # still the key file's
    key = SigningKey(b"\x08" * 32)
    assert r("operator", admit(sites[0], key)).accepted == 1        # back: now it may go
    assert r("operator", remove(sites[-1])).accepted == 1


# ---- the PBFT core: judged at the request's place in the log -----------------------------

def signed(key: SigningKey, client: str, ts: int, data: bytes) -> PbftRequest:
    sig = key.sign(request_signing_bytes(client, ts, data, False)).signature
    return PbftRequest(client_id=client, timestamp=ts, op=data, signature=sig)


def test_a_request_signed_with_a_revoked_key_never_executes_even_when_ordered():
    """A faulty primary orders a request of site b signed with b's key after the operator
    removed b (and one signed with a stranger's key, with a huge timestamp): every replica
    re-executing that log refuses both at execution, and b's reply-table entry stays as the
    last request that really executed."""
    b_key, stranger = SigningKey(b"\x0b" * 32), SigningKey(b"\x0c" * 32)

    def batch(*reqs) -> Slot:
        s = Slot()
        s.accept(0, b"d", list(reqs), None)
        s.committed = True
        return s

    rep = _Replayer(ScheduleState(cluster(), n_replicas=4))
    op_key = SigningKey(b"\x01" * 32)
    batches = [
        [signed(op_key, "operator", 1, admit("b", b_key))],
        [signed(b_key, "site:b", 5, submit(small_job("b1", "b", dag=False)))],
        [signed(op_key, "operator", 2, remove("b"))],
        [signed(b_key, "site:b", 6, submit(small_job("b2", "b", dag=False)))],
        [signed(stranger, "site:b", 10 ** 15, submit(small_job("b3", "b", dag=False)))],
        # re-admitted under a new key, with a forged request of another client of the site
        # in the same batch: ordered by replicas that saw the site removed, it must still
        # be refused once the admission has executed
        [signed(op_key, "operator", 3, admit("b", stranger)),
         signed(b_key, "site:b/1", 10 ** 15, submit(small_job("b4", "b", dag=False)))],
        [signed(stranger, "site:b", 7, submit(small_job("b5", "b", dag=False)))]]
    for seq, reqs in enumerate(batches, 1):
        assert all(rep.auth.request_ok(r, ordering=True) or r.client_id == "operator"
                   for r in reqs)              # what a backup at this point lets through
        rep._execute(seq, batch(*reqs), replay=True)
    st = rep.app
    assert list(st.ledger.jobs) == ["b1", "b5"]
    assert rep.clients["site:b"][0] == 7 and "site:b/1" not in rep.clients
    assert rep.counters["refused_at_execution"] == 3


def test_a_backup_lets_go_of_a_removed_sites_held_request_instead_of_changing_view():
    """A backup holds a site's request (forwarded to the primary) when the operator's
    removal of that site executes: the request can never execute now, so the backup drops
    it rather than wait for it and ask for view changes."""
    from agora.coordinator.pbft import PbftConfig, Replica
    from agora.coordinator.pbft.keys import generate_keys
    from agora.coordinator.pbft.storage import MemoryStorage
    from agora.protos.agora.v1.pbft_pb2 import PbftEnvelope, PbftMessage

    keys = generate_keys(4, ["operator"], seed=b"held")
    operator, east = SigningKey(keys.client_signing["operator"]), SigningKey(b"\x0e" * 32)

    def execute(r, seq, req):
        s = Slot()
        s.accept(0, b"d", [req], None)
        s.committed = True
        r._execute(seq, s, replay=False)

    r = Replica(PbftConfig(n=4), 1, keys.for_replica(1), ScheduleState(cluster(), n_replicas=4),
                MemoryStorage())
    execute(r, 1, signed(operator, "operator", 1, admit("b", east)))
    held = signed(east, "site:b", 9, submit(small_job("b1", "b", dag=False)))
    r._on_request(held, PbftEnvelope(sender=-1, payload=PbftMessage(
        request=held).SerializeToString()))
    assert "site:b" in r.pending and r._waiting()
    execute(r, 2, signed(operator, "operator", 2, remove("b")))
    assert "site:b" not in r.pending and not r._waiting()


# ---- over gRPC: a site that made its own key ---------------------------------------------

@pytest.fixture(scope="module")
def group(tmp_path_factory):
    g = LocalGroup(tmp_path_factory.mktemp("members"), n=4, clients=["operator"],
                   cluster=str(CLUSTER), round_timeout_s=1.0, site_timeout_s=3600.0)
    with g.serving():
        yield g


def test_a_site_key_file_is_private_random_and_refused_when_others_may_read_it(tmp_path):
    path = tmp_path / "keys" / "site-east.key"
    key = load_or_create(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert bytes(load_or_create(path)) == bytes(key)                   # kept, not remade
    assert bytes(load_or_create(tmp_path / "other.key")) != bytes(key)  # random
    os.chmod(path, 0o644)
    with pytest.raises(ValueError, match="0600"):
        load_or_create(path)
    os.chmod(path, 0o600)
    path.write_bytes(b"junk")
    with pytest.raises(ValueError, match="not an Agora site key"):
        load_or_create(path)


def test_agora_site_key_on_what_is_no_key_says_what_it_is_and_leaves_it(tmp_path, capsys):
    """A probe: a folder, an ordinary readable file and /dev/null were each called a key
    that "may have leaked: remove it" (nudging the user to delete a file that was never a
    key), and a path that cannot be made was named by its temporary file."""
    from agora.deploy.cli import main

    folder = tmp_path / "shared"
    folder.mkdir(mode=0o755)
    victim = tmp_path / "notes.txt"
    victim.write_text("mine")
    victim.chmod(0o644)
    for where, said in ((folder, "a folder; expected the path of a site key file"),
                        (victim, "not an Agora site key"),
                        (Path("/dev/null"), "not a regular file"),
                        (Path("/proc/no-such-key"), "/proc/no-such-key: No such file")):
        assert main(["site", "key", "--out", str(where)]) == 2
        err = capsys.readouterr().err
        assert said in err and "leaked" not in err and ".tmp" not in err \
            and ".new" not in err, err
    assert victim.read_text() == "mine" and stat.S_IMODE(victim.stat().st_mode) == 0o644


async def key_refused(client) -> str | None:
    """A site's clearinghouse's question, asked through ``client`` (the real group)."""
    from agora.coordinator.clearinghouse import PbftClearinghouse

    ch = PbftClearinghouse.__new__(PbftClearinghouse)
    ch.client = client
    return await ch._key_refused()


def test_a_site_is_admitted_rotated_and_removed_by_the_operator_over_grpc(group):
    assert not any(c.startswith("site:") for c in group.keys.client_signing)
    east = SigningKey.generate()
    site_keys = group.keys.public().with_own_key("site:east", bytes(east))

    async def go():
        async with group.client("site:east", keys=site_keys) as site:
            with pytest.raises(CoordinatorError) as e:        # not admitted yet
                await site.submit_jobs([job("early", origin="east")])
            assert e.value.code == grpc.StatusCode.UNAUTHENTICATED
            async with group.client("operator") as operator:
                # a site not admitted has no key: refused before its command is read
                for attempt in (site.admit_site("east", bytes(east.verify_key)),
                                site.remove_site("west")):
                    with pytest.raises(CoordinatorError) as e:
                        await attempt
                    assert e.value.code == grpc.StatusCode.UNAUTHENTICATED
                with pytest.raises(CoordinatorError) as e:
                    await operator.admit_site("east", b"\x00" * 32)
                assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT
                assert "verify_key" in e.value.message
                await operator.admit_site("east", bytes(east.verify_key))
                res = await site.submit_jobs([job("e1", origin="east")])
                assert res.accepted == 1
                assert [r.job.id for r in (await site.ledger()).jobs] == ["e1"]
                assert await site.heartbeat() >= 3    # 2f+1 executed the admission
                rnd = res.round
                dec = await site.submit_round(pb.SiteRound(site="east", round=rnd,
                                                           bidding=True))
                assert not dec.rejections
                for attempt in (site.admit_site("west", bytes(east.verify_key)),
                                site.remove_site("west")):    # admitted, still no operator
                    with pytest.raises(CoordinatorError) as e:
                        await attempt
                    assert e.value.code == grpc.StatusCode.PERMISSION_DENIED
                with pytest.raises(CoordinatorError) as e:   # never another site's origin
                    await site.submit_jobs([job("w1", origin="west")])
                assert e.value.code == grpc.StatusCode.UNAUTHENTICATED

                # the question a running agent asks when its beats go unheard: its key is
                # the group's (coordinator/clearinghouse.py, tests/cluster/test_removed_site)
                assert await key_refused(site) is None
                east2 = SigningKey.generate()                  # rotation
                await operator.admit_site("east", bytes(east2.verify_key))
                with pytest.raises(CoordinatorError) as e:
                    await site.submit_jobs([job("e2", origin="east")])
                assert e.value.code == grpc.StatusCode.UNAUTHENTICATED
                assert "does not verify with the key of client" in await key_refused(site)
                async with group.client("site:east", keys=group.keys.public().with_own_key(
                        "site:east", bytes(east2))) as rotated:
                    assert (await rotated.submit_jobs([job("e3", origin="east")])).accepted
                    await operator.remove_site("east", "decommissioned")
                    with pytest.raises(CoordinatorError) as e:
                        await rotated.submit_jobs([job("e4", origin="east")])
                    assert e.value.code == grpc.StatusCode.UNAUTHENTICATED
                    assert "no key for client" in await key_refused(rotated)
                    assert await rotated.heartbeat() <= 1    # at most f still behind
                ledger = await operator.ledger()
                assert [r.job.id for r in ledger.jobs] == ["e1", "e3"]
                assert [s.site for s in ledger.sites if s.lapsed] == ["east"]
    asyncio.run(asyncio.wait_for(go(), 120))


def test_agora_site_key_prints_the_public_half_of_a_key_it_keeps_private(tmp_path, capsys):
    from agora.deploy.cli import main

    path = tmp_path / "site-east.key"
    assert main(["site", "key", "--out", str(path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["public_key"] == bytes(load_or_create(path).verify_key).hex()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert bytes(load_or_create(path)).hex() not in out["public_key"]
    assert main(["site", "admit", "east", "--key", "abc"]) == 2
    assert "--key" in capsys.readouterr().err
