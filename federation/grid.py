"""A Flower ``Grid`` over site clients that live in this process (the simulation engine) or
behind a call (the cluster engine's site actors).

``flwr[simulation]`` pins an older Ray than the one the cluster runs, so Flower's own
simulation runtime cannot share it. Flower's strategies only need a ``Grid``: something
that lists node ids and turns instruction messages into replies. ``SiteGrid`` is that: each
node is a ``deliver(message) -> reply`` callable (by default a real ``ClientApp`` called
with its own ``Context``), run on its own thread so that a slow site does not hold the
others, with ``send_and_receive``'s timeout honoured: a site that answers late (or never)
is left out of the round and its late reply is discarded; it is asked again next round.

A site whose client raises (its own check of the model it received among it) answers with
an error reply naming the site, which Flower's strategies count as a failure; what a train
reply holds is checked by the strategy (``federation/guard.py``), which names the site and
the tensor through ``describe``.

Message ids are ``<group>:<counter>``, not random, so that runs are reproducible.
"""

from __future__ import annotations

import itertools
import threading
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Callable, Iterable

from flwr.app import Context, Error, Message, RecordDict
from flwr.app.message_type import MessageType
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid
from flwr.common.constant import SUPERLINK_NODE_ID
from flwr.supercore.run import Run
from flwr.supercore.task_identity import TaskIdentity

from agora.federation.client_app import ARRAYS
from agora.federation.learner import WeightError

FIRST_NODE_ID = 1000
"""site i is node FIRST_NODE_ID + i (Flower reserves node id 1 for the server)"""
ERR_CLIENT = 1001
"""error code of a reply whose client raised"""
ERR_WEIGHTS = 1002
"""error code of a train reply with unusable weights (the reason names site and tensor)"""


@dataclass
class SiteNode:
    site: str
    deliver: Callable[[Message], Message | None]
    """returns the reply, or None for "no answer" (a site that dropped out)"""
    weight_names: list[str] = field(default_factory=list)


def client_app_node(site: str, node_id: int, app: ClientApp, run_id: int,
                    weight_names: list[str]) -> SiteNode:
    context = Context(run_id=run_id, node_id=node_id, node_config={"site": site},
                      state=RecordDict(), run_config={})
    return SiteNode(site, lambda msg: app(msg, context), weight_names)


def grid_of(learners, make_app: Callable) -> "SiteGrid":
    """A grid of one ``make_app(learner)`` ClientApp per learner, site i as node
    FIRST_NODE_ID + i."""
    return SiteGrid({FIRST_NODE_ID + i: client_app_node(l.site, FIRST_NODE_ID + i, make_app(l),
                                                        1, l.weight_names())
                     for i, l in enumerate(learners)})


class SiteGrid(Grid):
    def __init__(self, nodes: dict[int, SiteNode], *, run_id: int = 1) -> None:
        if not nodes:
            raise ValueError("a grid needs at least one site node")
        if SUPERLINK_NODE_ID in nodes:
            raise ValueError(f"node id {SUPERLINK_NODE_ID} is the server's own (Flower's "
                             f"SUPERLINK_NODE_ID); number the sites from {FIRST_NODE_ID}")
        self.nodes = dict(sorted(nodes.items()))
        self.set_run(Run.create_empty(run_id))
        self._workers = {n: ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"site-{n}")
                         for n in self.nodes}
        """one thread per site: a site handles its messages one at a time, in order, as a
        SuperNode does, so a late site's next message waits behind its late one"""
        self._ids = itertools.count()
        self._lock = threading.Lock()
        self._pending: dict[str, Future] = {}
        self._dst: dict[str, int] = {}
        """message id -> the node it went to, while it is pending"""
        self.offline: set[int] = set()
        """node ids left out of ``get_node_ids`` (sites known to be down)"""
        self.errors: list[tuple[str, str]] = []
        """(site, reason) of every error reply, in arrival order"""
        self.late = 0
        """messages whose reply missed its round's timeout (or never came)"""
        self.bytes_in = 0
        self.bytes_out = 0

    # -- Grid --------------------------------------------------------------------------------
    def set_run(self, run: Run) -> None:
        """Also sets this process's Flower task identity (messages read their run and source
        node from it), as Flower's own in-process runtimes do."""
        self._run = run
        TaskIdentity.task_id = 1
        TaskIdentity.run_id = run.run_id
        TaskIdentity.node_id = SUPERLINK_NODE_ID

    @property
    def run(self) -> Run:
        return self._run

    def create_message(self, content: RecordDict, message_type: str, dst_node_id: int,
                       group_id: str, ttl: float | None = None) -> Message:
        return Message(content, dst_node_id, message_type, ttl=ttl, group_id=group_id)

    def get_node_ids(self) -> Iterable[int]:
        return [n for n in self.nodes if n not in self.offline]

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        ids = []
        for msg in messages:
            dst = msg.metadata.dst_node_id
            if dst not in self.nodes:
                raise ValueError(f"message to unknown node {dst}; nodes: {list(self.nodes)}")
            mid = f"{msg.metadata.group_id or 'msg'}:{next(self._ids)}"
            msg.metadata.__dict__["_message_id"] = mid      # as Flower's own grids do
            msg.metadata.__dict__["_run_id"] = self._run.run_id
            if msg.has_content() and ARRAYS in msg.content:
                self.bytes_out += msg.content[ARRAYS].count_bytes()
            with self._lock:
                self._pending[mid] = self._workers[dst].submit(self._deliver, msg)
                self._dst[mid] = dst
            ids.append(mid)
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        out = []
        with self._lock:
            for mid in message_ids:
                fut = self._pending.get(mid)
                if fut is not None and fut.done():
                    del self._pending[mid]
                    dst = self._dst.pop(mid, None)
                    reply = fut.result()
                    if reply is not None:
                        out.append(reply)
                    else:
                        self.errors.append((self.site_of(dst), "no reply (dropped out)"))
        return out

    def site_of(self, node_id: int | None) -> str:
        node = self.nodes.get(node_id) if node_id is not None else None
        return node.site if node is not None else f"node {node_id}"

    def send_and_receive(self, messages: Iterable[Message], *,
                         timeout: float | None = None) -> Iterable[Message]:
        ids = list(self.push_messages(messages))
        with self._lock:
            futs = [self._pending[m] for m in ids]
        wait(futs, timeout=timeout)
        # by node, not in the order Flower sampled them (``random.sample``, from the
        # process's shared ``random``): the aggregate's sums then never depend on it
        replies = sorted(self.pull_messages(ids), key=lambda m: m.metadata.src_node_id)
        with self._lock:                       # late: dropped now, asked again next round
            for mid in ids:
                if self._pending.pop(mid, None) is not None:
                    self.late += 1
                    self.errors.append((self.site_of(self._dst.pop(mid, None)),
                                        f"no reply within the round's timeout ({timeout:g} "
                                        f"s): left out of the round"))
        return replies

    def close(self) -> None:
        for w in self._workers.values():
            w.shutdown(wait=False, cancel_futures=True)

    # -- delivery ----------------------------------------------------------------------------
    def _deliver(self, msg: Message) -> Message | None:
        node = self.nodes[msg.metadata.dst_node_id]
        try:
            reply = node.deliver(msg)
        except WeightError as e:
            return self._error(node, msg, ERR_WEIGHTS, str(e))
        except Exception as e:  # a client's failure is its reply, never the server's crash
            return self._error(node, msg, ERR_CLIENT, f"site {node.site}: {type(e).__name__}: {e}")
        if reply is None:
            return None
        # what a train reply holds is checked by the server's strategy (federation/guard.py),
        # here and under a SuperLink alike
        if (msg.metadata.message_type == MessageType.TRAIN and reply.has_content()
                and ARRAYS in reply.content):
            self.bytes_in += reply.content[ARRAYS].count_bytes()
        return reply

    def describe(self, node_id: int) -> tuple[str, list[str] | None]:
        """(site, weight names) of ``node_id``: how the guard names what it leaves out."""
        node = self.nodes.get(node_id)
        return (node.site, node.weight_names or None) if node else (f"node {node_id}", None)

    def _error(self, node: SiteNode, msg: Message, code: int, reason: str) -> Message:
        with self._lock:
            self.errors.append((node.site, reason))
        return Message(Error(code, reason), reply_to=msg)

