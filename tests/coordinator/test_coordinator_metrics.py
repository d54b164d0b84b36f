"""Prometheus metrics: ``agents/metrics.py`` on its own (registry, HTTP endpoint, parsing),
the ``metrics_port`` configuration field, and four `agora coordinator` processes with
metrics on, scraped over HTTP: commits counted per executed sequence number, peer bytes in
and out, requests by outcome, and a view change counted once the primary is killed."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
import yaml

from agora.agents import metrics
from agora.agents.workloads.errors import InputError
from agora.coordinator.config import load_config
from agora.deploy.local_group import LocalGroup
from agora.protos.agora.v1 import coordinator_pb2 as pb
from tests.coordinator.grpc_helpers import CLUSTER, job

CLIENTS = ["site:east", "operator"]
pytestmark = pytest.mark.timeout(180)


# ---- agents/metrics.py ----

def test_the_endpoint_serves_the_registry_and_scrape_parses_it():
    port = metrics.start_metrics_server("127.0.0.1", 0)
    try:
        assert port > 0
        metrics.COMMITS.labels(replica="t9").inc(3)
        metrics.wire_bytes("out", replica="t9").inc(100)
        metrics.DECISION_LATENCY.labels(site="t9").observe(0.003)
        s = metrics.scrape(f"http://127.0.0.1:{port}/metrics")
        assert s['agora_commits_total{replica="t9"}'] == 3.0
        assert s['agora_replica_wire_bytes_total{direction="out",replica="t9"}'] == 100
        metrics.wire_bytes("in", site="t9").inc(7)
        s = metrics.scrape(f"http://127.0.0.1:{port}/metrics")
        assert s['agora_agent_wire_bytes_total{direction="in",site="t9"}'] == 7
        # no _created series, no empty label value anywhere
        assert not [k for k in s if "_created" in k.split("{")[0]], s
        assert not [k for k in s if '=""' in k], [k for k in s if '=""' in k]
        # 3 ms falls in the 5 ms bucket, not the 2.5 ms one (buckets from 1 ms to 5 s)
        assert s['agora_decision_latency_seconds_bucket{le="0.0025",site="t9"}'] == 0
        assert s['agora_decision_latency_seconds_bucket{le="0.005",site="t9"}'] == 1
        assert s['agora_decision_latency_seconds_bucket{le="5.0",site="t9"}'] == 1
        assert "agora_federated_rounds_total" in s
    finally:
        metrics.stop_metrics_server(port)


@pytest.mark.timeout(60)
def test_the_endpoint_answers_loopback_names_only_and_closes_idle_connections(monkeypatch):
    """A probe: any Host was answered (a page elsewhere that rebinds its name to 127.0.0.1
    read the counters), and 800 idle connections held 806 threads of a replica for good."""
    import http.client
    import socket

    monkeypatch.setattr(metrics._Quiet, "timeout", 1.0)
    port = metrics.start_metrics_server("127.0.0.1", 0)

    def get(host: str) -> int:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        c.request("GET", "/metrics", headers={"Host": host})
        return c.getresponse().status
    try:
        assert get("evil.example") == 421 and get(f"evil.example:{port}") == 421
        assert get(f"localhost:{port}") == 200 and get(f"127.0.0.1:{port}") == 200
        assert get("[::1]") == 200
        with socket.create_connection(("127.0.0.1", port), timeout=5) as idle:
            assert idle.recv(1) == b""                       # closed after its timeout
    finally:
        metrics.stop_metrics_server(port)


def test_every_metric_of_the_issue_is_defined_with_its_labels():
    names = {m.name: m for m in metrics.REGISTRY.collect()}
    for name in ("agora_decisions", "agora_decision_latency_seconds", "agora_commits",
                 "agora_view_changes", "agora_messages_sent", "agora_messages_suppressed",
                 "agora_agent_wire_bytes", "agora_replica_wire_bytes",
                 "agora_federated_rounds"):
        assert name in names, name
    assert metrics.COMMITS._labelnames == ("replica",)
    assert metrics.VIEW_CHANGES._labelnames == ("replica",)
    assert metrics.DECISIONS._labelnames == ("site",)
    assert metrics.MESSAGES_SENT._labelnames == ("site",)
    assert metrics.MESSAGES_SUPPRESSED._labelnames == ("site",)
    assert metrics.AGENT_WIRE_BYTES._labelnames == ("site", "direction")
    assert metrics.REPLICA_WIRE_BYTES._labelnames == ("replica", "direction")
    with pytest.raises(ValueError, match="exactly one"):
        metrics.wire_bytes("in", site="a", replica=0)
    with pytest.raises(ValueError, match="direction"):
        metrics.wire_bytes("sideways", site="a")


def test_parse_keys_samples_by_name_and_sorted_labels():
    text = ('# TYPE x_total counter\nx_total{b="2",a="1"} 4\n'
            '# TYPE y gauge\ny 1.5\n')
    assert metrics.parse(text) == {'x_total{a="1",b="2"}': 4.0, "y": 1.5}


# ---- metrics_port in the configuration ----

def _cfg(tmp_path, **extra):
    data = {"replicas": ["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3", "127.0.0.1:4"], **extra}
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(data))
    return load_config(p)


def test_metrics_port_is_off_by_default_a_base_port_or_one_per_replica(tmp_path):
    assert [_cfg(tmp_path).metrics_port_of(i) for i in range(4)] == [None] * 4
    assert [_cfg(tmp_path, metrics_port=0).metrics_port_of(i) for i in range(4)] == [0] * 4
    assert [_cfg(tmp_path, metrics_port=9100).metrics_port_of(i) for i in range(4)] == \
        [9100, 9101, 9102, 9103]
    c = _cfg(tmp_path, metrics_port=[9200, None, 0, 9300], metrics_host="0.0.0.0")
    assert [c.metrics_port_of(i) for i in range(4)] == [9200, None, 0, 9300]
    assert c.metrics_host_of(1) == "0.0.0.0"
    assert _cfg(tmp_path).metrics_host_of(2) == "127.0.0.1"
    assert c.to_dict()["metrics_port"] == [9200, None, 0, 9300]


@pytest.mark.parametrize("value, field", [(-1, "metrics_port"), ("9100", "metrics_port"),
                                          (True, "metrics_port"), (65534, "metrics_port"),
                                          ([1, 2], "metrics_port"),
                                          ([1, 2, 3, "x"], "metrics_port[3]")])
def test_bad_metrics_ports_name_the_field(tmp_path, value, field):
    with pytest.raises(InputError) as e:
        _cfg(tmp_path, metrics_port=value)
    assert e.value.field == field


# ---- four replica processes with metrics on ----

@pytest.fixture(scope="module")
def group(tmp_path_factory):
    g = LocalGroup(tmp_path_factory.mktemp("metrics"), n=4, clients=CLIENTS,
                   key_seed=b"test-metrics", cluster=str(CLUSTER), metrics=True,
                   batch_size=8, batch_timeout_s=0.001, checkpoint_interval=4,
                   watermark_window=16, view_change_timeout_s=0.5, request_timeout_s=8.0)
    with g.serving():
        yield g


def _until(pred, timeout: float = 20.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


async def _statuses(g: LocalGroup) -> list:
    async with g.client("operator") as op:
        return await op.status()


def test_each_replica_writes_its_metrics_port_next_to_its_database(group):
    for i in range(4):
        path = group.config.metrics_port_file(i)
        assert path.parent == group.config.database(i).parent
        assert int(path.read_text()) == group.metrics_port(i) > 0
    assert len({group.metrics_port(i) for i in range(4)}) == 4


def test_commits_count_every_executed_sequence_number_on_every_replica(group):
    """N requests from one client, one at a time: a client has one request outstanding,
    so with no other client each batch the primary orders holds exactly that request, and
    each request takes its own sequence number. Every replica executes every sequence
    number (those that are not in the replying quorum a little later), so every replica's
    counter grows by at least N; and since the group started with empty databases, each
    counter ends equal to the replica's last executed sequence number."""
    n = 12
    before = [metrics.total(group.scrape(i), "agora_commits_total") for i in range(4)]
    ok_before = sum(metrics.total(group.scrape(i), "agora_requests_total", outcome="ok")
                    for i in range(4))

    async def go():
        async with group.client("site:east") as east:
            for k in range(n):
                assert (await east.submit_jobs([job(f"m{k}")])).accepted == 1
    asyncio.run(asyncio.wait_for(go(), 60))

    _until(lambda: all(metrics.total(group.scrape(i), "agora_commits_total") >= before[i] + n
                       for i in range(4)), what="every replica to count n commits")

    def matches_status():
        ss = asyncio.run(_statuses(group))
        return all(metrics.total(group.scrape(i), "agora_commits_total") == s.last_executed
                   for i, s in enumerate(ss))
    _until(matches_status, what="commits_total == last_executed")

    scraped = [group.scrape(i) for i in range(4)]
    # Each request was answered by at least f+1 replicas, each counting it "ok" first.
    ok = sum(metrics.total(s, "agora_requests_total", outcome="ok", rpc="SubmitJobs")
             for s in scraped)
    assert ok - ok_before >= n * (group.config.f + 1)
    for i, s in enumerate(scraped):
        assert metrics.total(s, "agora_replica_wire_bytes_total", replica=i, direction="out") > 0
        assert metrics.total(s, "agora_replica_wire_bytes_total", replica=i, direction="in") > 0
        assert metrics.total(s, "agora_view_changes_total", replica=i) == 0


def test_refused_requests_are_counted_as_refused(group):
    before = sum(metrics.total(group.scrape(i), "agora_requests_total", outcome="refused")
                 for i in range(4))
    with group.channel(0) as ch:
        import grpc

        from agora.protos.agora.v1 import coordinator_pb2_grpc as rpc
        with pytest.raises(grpc.RpcError) as e:
            rpc.CoordinatorStub(ch).SubmitRound(pb.ClientRequest(envelope=b"\xff"), timeout=5)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    after = metrics.total(group.scrape(0), "agora_requests_total", outcome="refused",
                          rpc="SubmitRound")
    assert after >= 1
    assert sum(metrics.total(group.scrape(i), "agora_requests_total", outcome="refused")
               for i in range(4)) == before + 1


@pytest.mark.timeout(150)
def test_killing_the_primary_raises_the_view_change_counter_of_the_others(group):
    """The backups install a new view once the primary is gone and a request is pending:
    each live replica's agora_view_changes_total rises (by exactly the number of new views
    it installed, 1 unless a second view change was needed) and agora_view follows."""
    ss = asyncio.run(_statuses(group))
    primary, view0 = ss[0].primary, max(s.view for s in ss)
    others = [i for i in range(4) if i != primary]
    before = {i: metrics.total(group.scrape(i), "agora_view_changes_total") for i in others}
    group.kill(primary)

    async def go():
        async with group.client("site:east", timeout_s=30) as east:
            assert (await east.submit_jobs([job("after-kill")])).accepted == 1
    asyncio.run(asyncio.wait_for(go(), 60))

    def risen():
        return all(metrics.total(group.scrape(i), "agora_view_changes_total") >= before[i] + 1
                   for i in others)
    _until(risen, what="the view-change counters to rise")
    live = [s for s in asyncio.run(_statuses(group)) if not isinstance(s, str)]
    assert len(live) == 3 and all(s.view > view0 for s in live)
    for i in others:
        s = group.scrape(i)
        status = next(x for x in live if x.replica == i)
        assert metrics.total(s, "agora_view", replica=i) == status.view
        assert 1 <= metrics.total(s, "agora_view_changes_total") - before[i] <= status.view - view0
    group.start(primary)
    group.wait_serving(primary)
    assert group.metrics_port(primary) > 0      # a fresh port file from the restarted one


@pytest.mark.parametrize("port", [None, 0])
def test_an_in_process_replica_serves_metrics_only_when_configured(tmp_path, port):
    """serve() in this process (n = 1, f = 0): with metrics_port 0 it reports the bound port,
    writes it next to its database, counts its commits and removes the file on stop; with
    metrics_port null it does none of that."""
    from agora.coordinator.client import CoordinatorClient
    from agora.coordinator.config import config_from_dict
    from agora.deploy.local_group import free_ports
    from agora.coordinator.pbft.keys import generate_keys
    from agora.coordinator.server import serve

    keys = generate_keys(1, ["site:east"], seed=b"in-process")
    cfg = config_from_dict({"replicas": [f"127.0.0.1:{free_ports(1)[0]}"], "f": 0,
                            "data_dir": str(tmp_path / "data"), "cluster": str(CLUSTER),
                            "metrics_port": port})

    async def go():
        server = await serve(cfg, 0, keys)
        try:
            if port is None:
                assert server.metrics_port is None and server.host.metrics is None
                assert not cfg.metrics_port_file(0).exists()
                return
            url = f"http://127.0.0.1:{server.metrics_port}/metrics"
            assert int(cfg.metrics_port_file(0).read_text()) == server.metrics_port
            before = metrics.total(metrics.scrape(url), "agora_commits_total", replica=0)
            async with CoordinatorClient(cfg, keys, "site:east") as c:
                for k in range(3):
                    assert (await c.submit_jobs([job(f"ip{k}")])).accepted == 1
            after = await asyncio.to_thread(metrics.scrape, url)
            assert metrics.total(after, "agora_commits_total", replica=0) == before + 3
        finally:
            await server.stop()
        assert not cfg.metrics_port_file(0).exists()
    asyncio.run(asyncio.wait_for(go(), 60))


def test_the_shipped_local_config_documents_metrics_and_tls():
    from agora.deploy.cli_coordinator import DEFAULT_CONFIG
    text = Path(DEFAULT_CONFIG).read_text()
    assert "metrics_port" in text and "tls" in text
    cfg = load_config(DEFAULT_CONFIG)
    assert cfg.metrics_port_of(0) is None and not cfg.tls_enabled
