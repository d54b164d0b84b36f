"""A client's request stream to a replica that ends it, or sends what is no reply (a review):
each break left a task of the old call waiting for good, a reply that could not be read
killed the reader and left the call open, and an old call's generator could take requests
meant for the next one. Over a real gRPC server standing in for a replica (this test's)."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from agora.coordinator.request_stream import RequestStream
from agora.protos.agora.v1 import coordinator_pb2 as pb


async def serve(mode: str):
    async def requests(request_iterator, context):
        async for batch in request_iterator:
            if mode == "junk":
                yield b"\xff\xff\xff"                      # no StreamReplies
                await asyncio.sleep(3600)                  # and the stream kept open
            ids = [r.id for r in pb.StreamRequests.FromString(batch).requests]
            yield pb.StreamReplies(replies=[pb.StreamReply(id=i, code="UNAVAILABLE",
                                                           details="busy")
                                            for i in ids]).SerializeToString()
            return                                         # the replica ends the stream

    server = grpc.aio.server()
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        "agora.v1.Coordinator", {"Requests": grpc.stream_stream_rpc_method_handler(requests)}),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, port


@pytest.mark.timeout(60)
@pytest.mark.parametrize("mode", ["ends", "junk"])
def test_a_stream_that_breaks_fifty_times_leaves_nothing_behind(mode):
    async def main():
        server, port = await serve(mode)
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        stream = RequestStream(channel)
        before = len(asyncio.all_tasks())
        answers = []
        for _ in range(50):
            answers.append(await asyncio.wait_for(stream.request("SubmitRound", b""), 5))
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.5)
        left = len([t for t in asyncio.all_tasks() if not t.done()]) - before
        await stream.close()
        await channel.close()
        await server.stop(None)
        return answers, left

    answers, left = asyncio.run(main())
    assert left < 3, f"{left} tasks left behind after 50 breaks"
    if mode == "ends":
        assert all(a.code() == grpc.StatusCode.UNAVAILABLE for a in answers)
    else:
        assert all(a.code() == grpc.StatusCode.UNKNOWN and "could not be read" in a.details()
                   for a in answers)
