"""The cluster engine: per-site decisions equal the batched policy's, the peer service
checks what it receives, and whole runs on a real local Ray with a real 4-replica PBFT
coordinator give the simulation engine's schedule (single node and multi-node).

The Ray runs use the small 3-site fixture cluster (with task failures) and a randomly
initialised checkpoint written here (same checkpoint in both engines: what matters is that
the engines agree, not that the policy is good)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import numpy as np
import pytest
import torch
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.cluster.brain import Mailbox, SiteBrain, SiteObs
from agents.cluster.peers import PeerLinks, PeerService
from agents.learn import checkpoint
from agents.learn.features import FeatureBuilder, candidates
from agents.learn.learned_policy import AgentConfig, Agents, LearnedPolicy
from agents.learn.trigger import normalised_entropy
from agents.sim.config import SimConfig
from agents.sim.engine import Simulator
from agents.sim.runner import Scenario
from protos.agora.v1 import agent_pb2 as pb
from protos.agora.v1 import agent_pb2_grpc as rpc

FIX = Path(__file__).parent / "fixtures"
CLUSTER = str(FIX / "cluster_engine.yaml")
WORKLOAD = "synthetic:jobs=12"


def make_checkpoint(path: Path, comm: str = "trigger") -> Agents:
    cluster, _ = Scenario(cluster=CLUSTER, workload=WORKLOAD).build(0)
    torch.manual_seed(3)
    cfg = AgentConfig(comm=comm, threshold=0.3)
    agents = Agents(cfg, len(cluster.sites), FeatureBuilder(cluster, cfg.k).state_dim)
    checkpoint.save(path, agents=agents, extra={"note": "random weights, for tests"})
    return agents


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("ck") / "random.pt"
    make_checkpoint(p)
    return p


# ---- per-site decisions ------------------------------------------------------------------

def _decision_point(agents: Agents):
    cluster, wl = Scenario(cluster=CLUSTER, workload="synthetic:jobs=40").build(1)
    sim = Simulator(cluster, wl, SimConfig(seed=1))
    sim.step_events()
    while len(sim.pool) < 3:
        sim.step_events()
    ctx = sim.begin_decision()
    fb = FeatureBuilder(cluster, agents.cfg.k)
    window = candidates(ctx, agents.cfg.k)
    return sim, fb.view(sim, window, sim.jobs[0].job.arrival)


def _obs(rv, i: int) -> SiteObs:
    tasks = [(t.job.job.id, t.task.id, t.open, (t.demand.cpu, t.demand.mem, t.demand.gpu))
             for t in rv.window]
    return SiteObs(0, rv.slots[i], rv.mask[i], rv.own[i], rv.local[i], tasks,
                   (10**9, 10**9, 10**9), [])


def test_a_sites_own_row_gives_the_batched_policys_logits_and_trigger(tmp_path):
    agents = make_checkpoint(tmp_path / "c.pt")
    sim, rv = _decision_point(agents)
    s = agents.n_sites
    rng = np.random.default_rng(0)
    codes = rng.integers(-100, 100, size=(s, agents.cfg.code_dim)).astype(np.int8)
    has = np.array([True, False, True])
    batched, _ = agents.forward_np(rv, codes, has)
    valid = np.concatenate([rv.mask, np.ones((s, 1), bool)], axis=1)
    h = normalised_entropy(batched, valid)
    for i in range(s):
        mb = Mailbox(s, agents.cfg.code_dim)
        mb.codes[:] = codes
        mb.has[:] = has
        brain = SiteBrain(agents, i)
        obs = _obs(rv, i)
        np.testing.assert_allclose(brain.logits(obs, mb), batched[i], rtol=1e-5, atol=1e-5)
        sent = brain.trigger(obs, mb) is not None
        assert sent == bool(rv.mask[i].any() and h[i] >= agents.cfg.threshold)


def test_bids_are_capped_to_the_sites_free_resources(tmp_path):
    agents = make_checkpoint(tmp_path / "c.pt")
    sim, rv = _decision_point(agents)
    i = int(np.argmax(rv.mask.sum(axis=1)))
    brain = SiteBrain(agents, i)
    mb = Mailbox(agents.n_sites, agents.cfg.code_dim)
    free_all = brain.bids(_obs(rv, i), mb)
    assert free_all, "the site should bid with unlimited room"
    job, task, n, _ = free_all[0]
    demand = next(d for j, t, _, d in _obs(rv, i).tasks if (j, t) == (job, task))
    obs = _obs(rv, i)
    obs.free = tuple(d * 1 for d in demand)       # room for exactly one instance of it
    capped = brain.bids(obs, mb)
    asked = np.zeros(3)
    for j, t, k, _ in capped:
        d = next(d for jj, tt, _, d in obs.tasks if (jj, tt) == (j, t))
        asked += k * np.array(d)
    assert (asked <= np.array(obs.free)).all()
    assert capped[0][:3] == (job, task, 1)


# ---- the peer service ----------------------------------------------------------------------

SITES = ["east", "west", "edge"]


@settings(max_examples=200, deadline=None)
@given(site=st.text(max_size=8), rnd=st.integers(-5, 2**40), code=st.binary(max_size=80))
def test_peer_service_accepts_exactly_well_formed_codes(site, rnd, code):
    mb = Mailbox(3, 8)
    svc = PeerService("east", SITES, mb, 8)
    why = svc.check(pb.SiteCode(site=site, round=rnd, code=code))
    ok = site in ("west", "edge") and len(code) == 8 and rnd >= 0
    assert (why == "") == ok
    if not ok:
        assert why.split(":")[0] in ("site", "code", "round")


@pytest.mark.timeout(60)
def test_codes_travel_over_grpc_streams_and_a_restarted_peer_is_found_again():
    async def main():
        boxes = {s: Mailbox(3, 8) for s in SITES}
        servers, addr = {}, {}

        async def serve(s):
            srv = grpc.aio.server()
            rpc.add_PeerExchangeServicer_to_server(PeerService(s, SITES, boxes[s], 8), srv)
            port = srv.add_insecure_port("127.0.0.1:0")
            await srv.start()
            servers[s], addr[s] = srv, f"127.0.0.1:{port}"

        for s in SITES:
            await serve(s)

        async def resolve(p):
            return addr.get(p)

        links = PeerLinks("east", ["west", "edge"], resolve, timeout_s=2.0)
        code = np.arange(8, dtype=np.int8)
        assert await links.broadcast(0, code, epoch=1) == 2
        assert boxes["west"].has[0] and (boxes["west"].codes[0] == code).all()
        # west restarts on a new port: the broken stream is reopened at the new address
        await servers["west"].stop(grace=None)
        await serve("west")
        assert await links.broadcast(1, -code, epoch=1) == 2
        assert (boxes["west"].codes[0] == -code).all()
        assert links.reconnects >= 1
        # a peer that is gone is skipped (counted), not waited on
        await servers["edge"].stop(grace=None)
        addr.pop("edge")
        assert await links.broadcast(2, code, epoch=1) == 1
        assert links.unreachable == 1
        await links.close()
        for srv in servers.values():
            await srv.stop(grace=None)

    asyncio.run(main())


# ---- whole runs on Ray ---------------------------------------------------------------------

def up_config(tmp: Path, ckpt: Path, **over):
    from deploy.up_config import load_up_config

    data = {"cluster": CLUSTER, "workload": WORKLOAD, "policy": str(ckpt),
            "out": str(tmp / "out"), "ray": {"num_cpus": 2}, "seed": 0,
            "coordinator": {"view_change_timeout_s": 1.0}}
    for k, v in over.items():
        if isinstance(v, dict):
            data.setdefault(k, {}).update(v)
        else:
            data[k] = v
    (tmp / "up.yaml").write_text(yaml.safe_dump(data))
    return load_up_config(tmp / "up.yaml")


def sim_engine_metrics(ckpt: Path) -> dict:
    cluster, wl = Scenario(cluster=CLUSTER, workload=WORKLOAD).build(0)
    agents, _ = checkpoint.load_agents(ckpt, cluster=cluster)
    return Simulator(cluster, wl, SimConfig(seed=0)).run(LearnedPolicy(agents)).metrics


QUALITY = ("jct_mean_s", "makespan_s", "score", "jobs_completed", "instances_completed")


@pytest.mark.timeout(300)
def test_agora_up_on_one_node_gives_the_simulation_engines_schedule(tmp_path, ckpt):
    from deploy.up import up

    res = up(up_config(tmp_path, ckpt), echo=lambda *a, **k: None)
    ep = res["episodes"][0]
    ref = sim_engine_metrics(ckpt)
    for key in QUALITY:
        assert ep["metrics"][key] == pytest.approx(ref[key], rel=0.02), key
    assert ep["metrics"]["jobs_completed"] == ep["metrics"]["jobs"]
    sysf = ep["system"]
    assert sysf["allocations_committed"] > 0 and sysf["rounds"] > 0
    assert sysf["codes_sent"] > 0, "random weights are uncertain: some codes must be sent"
    assert (Path(res["config"]["out"]) / "result.json").exists()


def query_the_running_system(system, cluster, capsys) -> None:
    """``agora status`` / ``agora schedule get`` with --json against the running replicas,
    and the Prometheus endpoints of an agent and a replica."""
    import json

    import ray

    from agents.metrics import scrape, total
    from deploy.cli import main

    conf = str(system.group.tmp / "coordinator.yaml")
    capsys.readouterr()
    assert main(["status", "--config", conf, "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status, "status answered"
    site = cluster.site_names[0]
    assert main(["schedule", "get", "--config", conf, "--site", site, "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["allocations"] and {a["site"] for a in got["allocations"]} == {site}
    assert main(["schedule", "get", "--config", conf, "--version", "3", "--json"]) == 0
    assert all(a["version"] <= 3 for a in json.loads(capsys.readouterr().out)["allocations"])
    agent = ray.get(system.actors[0].info.remote())
    m = scrape(f"http://127.0.0.1:{agent['metrics_port']}/metrics")
    assert total(m, "agora_decisions_total", site=agent["site"]) == agent["batches"] > 0
    assert total(m, "agora_messages_sent_total") + total(
        m, "agora_messages_suppressed_total") > 0
    assert total(system.group.scrape(0), "agora_commits_total") > 0


@pytest.mark.timeout(300)
def test_multi_node_ray_pins_each_agent_to_its_sites_node(tmp_path, ckpt, capsys):
    import ray

    from deploy.up import bring_up, run_episode, system_figures
    from deploy.up_config import site_resource

    cfg = up_config(tmp_path, ckpt, ray={"multi_node": True})
    cluster, wl = cfg.scenario().build(cfg.seed)
    system = bring_up(cfg, cluster, cfg.cluster, Path(cfg.out))
    try:
        holder = {}
        for n in ray.nodes():
            for r in n["Resources"]:
                if r.startswith("agora-site-"):
                    holder[r] = n["NodeID"]
        assert len(set(holder.values())) == len(cluster.sites), "one node per site"
        res, pol, wall, _ = run_episode(system, cluster, wl, seed=0, k=16, live_speed=None,
                                        call_timeout_s=120)
        figs = system_figures(system, pol, wall)
        infos = ray.get([a.info.remote() for a in system.actors])
        for info in infos:
            assert info["node_id"] == holder[site_resource(info["site"])], info["site"]
        query_the_running_system(system, cluster, capsys)
    finally:
        system.close()
    ref = sim_engine_metrics(ckpt)
    for key in QUALITY:
        assert res.metrics[key] == pytest.approx(ref[key], rel=0.02), key
    assert figs["allocations_committed"] > 0


@pytest.mark.timeout(300)
def test_with_tls_the_run_completes_and_a_peer_without_a_certificate_is_refused(tmp_path,
                                                                                ckpt):
    import ray

    from deploy.up import bring_up, run_episode

    cfg = up_config(tmp_path, ckpt, tls={"enabled": True, "certs_dir": str(tmp_path / "certs")})
    cluster, wl = cfg.scenario().build(cfg.seed)
    system = bring_up(cfg, cluster, cfg.cluster, Path(cfg.out))
    try:
        res, pol, _, _ = run_episode(system, cluster, wl, seed=0, k=16, live_speed=None,
                                     call_timeout_s=120)
        addr = ray.get(system.actors[0].info.remote())["address"]

        async def plaintext_peer():
            async with grpc.aio.insecure_channel(addr) as ch:
                call = rpc.PeerExchangeStub(ch).Exchange()
                await call.write(pb.SiteCode(site="west", round=0, code=bytes(8)))
                return await asyncio.wait_for(call.read(), 10)

        with pytest.raises(grpc.aio.AioRpcError) as err:
            asyncio.run(plaintext_peer())
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        system.close()
    assert res.metrics["jobs_completed"] == res.metrics["jobs"]
    assert pol.stats["code_bytes"] > 0, "codes travelled (acknowledged) over the TLS streams"


@pytest.mark.timeout(400)
def test_flower_rounds_between_episodes_run_on_the_site_actors(tmp_path, ckpt):
    from deploy.up import up

    cfg = up_config(tmp_path, ckpt, episodes=2, federation={
        "enabled": True, "rounds": 1, "local_steps": 20, "strategy": "fedavg"})
    res = up(cfg, echo=lambda *a, **k: None)
    assert len(res["episodes"]) == 2
    fed = res["episodes"][0]["federation"]
    assert fed["errors"] == []
    assert len(set(fed["policy_digests"])) == 1, "every site acts with the aggregate"
    sent = {int(k): v for k, v in fed["train"].items()}
    assert sent and all(m["charts/steps"] >= 20 for m in sent.values())
    first = res["episodes"][0]["metrics"]
    assert res["episodes"][1]["metrics"]["jobs_completed"] == first["jobs"]


def test_agora_up_with_a_bad_config_exits_2_naming_file_line_and_field(tmp_path, capsys):
    from deploy.cli import main

    bad = tmp_path / "up.yaml"
    bad.write_text("seed: 0\nreplicas: 3\n")
    assert main(["up", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "up.yaml:2" in err and "replicas" in err and "3f+1" in err
