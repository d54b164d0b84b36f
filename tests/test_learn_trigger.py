"""The send trigger: the uncertainty measure and the counting of sent and suppressed
messages."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from agents.learn.features import FeatureBuilder
from agents.learn.learned_policy import AgentConfig, Agents, LearnedPolicy
from agents.learn.trigger import Mailbox, normalised_entropy
from agents.sim.config import SimConfig
from agents.sim.engine import Simulator
from agents.workloads.synthetic import generate
from tests.test_learn_policy import CL

torch.set_num_threads(1)   # tests share a 2-core machine


def test_normalised_entropy_bounds():
    mask = np.array([[1, 1, 1, 0], [1, 1, 1, 1], [0, 1, 0, 0]], bool)
    logits = np.array([[0.0, 0.0, 0.0, 99.0], [50.0, 0.0, 0.0, 0.0], [0.0, 3.0, 0.0, 0.0]])
    h = normalised_entropy(logits, mask)
    assert h[0] == pytest.approx(1.0)          # uniform over its valid slots (masked ignored)
    assert h[1] < 1e-6                          # sure
    assert h[2] == 0.0                          # a single choice is no uncertainty


def test_mailbox_counts_sent_and_keeps_the_last_code():
    mb = Mailbox(3, 2, threshold=0.5)
    c1 = np.array([[1, 1], [2, 2], [3, 3]], np.int8)
    sent = mb.offer(c1, np.array([0.9, 0.1, 0.5]), np.array([True, True, False]))
    assert sent.tolist() == [True, False, False]
    assert (mb.sent, mb.possible) == (1, 2)      # an inactive agent could not speak
    c2 = c1 + 10
    mb.offer(c2, np.array([0.2, 0.7, 0.9]))
    assert mb.codes.tolist() == [[1, 1], [12, 12], [13, 13]]   # agent 0 kept its old code
    assert mb.has.tolist() == [True, True, True]
    assert (mb.sent, mb.possible) == (3, 5) and mb.sent_frac == pytest.approx(0.6)


@pytest.mark.parametrize("mode,thr,frac", [("always", 0.5, 1.0), ("none", 0.5, 0.0),
                                           ("trigger", 0.0, 1.0), ("trigger", 1.01, 0.0)])
def test_policy_message_fraction_by_mode(mode, thr, frac):
    wl = generate(CL, seed=3, jobs=15, load=0.9)
    torch.manual_seed(0)
    agents = Agents(AgentConfig(k=4, hidden=32), 3, FeatureBuilder(CL, 4).state_dim)
    pol = LearnedPolicy(agents, comm=mode, threshold=thr)
    Simulator(CL, wl, SimConfig()).run(pol)
    assert pol.mailbox.possible > 0
    assert pol.mailbox.sent_frac == frac
