"""PBFT, the consensus core of Agora's coordinator (Castro & Liskov, "Practical Byzantine
Fault Tolerance", OSDI 1999; "Practical Byzantine Fault Tolerance and Proactive Recovery",
TOCS 2002). n = 3f+1 replicas order client requests; sans-IO: no threads, sockets or clocks.

The API a transport is written against:

    from agora.coordinator.pbft import (PbftConfig, generate_keys, KeySet, Replica, Client,
                                        SqliteStorage, MemoryStorage, Send, Broadcast, Reply,
                                        Completed)

    config = PbftConfig(n=4)                           # frozen dataclass, see config.py
    keys = generate_keys(4, ["site-a", "site-b"])      # KeySet; .to_dict() / .from_dict()
    replica = Replica(config, 0, keys.for_replica(0), app, SqliteStorage("r0.db"))
    actions = replica.receive(envelope_or_bytes, now)  # -> list of Send / Broadcast / Reply
    actions = replica.tick(now)                        # call at replica.next_deadline()
    replica.status()                                   # view, primary, water marks, counters

    client = Client(config, "site-a", keys.for_client("site-a"))
    actions = client.submit(b"op", now)                # Send / Broadcast
    actions = client.receive(reply_envelope, now)      # [Completed(...)] once f+1 match
    actions = client.tick(now)                         # at client.next_deadline()

Actions: ``Send(to, msg)`` to replica ``to``; ``Broadcast(msg)`` to every other replica (from
a client: every replica); ``Reply(client_id, msg)`` to a client; ``Completed(client_id,
timestamp, result, read_only)`` is a client's result. ``msg`` is always a
``protos.agora.v1.pbft_pb2.PbftEnvelope``; send ``msg.SerializeToString()`` on the wire and
pass the received bytes (or the parsed envelope) to ``receive``. Envelopes can be forwarded:
trust ``envelope.sender`` only through its MAC or signature, which the replica checks.
Deliver actions after the call returns: storage is flushed by then. ``now`` is seconds on
any monotonic clock. ``app`` implements ``App`` (app.py): execute / query / snapshot /
restore. Restart = a new Replica on the same storage.

Modules: config, keys, auth (MACs, signatures), messages (actions, digests), app, storage,
log (one slot), replica (the surface), normalcase, viewchange, checkpoint (checkpoints,
state transfer, catch-up), recovery (restart), client; for testing: simnet (deterministic
network), byzantine (faulty behaviours), checker (safety/liveness), explorer (Twins-style).
"""

from agora.coordinator.pbft.app import App, KVApp
from agora.coordinator.pbft.client import Client
from agora.coordinator.pbft.config import PbftConfig
from agora.coordinator.pbft.keys import KeySet, generate_keys
from agora.coordinator.pbft.messages import Action, Broadcast, Completed, Reply, Send

_LAZY = {"Replica": "replica", "MemoryStorage": "storage", "SqliteStorage": "storage",
         "Storage": "storage"}
"""Imported when first asked for: a client (a site agent) never loads the replica or
SQLite."""


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value

__all__ = [
    "Action", "App", "Broadcast", "Client", "Completed", "KVApp", "KeySet", "MemoryStorage",
    "PbftConfig", "Replica", "Reply", "Send", "SqliteStorage", "Storage", "generate_keys",
]
