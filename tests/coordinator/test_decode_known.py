"""``decode_known`` (coordinator/schedule_codec.py) refuses exactly what ``check_known``
refuses, naming the same place, without copying the message: a command's unknown field
anywhere (top level, inside one bid of fifty) is refused with its path; a clean command comes
back equal to a plain parse."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agora.coordinator.schedule_codec import check_known, decode_known
from agora.protos.agora.v1 import coordinator_pb2 as pb
from agora.protos.convert import ProtoError

UNKNOWN = b"\xa0\x06\x01"          # field 100, varint 1


def part(n: int = 50) -> pb.Command:
    return pb.Command(site_round=pb.SiteRound(site="a", round=3, bidding=True, bids=[
        pb.Bid(job_id=f"j{k}", task_id="t", instances=1, price=k) for k in range(n)]))


def test_a_clean_command_parses_as_decode_does():
    data = part().SerializeToString()
    assert decode_known(pb.Command, data, "command") == pb.Command.FromString(data)


@pytest.mark.parametrize("where,path", [
    (lambda c: c, "command"),
    (lambda c: c.site_round, "command.site_round"),
    (lambda c: c.site_round.bids[37], r"command.site_round.bids\[37\]"),
])
def test_an_unknown_field_is_refused_with_its_path(where, path):
    cmd = part()
    where(cmd).MergeFromString(UNKNOWN)
    data = cmd.SerializeToString()
    with pytest.raises(ProtoError, match=rf"^{path}: unknown field number\(s\) \[100\]"):
        decode_known(pb.Command, data, "command")
    with pytest.raises(ProtoError, match=rf"^{path}: unknown field number\(s\) \[100\]"):
        check_known(pb.Command.FromString(data), "command")


def test_bytes_that_are_not_a_command_are_refused_as_unparseable():
    with pytest.raises(ProtoError, match=r"^command: cannot be parsed"):
        decode_known(pb.Command, b"\x12\x05ab", "command")


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_decode_known_agrees_with_decode_then_check_known(data):
    def outcome(f):
        try:
            return ("ok", f().SerializeToString())
        except ProtoError as e:
            return ("refused", e.field)

    def old():
        msg = pb.Command.FromString(data)
        check_known(msg, "command")
        return msg

    def plain():
        try:
            return old()
        except ProtoError:
            raise
        except Exception as e:          # a DecodeError: decode's own refusal
            raise ProtoError("command", f"cannot be parsed ({e})", "a Command") from None

    assert outcome(lambda: decode_known(pb.Command, data, "command")) == outcome(plain)


@pytest.mark.timing
@pytest.mark.parametrize("check", ["decode_known", "check_known"])
def test_unknown_fields_in_bulk_cost_no_more_than_their_bytes_to_refuse(check):
    """A review: naming them built an object per field -- 1,000,000 two-byte unknown fields
    (2 MB, half a request's limit) took 0.6 s and 100 MB, and a walk through a million
    messages to the one holding an unknown field 1.7 s. Past MAX_UNKNOWN_NAMED bytes the
    refusal gives their size, and the walk stops after MAX_WALKED messages."""
    import time

    from agora.coordinator.schedule_codec import MAX_UNKNOWN_NAMED

    bulk = pb.Command.FromString(b"\x10\x00" * 1_000_000)     # field 2: reserved, unknown
    many = pb.Command.FromString(part(1).SerializeToString())
    many.site_round.bids.extend([pb.Bid()] * 1_000_000)
    many.site_round.bids[-1].MergeFromString(UNKNOWN)
    for cmd, said in ((bulk, "command: 2,000,000 bytes of unknown fields"),
                      (many, "command: unknown field(s)")):
        t = time.perf_counter()
        with pytest.raises(ProtoError) as e:
            if check == "decode_known":
                decode_known(pb.Command, cmd.SerializeToString(), "command")
            else:
                check_known(cmd, "command")
        assert str(e.value).startswith(said), str(e.value)
        assert time.perf_counter() - t < 1.0
    few = pb.Command.FromString(b"\x10\x00" * (MAX_UNKNOWN_NAMED // 2))   # still named
    with pytest.raises(ProtoError, match=r"^command: unknown field number\(s\) \[2\]"):
        check_known(few, "command")
