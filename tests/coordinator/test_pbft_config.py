"""PBFT configuration and keys: a group is 3f+1 replicas with a water-mark window of whole
checkpoint intervals, the configuration round-trips and refuses unknown fields; key sets
round-trip through JSON, and a replica's or a client's share holds only its own secrets."""

from __future__ import annotations

import json

import pytest

from agora.coordinator.pbft.config import PbftConfig
from agora.coordinator.pbft.keys import KeySet, generate_keys

pytestmark = pytest.mark.timeout(60)


def test_config_requires_3f_plus_1_and_a_window_of_whole_checkpoints():
    assert PbftConfig(n=7).f == 2 and PbftConfig(n=7).quorum == 5
    with pytest.raises(ValueError, match="3f\\+1"):
        PbftConfig(n=5)
    with pytest.raises(ValueError, match="multiple of checkpoint_interval"):
        PbftConfig(checkpoint_interval=4, watermark_window=6)
    assert PbftConfig.from_dict(PbftConfig(n=4).to_dict()) == PbftConfig(n=4)
    with pytest.raises(ValueError, match="unknown fields"):
        PbftConfig.from_dict({"n": 4, "bogus": 1})


def test_keys_round_trip_through_json_and_strip_secrets():
    ks = generate_keys(4, ["a", "b"])
    again = KeySet.from_dict(json.loads(json.dumps(ks.to_dict())))
    assert again == ks
    mine = ks.for_replica(2)
    assert mine.replica_signing[2] == ks.replica_signing[2]
    assert all(s is None for i, s in enumerate(mine.replica_signing) if i != 2)
    assert not mine.client_signing and all(2 in k for k in mine.replica_macs)
    assert set(ks.for_client("a").client_signing) == {"a"}
    assert generate_keys(4, ["a"], seed=b"x") == generate_keys(4, ["a"], seed=b"x")
    with pytest.raises(ValueError, match="appears twice"):
        d = ks.to_dict()
        d["clients"].append(dict(d["clients"][0]))
        KeySet.from_dict(d)
