"""A replica whose port another process already listens on fails to start, saying so,
instead of sharing it (gRPC's default SO_REUSEPORT let the kernel split the clients between
two servers: a review found two test groups on one port each executing the other's
requests); and the ports a local group picks lie below the kernel's ephemeral range, where
no connection or ``bind(0)`` of another process can take them before the replica binds."""

import socket

import pytest

from agora.deploy import local_group
from agora.deploy.local_group import LocalGroup, free_ports
from tests.coordinator.grpc_helpers import CLIENTS, CLUSTER

pytestmark = pytest.mark.timeout(120)


def test_free_ports_are_distinct_bindable_and_below_the_ephemeral_range():
    low = local_group._ephemeral_low()
    ports = free_ports(8)
    assert len(set(ports)) == 8
    if low - local_group.LOW_PORT >= 1000:
        assert all(local_group.LOW_PORT <= p < low for p in ports), (ports, low)
    for p in ports:
        with socket.socket() as s:
            s.bind(("127.0.0.1", p))


def test_a_replica_on_a_port_another_replica_serves_fails_to_start_and_says_so(tmp_path):
    first = LocalGroup(tmp_path / "first", n=1, clients=CLIENTS, key_seed=b"test-port-a",
                       cluster=str(CLUSTER))
    with first.serving():
        second = LocalGroup(tmp_path / "second", n=1, clients=CLIENTS,
                            key_seed=b"test-port-b", cluster=str(CLUSTER),
                            replicas=list(first.config.replicas))
        second.start(0)
        try:
            code = second.procs[0].wait(timeout=60)
        finally:
            second.stop()
        said = second.log(0).read_text()
        assert code != 0, said
        assert first.config.replicas[0] in said and "Traceback" not in said, said
        first.wait_serving(0, timeout=10)           # the first still serves
        assert first.procs[0].poll() is None


def test_a_local_group_whose_port_is_taken_serves_on_fresh_ones(tmp_path):
    """What ``LocalGroup.serving`` does about it (two test workers pick ports at once): the
    group starts again on fresh ports, once its replica said it could not listen."""
    first = LocalGroup(tmp_path / "first", n=1, clients=CLIENTS, key_seed=b"test-port-a",
                       cluster=str(CLUSTER))
    with first.serving():
        taken = list(first.config.replicas)
        second = LocalGroup(tmp_path / "second", n=1, clients=CLIENTS,
                            key_seed=b"test-port-b", cluster=str(CLUSTER), replicas=taken)
        with second.serving():
            assert list(second.config.replicas) != taken
            assert "cannot listen" in second.log(0).read_text()
            second.wait_serving(0, timeout=10)
        first.wait_serving(0, timeout=10)


def test_a_cannot_listen_of_an_earlier_start_does_not_make_other_failures_retried(tmp_path):
    """Only what the replica said since this start decides a retry (a review: a stale
    "cannot listen" in its log had any later failure retried on fresh ports, three times)."""
    g = LocalGroup(tmp_path, n=1, clients=CLIENTS, key_seed=b"test-port-c",
                   cluster=str(CLUSTER))
    g.log(0).write_text("agora: replica 0: cannot listen on 127.0.0.1:1: (an earlier run)\n")
    with pytest.raises(AssertionError):
        with g.serving(byzantine={0: "no-such-behaviour"}):
            pass
    assert g.log(0).read_text().count("coordinator config:") == 1, "started once"
