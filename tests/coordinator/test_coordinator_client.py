"""CoordinatorClient's own choices, with no replicas running: it sends first to the primary
that f+1 agreeing replies vouch for, and a request refused as stale is stamped again (a
bounded number of times) while other refusals are not."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from agora.coordinator.client import CoordinatorClient, CoordinatorError
from agora.coordinator.request_clock import STALE_RETRIES
from agora.coordinator.pbft.client import ReplyTally
from agora.coordinator.pbft.keys import generate_keys
from agora.protos.agora.v1 import coordinator_pb2 as pb

pytestmark = pytest.mark.timeout(180)


@pytest.mark.timeout(150)
def test_the_client_sends_first_to_the_primary_the_agreeing_replies_vouch_for():
    t = ReplyTally(None, 1, False, 1, 4)
    t.agreeing, t.views = [1, 3], {1: 6, 3: 6}
    assert CoordinatorClient._targets(t, 4, 2) == [2, 1]
    t.views = {1: 6, 3: 99}          # one replica claims a far view: f+1 vouch only for 6
    assert CoordinatorClient._targets(t, 4, 2) == [2, 1]
    t.views = {1: 5, 3: 5}           # the primary agreed: it stays first, no duplicate
    assert CoordinatorClient._targets(t, 4, 2) == [1, 3]


def test_a_request_refused_as_stale_is_stamped_again_and_other_refusals_are_not():
    """`agora cancel J --client site:dc-b` while dc-b's agent ran (it signs as the same
    client): the agent's later timestamp executed first and the cancel failed with
    "FAILED_PRECONDITION: ...timestamp: ... is older than the client's last executed
    request". Such a request can never execute; the client stamps it again."""
    from agora.coordinator.config import config_from_dict

    cfg = config_from_dict({"replicas": ["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3",
                                         "127.0.0.1:4"]})
    keys = generate_keys(4, ["site:east"], seed=b"stale")
    stale = CoordinatorError(grpc.StatusCode.FAILED_PRECONDITION,
                             "envelope.payload.request.timestamp: 5 is older than the "
                             "client's last executed request (9); expected a larger timestamp")
    other = CoordinatorError(grpc.StatusCode.FAILED_PRECONDITION, "command.cancel_job.job_id: "
                             "no job 'x'; expected a submitted job id")

    async def main(answers: list) -> list[int]:
        c = CoordinatorClient(cfg, keys.for_client("site:east"), "site:east")
        stamps: list[int] = []

        async def send_raw(rpc_name, data, ts, **kw):
            stamps.append(ts)
            answer = answers.pop(0)
            if isinstance(answer, Exception):
                raise answer
            return answer

        c.send_raw = send_raw
        try:
            assert await c.call("CancelJob", pb.Command(cancel_job=pb.CancelJob(
                job_id="x"))) == b"ok"
        finally:
            await c.close()
        return stamps

    stamps = asyncio.run(main([stale, stale, b"ok"]))
    assert len(stamps) == 3 and stamps == sorted(set(stamps))
    with pytest.raises(CoordinatorError) as e:
        asyncio.run(main([other, b"ok"]))
    assert e.value is other
    with pytest.raises(CoordinatorError) as e:                 # bounded: never a loop
        asyncio.run(main([stale] * (STALE_RETRIES + 1) + [b"ok"]))
    assert e.value is stale
