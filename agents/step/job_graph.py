"""A candidate's job DAG as a policy with a graph encoder reads it (``AgentConfig.encoder:
"graph"``; Decima, Mao et al., SIGCOMM 2019, §5.1): a small fixed-size graph per slot.

**The nodes** (at most ``GRAPH_NODES``): the candidate task itself first, then the tasks
that depend on it, breadth first (what finishing it unblocks), then the job's other
unfinished tasks in DAG order; finished tasks (completed, failed, given up) are left out.
A job with more unfinished tasks than that is cut there: the slot's job-level features
(work left, critical path, done fraction: ``observe.SLOT_FEATURES``) still cover all of it.

**Per node** (``GRAPH_NODE_FEATURES``): present (1, 0 for padding), log duration, log
instances not yet done, the fraction of its instances running, and whether it is ready (its
dependencies done). **Edges**: ``adj[i, j] = 1`` when node ``j`` depends on node ``i``
(``j`` is a child of ``i``), among the nodes kept.

The encoder reads the graphs of the valid slots only, and passes messages once more than
the longest path among them (``path_steps``): that is exact, each node's embedding being
final after as many steps as the longest path below it.

The columns follow the slot's own features: the node features row by row, then the
adjacency row by row (``GRAPH_DIM`` floats). They are the same for every site (the ledger is
public), so they are computed once per task and round. The encoder is ``agents.learn.networks
.JobGraph``, and its numpy twin in ``step.policy``.
"""

from __future__ import annotations

import numpy as np

from agora.agents.ledger import TaskEntry

GRAPH_NODES = 8
GRAPH_NODE_FEATURES = ("present", "log_duration", "log_left", "running_frac", "ready")
GRAPH_DIM = GRAPH_NODES * len(GRAPH_NODE_FEATURES) + GRAPH_NODES * GRAPH_NODES
LOG_DIV = 10.0
"""as ``observe.LOG_DIV``: log1p(x) / 10"""
_FINISHED = ("completed", "failed", "unschedulable", "cancelled")


def _unfinished(t: TaskEntry) -> bool:
    return t.outcome not in _FINISHED


def graph_nodes(t: TaskEntry) -> list[TaskEntry]:
    """The nodes kept for candidate ``t`` (module docstring), ``t`` first."""
    nodes, seen = [t], {id(t)}
    queue = [t]
    while queue and len(nodes) < GRAPH_NODES:
        nxt = []
        for u in queue:
            for c in u.children:
                if id(c) not in seen and _unfinished(c):
                    seen.add(id(c))
                    nodes.append(c)
                    nxt.append(c)
                    if len(nodes) == GRAPH_NODES:
                        return nodes
        queue = nxt
    for u in t.job.tasks:
        if len(nodes) == GRAPH_NODES:
            break
        if id(u) not in seen and _unfinished(u):
            seen.add(id(u))
            nodes.append(u)
    return nodes


def graph_columns(t: TaskEntry) -> np.ndarray:
    """The ``GRAPH_DIM`` columns of candidate ``t``."""
    nodes = graph_nodes(t)
    m, nf = GRAPH_NODES, len(GRAPH_NODE_FEATURES)
    x = np.zeros((m, nf))
    adj = np.zeros((m, m))
    where = {id(u): i for i, u in enumerate(nodes)}
    for i, u in enumerate(nodes):
        n = u.task.instances
        left = n - u.done - u.failed
        x[i] = (1.0, np.log1p(u.duration) / LOG_DIV, np.log1p(max(left, 0)) / LOG_DIV,
                u.running / max(n, 1), u.pending_parents == 0)
        for c in u.children:
            j = where.get(id(c))
            if j is not None:
                adj[i, j] = 1.0
    return np.concatenate([x.ravel(), adj.ravel()])


def path_steps(adj: np.ndarray) -> int:
    """1 + the longest path among the kept nodes of any graph in ``adj`` (..., M, M), in
    edges: the message-passing steps after which every node's embedding is final (a node
    with the longest path below it of h edges is after h + 1 steps; more change nothing: the
    graphs are acyclic)."""
    reach = adj > 0
    steps = 1
    while steps < GRAPH_NODES and reach.any():
        steps += 1
        reach = (reach.astype(np.float32) @ adj) > 0
    return steps


def split(columns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(..., GRAPH_DIM) -> node features (..., GRAPH_NODES, len(GRAPH_NODE_FEATURES)) and
    adjacency (..., GRAPH_NODES, GRAPH_NODES)."""
    m, nf = GRAPH_NODES, len(GRAPH_NODE_FEATURES)
    lead = columns.shape[:-1]
    return (columns[..., :m * nf].reshape(*lead, m, nf),
            columns[..., m * nf:].reshape(*lead, m, m))
