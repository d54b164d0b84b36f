"""A checkpoint's bytes are assembled by hand (``checkpoint_bytes``, no copy of the
application snapshot into a message): they must be exactly protobuf's deterministic
serialisation of the same CheckpointState, whatever the sizes (varint lengths of 1-3
bytes, empty snapshot, no clients, an op digest or none)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from agora.coordinator.pbft.checkpoint import checkpoint_bytes
from agora.protos.agora.v1.pbft_pb2 import CheckpointState, ClientRecord


@settings(max_examples=200, deadline=None)
@given(seq=st.integers(0, 2**62), snap_len=st.sampled_from([0, 1, 127, 128, 300, 16383,
                                                             16384, 70000]),
       fill=st.binary(min_size=1, max_size=8),
       clients=st.dictionaries(st.text(max_size=12), st.tuples(st.integers(0, 2**62),
                                                               st.binary(max_size=20),
                                                               st.binary(max_size=32)),
                               max_size=5))
def test_checkpoint_bytes_equal_protobufs_deterministic_encoding(seq, snap_len, fill, clients):
    snap = (fill * (snap_len // len(fill) + 1))[:snap_len]
    want = CheckpointState(seq=seq, app_snapshot=snap, clients=[
        ClientRecord(client_id=c, timestamp=t, result=r, op_digest=d)
        for c, (t, r, d) in sorted(clients.items())]).SerializeToString(deterministic=True)
    assert checkpoint_bytes(seq, snap, clients) == want
