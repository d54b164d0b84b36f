"""``comm: "global"``: perfect, free messages, the upper bound of what communication can give
(issue 13, item 5). Every round each agent's peer attention reads every other site's exact
local state (``SiteObs.local``, the ``LOCAL_DIM`` floats the codec would encode) of that same
round: no codec, no quantisation, no trigger, no delay. If an actor that sees the whole state
does not beat no communication, no message can, and messages must carry something else.

Simulation only: a site of the cluster engine never holds its peers' states, so the cluster's
policy (``agents.step.policy.NumpyPolicy``) refuses the mode. Here the attention's keys and
values read ``LOCAL_DIM`` inputs instead of ``code_dim`` (``Agents.peer_dim``), the step takes
the peers' states from the round's observations (``agents.step.step.act``) and training reads
them as recorded (``ppo.flatten``: float codes are states, integer codes are wire codes).
"""

from __future__ import annotations

import numpy as np

from agora.agents.step.policy import NumpyPolicy


class GlobalStatePolicy(NumpyPolicy):
    """``NumpyPolicy`` whose peer inputs are exact float32 states, not int8 codes."""

    COMMS = ("global",)

    def peer_width(self, config: dict) -> int:
        from agora.agents.step.observe import LOCAL_DIM

        return LOCAL_DIM

    def peer_inputs(self, peer_codes: np.ndarray) -> np.ndarray:
        return np.asarray(peer_codes, dtype=np.float32)

    def encode(self, local: np.ndarray) -> np.ndarray:
        """The state itself (nothing is sent: the step reads the peers' states directly)."""
        return np.asarray(local, dtype=np.float32)
