"""``parse_command`` (what every replica runs on a command before ordering it) against any
Command: any fields, any values of their types (absurd ones included: NaN, inf, huge and
negative ints, unknown enum values, long and odd text), for any RPC and any client."""

from __future__ import annotations

from google.protobuf.descriptor import FieldDescriptor as FD
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agora.coordinator.validate import RPC_KINDS, Refusal, parse_command
from agora.protos.agora.v1 import coordinator_pb2 as pb
from agora.protos.agora.v1.pbft_pb2 import PbftRequest
from tests.protos.random_messages import random_messages

I32, I64 = st.integers(-2**31, 2**31 - 1), st.integers(-2**63, 2**63 - 1)
U32, U64 = st.integers(0, 2**32 - 1), st.integers(0, 2**64 - 1)
TEXT = st.text(max_size=12) | st.sampled_from(["east", "west", "edge", "j", "t", "map",
                                                 "east/cpu-0", "a" * 300, "\x1b[2J", ""])
SCALARS = {
    FD.TYPE_DOUBLE: st.floats(allow_nan=True, allow_infinity=True),
    FD.TYPE_FLOAT: st.floats(width=32, allow_nan=True, allow_infinity=True),
    FD.TYPE_INT64: I64, FD.TYPE_SINT64: I64, FD.TYPE_SFIXED64: I64,
    FD.TYPE_UINT64: U64, FD.TYPE_FIXED64: U64,
    FD.TYPE_INT32: I32, FD.TYPE_SINT32: I32, FD.TYPE_SFIXED32: I32,
    FD.TYPE_UINT32: U32, FD.TYPE_FIXED32: U32,
    FD.TYPE_BOOL: st.booleans(), FD.TYPE_STRING: TEXT,
    FD.TYPE_BYTES: st.binary(max_size=40), FD.TYPE_ENUM: I32,
}


CLIENTS = ["operator", "site:east", "site:west/2", "replica:0", "auditor:a", "x"]


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_parse_command_refuses_any_command_with_a_status_never_raises_otherwise(data):
    """Any Command (any fields, any values: NaN, inf, huge and negative ints, unknown enum
    values, odd text), for any RPC and client: parsed, or a Refusal naming a field."""
    cmd = data.draw(random_messages(pb.Command, SCALARS, depth=4))
    rpc = data.draw(st.sampled_from(sorted(RPC_KINDS)))
    req = PbftRequest(client_id=data.draw(st.sampled_from(CLIENTS)), timestamp=1,
                      op=cmd.SerializeToString(), read_only=data.draw(st.booleans()))
    try:
        parse_command(req, rpc)
    except Refusal as r:
        assert r.message and "Traceback" not in r.message
        assert r.message.split(":")[0].startswith("envelope.payload.request"), r.message
