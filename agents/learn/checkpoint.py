"""Checkpoints: weights, optimiser, value normaliser, every configuration and seed, in one
``torch.save`` file of tensors and plain data -- read back with ``weights_only=True``, so
loading a checkpoint never runs code from it. Loading checks the checkpoint against the
configuration it is asked to run with and says exactly what differs.

``load_policy`` gives the acting policy (``agents.step.policy.NumpyPolicy``): what a site agent
needs, without torch in the agent's process (the launcher reads the file and hands the
arrays over).
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import numpy as np
import torch

from agora.agents.learn.learned_policy import AgentConfig, Agents, peer_dim
from agora.agents.limits import MAX_ABS_WEIGHT
from agora.agents.step.observe import LOCAL_DIM, OWN_FEATURES, SLOT_FEATURES
from agora.agents.step.policy import COMPETENCE_BOUNDS, NumpyPolicy, is_competence_bound
from agora.agents.step.simulation import STATE_DIM

FORMAT = "agora-learn-v2"


class CheckpointMismatch(ValueError):
    pass


class TrainingDiverged(ValueError):
    pass


def config_differences(saved: dict, now: dict, at: str = "") -> list[str]:
    """``field: saved X, now Y`` for every leaf where two configurations (nested dicts)
    differ -- what a refused --resume names, instead of the whole saved configuration (a
    probe: a changed --lr was told in a 945-character dump)."""
    out = []
    for k in sorted(set(saved) | set(now), key=str):
        a, b = saved.get(k, "(none)"), now.get(k, "(none)")
        if isinstance(a, dict) and isinstance(b, dict):
            out += config_differences(a, b, f"{at}{k}.")
        elif a != b:
            out.append(f"{at}{k}: saved {a!r}, now {b!r}")
    return out


def save(path: str | Path, *, agents: Agents, extra: dict) -> None:
    """Write the agents' weights and ``extra``; weights that are not finite (a diverged
    run) are refused, naming the first, and ``path`` keeps what it held."""
    path = Path(path)
    for part, module in (("model", agents.model), ("codec", agents.codec)):
        for name, t in module.state_dict().items():
            if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                raise TrainingDiverged(
                    f"training diverged: {part}.{name} holds NaN or infinite weights; not "
                    f"written to {path} (what it held is kept); expected finite weights: "
                    f"try a smaller learning rate, or a workload with more jobs")
    path.parent.mkdir(parents=True, exist_ok=True)
    blob = {"format": FORMAT, "agent_config": agents.cfg.to_dict(),
            "state_dim": agents.state_dim, "slot_features": list(SLOT_FEATURES),
            "own_features": list(OWN_FEATURES), "local_dim": LOCAL_DIM,
            "peer_dim": agents.peer_dim,
            "model": agents.model.state_dict(), "codec": agents.codec.state_dict(), **extra}
    write(path, blob)


def write(path: str | Path, blob: dict) -> None:
    """``blob`` (a checkpoint's dict, as ``read`` gives it) into ``path``, atomically."""
    path = Path(path)
    tmp = path.with_suffix(".tmp")
    torch.save(blob, tmp)
    tmp.replace(path)


def read(path: str | Path) -> dict:
    p = Path(path)
    if p.is_dir():
        raise CheckpointMismatch(f"{path}: a folder, not a checkpoint file; expected a file "
                                 f"written by `agora train` (e.g. {p / 'best.pt'})")
    if not p.is_file():         # a device (/dev/zero) exists: "no such file" misled (a probe)
        raise CheckpointMismatch(f"{path}: " + ("not a regular file; expected a checkpoint "
                                                "file written by `agora train`" if p.exists()
                                                else "no such checkpoint file"))
    try:                    # (is_zipfile says False for a file it may not read: a probe)
        with open(p, "rb"):
            pass
    except OSError as e:
        raise CheckpointMismatch(f"{path}: cannot read the file ({e.strerror or e}); "
                                 f"expected a checkpoint file this user may read") from None
    if not zipfile.is_zipfile(p):
        raise CheckpointMismatch(f"{path}: not a checkpoint (not a torch.save archive); "
                                 f"expected a file written by `agora train`")
    try:
        blob = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointMismatch(f"{path}: holds objects other than tensors and plain data, "
                                 f"which are never loaded (they could run code); expected a "
                                 f"file written by `agora train`") from None
    except Exception as e:  # noqa: BLE001 — any unreadable file is the same user error
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise CheckpointMismatch(f"{path}: not a readable checkpoint ({first}); expected a "
                                 f"file written by `agora train`") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        found = blob.get("format") if isinstance(blob, dict) else type(blob).__name__
        raise CheckpointMismatch(f"{path}: format {found!r}; expected an {FORMAT} checkpoint "
                                 f"(train a new one with `agora train`)")
    require(path, blob, PARTS)
    return blob


PARTS = {"agent_config": dict, "state_dim": int, "slot_features": list, "own_features": list,
         "local_dim": int, "model": dict, "codec": dict}
"""what every checkpoint holds, and of which type (``read`` checks)"""
RESUME_PARTS = {"train_config": dict, "optimizer": dict, "vnorm": list, "progress": dict,
                "rng_state": dict, "torch_rng": torch.Tensor}
"""what a checkpoint that a run resumes from holds besides ``PARTS`` (``agora train
--resume``; ``require``)"""


_KINDS = {dict: "a mapping", list: "a list", int: "a whole number", torch.Tensor: "a tensor"}


def require(path: str | Path, blob: dict, parts: dict) -> None:
    """Every field of ``parts`` in ``blob``, of its type; else one line naming the first
    that is missing or wrong."""
    for name, kind in parts.items():
        if name not in blob:
            raise CheckpointMismatch(f"{path}: no field {name!r}; expected a checkpoint "
                                     f"written by `agora train` (it holds {', '.join(parts)})")
        v = blob[name]
        if not isinstance(v, kind) or (kind is int and isinstance(v, bool)):
            raise CheckpointMismatch(f"{path}: field {name!r} is a {type(v).__name__}; "
                                     f"expected {_KINDS[kind]} (a checkpoint written by "
                                     f"`agora train`)")


def load_agents(path: str | Path, *, expect: AgentConfig | None = None,
                ) -> tuple[Agents, dict]:
    """Rebuild the agents of a checkpoint; ``expect`` given: its shape fields (k, hidden,
    code_dim, bits) must equal the checkpoint's."""
    blob = read(path)
    try:
        cfg = AgentConfig(**blob["agent_config"])
    except (TypeError, ValueError) as e:
        raise CheckpointMismatch(f"{path}: agent_config: {e}") from None
    diffs = []
    if list(blob["slot_features"]) != list(SLOT_FEATURES):
        diffs.append(f"slot features {blob['slot_features']} != this code's {list(SLOT_FEATURES)}")
    if list(blob["own_features"]) != list(OWN_FEATURES) or blob["local_dim"] != LOCAL_DIM:
        diffs.append("own-site feature layout (resources / histogram) differs from this code's")
    if blob["state_dim"] != STATE_DIM:
        diffs.append(f"state size: checkpoint {blob['state_dim']}, this code {STATE_DIM}")
    reads = peer_dim(cfg)
    saved = blob.get("peer_dim", cfg.code_dim)               # older checkpoints: codes
    if saved != reads:
        diffs.append(f"peer input width: checkpoint {saved}, comm {cfg.comm!r} reads {reads}")
    if expect is not None:
        for f in ("k", "hidden", "code_dim", "bits"):
            if getattr(expect, f) != getattr(cfg, f):
                diffs.append(f"{f}: checkpoint {getattr(cfg, f)}, configuration "
                             f"{getattr(expect, f)}")
    if diffs:
        raise CheckpointMismatch(f"{path}: checkpoint does not match the configuration: "
                                 + "; ".join(diffs))
    agents = Agents(cfg)
    try:
        agents.model.load_state_dict(blob["model"])
        agents.codec.load_state_dict(blob["codec"])
    except (RuntimeError, TypeError, AttributeError) as e:
        # torch lists every missing and unexpected key over many lines: one line of it
        said = " ".join(str(e).split()) or type(e).__name__
        first = said if len(said) <= 240 else said[:240] + "..."
        raise CheckpointMismatch(f"{path}: weights do not fit the configuration ({first}); "
                                 f"expected a checkpoint written by `agora train`") from None
    for part, module in (("model", agents.model), ("codec", agents.codec)):
        for name, t in module.state_dict().items():
            if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                raise CheckpointMismatch(f"{path}: {part}.{name} holds NaN or infinite "
                                         f"weights; expected finite weights (a diverged run: "
                                         f"use an earlier checkpoint, e.g. best.pt)")
            if t.is_floating_point() and t.numel() and float(t.abs().max()) > MAX_ABS_WEIGHT:
                raise CheckpointMismatch(   # a probe: a poisoned model's 1e30 loaded anywhere
                    f"{path}: {part}.{name} holds weights of magnitude up to "
                    f"{float(t.abs().max()):.3g}; expected at most {MAX_ABS_WEIGHT:g} (no "
                    f"training here comes near it: a diverged or tampered model)")
    competence = blob.get("competence")
    if competence is not None:
        got = competence if isinstance(competence, dict) else {}
        for name in COMPETENCE_BOUNDS:
            v = got.get(name)
            # max_choices is in every measure; max_open is absent in those made before it
            if not is_competence_bound(v) and (v is not None or name == "max_choices"):
                raise CheckpointMismatch(f"{path}: competence.{name}: {v!r}; expected a "
                                         f"whole number >= 1 (python -m agora.agents.learn."
                                         f"competence {path} measures it again)")
            setattr(agents, name, v)
    return agents, blob


def load_policy(path: str | Path, *, comm: str | None = None,
                threshold: float | None = None) -> NumpyPolicy:
    """The acting policy of a checkpoint (numpy arrays and its configuration)."""
    agents, _ = load_agents(path)
    return agents.policy(comm=comm, threshold=threshold)


def policy_arrays(path: str | Path) -> tuple[dict[str, np.ndarray], dict]:
    """(weights, agent config) of a checkpoint, plain numpy and dict: what a launcher hands
    a site agent (``NumpyPolicy(weights, config)``)."""
    pol = load_policy(path)
    return pol.w, pol.config
