"""Checkpoints: weights, optimiser, value normaliser, every configuration and seed, in one
``torch.save`` file. Loading checks the checkpoint against the cluster and configuration it
is asked to run on and says exactly what differs."""

from __future__ import annotations

from pathlib import Path

import torch

from agents.learn.features import LOCAL_DIM, OWN_FEATURES, SLOT_FEATURES, FeatureBuilder
from agents.learn.learned_policy import AgentConfig, Agents

FORMAT = "agora-learn-v1"


class CheckpointMismatch(ValueError):
    pass


def save(path: str | Path, *, agents: Agents, extra: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    blob = {"format": FORMAT, "agent_config": agents.cfg.to_dict(), "n_sites": agents.n_sites,
            "state_dim": agents.state_dim, "slot_features": list(SLOT_FEATURES),
            "own_features": list(OWN_FEATURES), "local_dim": LOCAL_DIM,
            "model": agents.model.state_dict(), "codec": agents.codec.state_dict(), **extra}
    tmp = path.with_suffix(".tmp")
    torch.save(blob, tmp)
    tmp.replace(path)


def read(path: str | Path) -> dict:
    p = Path(path)
    if not p.is_file():
        raise CheckpointMismatch(f"{path}: no such checkpoint file")
    try:
        blob = torch.load(p, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001 — any unreadable file is the same user error
        raise CheckpointMismatch(f"{path}: not a readable checkpoint ({e})") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise CheckpointMismatch(f"{path}: not an {FORMAT} checkpoint")
    return blob


def load_agents(path: str | Path, *, cluster=None, expect: AgentConfig | None = None,
                ) -> tuple[Agents, dict]:
    """Rebuild the agents of a checkpoint. ``cluster`` given: it must have the checkpoint's
    number of sites and state size; ``expect`` given: its shape fields (k, hidden, code_dim,
    bits, site_dim) must equal the checkpoint's."""
    blob = read(path)
    cfg = AgentConfig(**blob["agent_config"])
    diffs = []
    if list(blob["slot_features"]) != list(SLOT_FEATURES):
        diffs.append(f"slot features {blob['slot_features']} != this code's {list(SLOT_FEATURES)}")
    if list(blob["own_features"]) != list(OWN_FEATURES) or blob["local_dim"] != LOCAL_DIM:
        diffs.append("own-site feature layout (resources / histogram) differs from this code's")
    if expect is not None:
        for f in ("k", "hidden", "code_dim", "bits", "site_dim"):
            if getattr(expect, f) != getattr(cfg, f):
                diffs.append(f"{f}: checkpoint {getattr(cfg, f)}, configuration "
                             f"{getattr(expect, f)}")
    if cluster is not None:
        n = len(cluster.sites)
        if n != blob["n_sites"]:
            diffs.append(f"sites: checkpoint trained on {blob['n_sites']}, cluster has {n}")
        else:
            sd = FeatureBuilder(cluster, cfg.k).state_dim
            if sd != blob["state_dim"]:
                diffs.append(f"state size: checkpoint {blob['state_dim']}, cluster gives {sd}")
    if diffs:
        raise CheckpointMismatch(f"{path}: checkpoint does not match the configuration: "
                                 + "; ".join(diffs))
    agents = Agents(cfg, blob["n_sites"], blob["state_dim"])
    try:
        agents.model.load_state_dict(blob["model"])
        agents.codec.load_state_dict(blob["codec"])
    except RuntimeError as e:
        raise CheckpointMismatch(f"{path}: weights do not fit the configuration: {e}") from None
    return agents, blob
