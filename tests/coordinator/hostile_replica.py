"""What the hostile-input tests of a replica's gRPC entry points share
(``test_grpc_hostile.py``, ``test_grpc_hostile_streams.py``): one real ``agora coordinator``
process (n = 1: its memory and log are its own) per test module, and ways to call it."""

from __future__ import annotations

import grpc
import pytest
from hypothesis import HealthCheck, Phase, settings

from agora.deploy.local_group import LocalGroup
from agora.protos.agora.v1 import coordinator_pb2 as pb
from tests.coordinator.grpc_helpers import CLIENTS, CLUSTER


def hostile_one(name: str):
    """A module fixture: one replica serving for the module's tests."""
    @pytest.fixture(scope="module")
    def one(tmp_path_factory):
        g = LocalGroup(tmp_path_factory.mktemp(name), n=1, clients=CLIENTS,
                       key_seed=b"test-hostile", cluster=str(CLUSTER), request_timeout_s=5.0)
        with g.serving():
            yield g
    return one


def examples(n: int) -> settings:
    """``n`` examples, the same ones each run, not shrunk: each costs a real server seconds
    of megabytes (a failure reports the example as drawn)."""
    return settings(max_examples=n, deadline=None, derandomize=True,
                    phases=[Phase.explicit, Phase.generate], suppress_health_check=[
                        HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                        HealthCheck.data_too_large])


def tracebacks(g: LocalGroup) -> int:
    return g.log(0).read_text().count("Traceback")


def still_serves(g: LocalGroup) -> None:
    with g.channel(0) as ch:
        s = ch.unary_unary("/agora.v1.Coordinator/GetStatus",
                           response_deserializer=pb.ReplicaStatus.FromString)(
            g.status_request(replica=0).SerializeToString(), timeout=10)
    assert s.replica == 0


def stream(g: LocalGroup, messages, timeout: float = 30.0):
    """Send raw ``messages`` (bytes) on a Requests stream: (replies by id, status code,
    details)."""
    got: dict[int, pb.StreamReply] = {}
    with g.channel(0) as ch:
        call = ch.stream_stream("/agora.v1.Coordinator/Requests",
                                response_deserializer=pb.StreamReplies.FromString)(
            iter(messages), timeout=timeout)
        try:
            for batch in call:
                for r in batch.replies:
                    got[r.id] = r
        except grpc.RpcError as e:
            return got, e.code(), e.details() or ""
    return got, grpc.StatusCode.OK, ""
