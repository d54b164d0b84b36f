"""Training that can move past its teacher (issue 13, item 4; agents/learn/schedules.py and
input_baseline.py): the schedules are pure functions of the steps, the input-dependent
baseline leaves each rollout out of its own baseline, the imitation penalty pulls the first
choice towards the teacher's, a softened warm start stops at its target, a curriculum starts
short, and PPO with several rollouts of one arrival sequence still learns."""

from __future__ import annotations

from dataclasses import asdict, replace
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from agora.agents.learn import checkpoint, input_baseline, schedules
from agora.agents.learn import rollouts as rollouts_mod
from agora.agents.learn.learned_policy import AgentConfig, Agents
from agora.agents.learn.loop import EpisodeSource, PPOLoop, TrainConfig, run_episode
from agora.agents.learn.ppo import PPOConfig, ValueNorm, bc_update, flatten, ppo_update
from agora.agents.learn.schedules import teacher_prob
from agora.agents.learn.trainer import train
from agora.agents.step.step import srpt_first
from tests.agents.test_learn_threshold import write_instance

torch.set_num_threads(1)   # tests share a 2-core machine


def test_schedules_are_linear_in_the_steps_and_hold_at_their_end():
    assert schedules.linear(1.0, 0.0, 0, 100) == 1.0
    assert schedules.linear(1.0, 0.0, 25, 100) == pytest.approx(0.75)
    assert schedules.linear(1.0, 0.0, 500, 100) == 0.0 == schedules.linear(1.0, 0.0, 5, 0)
    ppo = PPOConfig(ent_coef=0.01, ent_final=0.0, imitation_coef=2.0, imitation_steps=1000)
    assert schedules.ent_coef(ppo, 0, 4000) == 0.01
    assert schedules.ent_coef(ppo, 2000, 4000) == pytest.approx(0.005)
    assert schedules.ent_coef(PPOConfig(ent_coef=0.01), 2000, 4000) == 0.01   # none: constant
    assert schedules.imitation_coef(ppo, 500) == pytest.approx(1.0)
    assert schedules.imitation_coef(ppo, 1000) == 0.0
    assert schedules.imitation_coef(PPOConfig(), 0) == 0.0
    cfg = TrainConfig(train_jobs=100, curriculum_jobs=10, curriculum_steps=900)
    assert [schedules.episode_jobs(cfg, s) for s in (0, 450, 900, 5000)] == [10, 55, 100, 100]
    assert schedules.episode_jobs(TrainConfig(), 0) is None


def test_the_input_baseline_leaves_each_rollout_out_of_its_own():
    times = [np.array([0.0, 10.0, 20.0]), np.array([0.0, 5.0, 15.0, 30.0]),
             np.array([2.0, 12.0])]
    rewards = [np.array([-1.0, -2.0, -3.0]), np.array([-1.0, -1.0, -1.0, -1.0]),
               np.array([-4.0, -2.0])]
    g = [input_baseline.returns_to_go(r, 1.0) for r in rewards]
    assert g[0].tolist() == [-6.0, -5.0, -3.0]
    b = input_baseline.input_baselines(times, g)
    # rollout 0 at t = 10: rollout 1's return at its round of t = 5 (-3), rollout 2's at t = 2
    # (-6): mean -4.5
    assert b[0][1] == pytest.approx(-4.5)
    # before a rollout's first round, its first return counts
    assert input_baseline.at_times(times[2], g[2], np.array([0.0]))[0] == -6.0
    # changing rollout 0's own rewards does not move its baseline (unbiased), only others'
    rewards2 = [rewards[0] * 10, rewards[1], rewards[2]]
    g2 = [input_baseline.returns_to_go(r, 1.0) for r in rewards2]
    b2 = input_baseline.input_baselines(times, g2)
    assert np.array_equal(b2[0], b[0]) and not np.array_equal(b2[1], b[1])
    adv = input_baseline.advantages(times, rewards, 3, 1.0)
    assert adv[0].shape == (3, 3) and np.allclose(adv[0][:, 0], g[0] - b[0])
    same = input_baseline.advantages([times[0]] * 2, [rewards[0]] * 2, 2, 0.99)
    assert all(np.allclose(a, 0) for a in same)      # identical rollouts: nothing to credit
    with pytest.raises(ValueError, match=">= 2 rollouts"):
        input_baseline.input_baselines(times[:1], g[:1])


def test_the_teachers_first_choice_is_the_valid_slot_of_least_work_left():
    def task(work, dur):
        return SimpleNamespace(job=SimpleNamespace(work_left=work), duration=dur)

    window = [task(50, 1), task(10, 9), task(10, 2), task(5, 1)]
    obs = [SimpleNamespace(window=window, mask=np.array([True, True, True, False])),
           SimpleNamespace(window=[], mask=np.zeros(4, bool))]
    assert srpt_first(obs, 4).tolist() == [2, 4]    # slot 3 masked; nothing valid: pass


@pytest.fixture(scope="module")
def episode_batch(tmp_path_factory):
    d = tmp_path_factory.mktemp("inst")
    sc = write_instance(d, n_jobs=60)
    src = EpisodeSource(sc, 30, 0.5)
    torch.manual_seed(0)
    agents = Agents(AgentConfig(k=4, hidden=16))
    cl, wl = src.episode(0)
    _, rec, _ = run_episode(agents, cl, wl, seed=0, rng=np.random.default_rng(0))
    ep = rec.arrays()
    ep["adv"] = np.zeros(ep["mask"].shape[:2], np.float32)
    ep["ret"] = np.zeros(ep["mask"].shape[:2], np.float32)
    return agents, flatten(ep, 8)


def _teacher_p(agents, b) -> float:
    with torch.no_grad():
        logits, _ = agents.model(b["slots"], b["mask"], b["own"], b["peer_codes"],
                                 b["peer_mask"], b["state"])
    return teacher_prob(logits, b["teacher_first"], b["active"])


@pytest.mark.parametrize("imitation", [0.0, 5.0])
def test_the_imitation_penalty_pulls_the_first_choice_to_the_teachers(episode_batch,
                                                                        imitation):
    agents0, b = episode_batch
    agents = Agents(agents0.cfg)
    agents.model.load_state_dict(agents0.model.state_dict())
    agents.codec.load_state_dict(agents0.codec.state_dict())
    assert b["active"].any()
    before = _teacher_p(agents, b)
    opt = torch.optim.Adam(agents.model.parameters(), lr=1e-2)
    cfg = PPOConfig(ent_coef=0.0, vf_coef=0.0, codec_coef=0.0, minibatch=4096)
    for _ in range(5):        # zero advantages: only the penalty can move the policy
        logs = ppo_update(agents, opt, b, cfg, ValueNorm(), np.random.default_rng(0),
                          imitation=imitation)
    after = _teacher_p(agents, b)
    if imitation:
        assert after > max(before + 0.1, 0.9) and "losses/imitation" in logs
    else:
        assert after == pytest.approx(before, abs=0.02) and "losses/imitation" not in logs


def test_a_softened_warm_start_stops_at_its_target(episode_batch):
    agents0, b = episode_batch
    # the recorded rollout's own rankings stand in for a teacher's
    for target, most in ((None, 6), (0.01, 1)):
        agents = Agents(agents0.cfg)
        agents.model.load_state_dict(agents0.model.state_dict())
        opt = torch.optim.Adam(agents.model.parameters(), lr=1e-2)
        logs = bc_update(agents, opt, b, epochs=6, minibatch=4096,
                         rng=np.random.default_rng(0), target_prob=target)
        assert logs["losses/bc_epochs"] == most
        assert 0 < logs["losses/bc_teacher_prob"] <= 1


def test_rollouts_of_one_update_share_the_arrivals_and_a_curriculum_starts_short(
        tmp_path, monkeypatch):
    sc = write_instance(tmp_path, n_jobs=200)
    cfg = TrainConfig(scenario=asdict(sc), steps=200, seed=1, train_jobs=40, bc_episodes=0,
                      rollouts=3, curriculum_jobs=8, curriculum_steps=1000,
                      agent=AgentConfig(k=4, hidden=16))
    seen = []
    real = rollouts_mod.played

    def spy(policy, ep):
        seen.append(([j.id for j in ep.workload.jobs], ep.seed, ep.sample_seed))
        return real(policy, ep)

    monkeypatch.setattr(rollouts_mod, "played", spy)
    lp = PPOLoop(cfg)
    row, _ = lp.update()
    assert len(seen) == 3 and [s[:2] for s in seen] == [seen[0][:2]] * 3  # one input, 3 times
    assert len({s[2] for s in seen}) == 3 and None not in {s[2] for s in seen}  # own samples
    assert len(seen[0][0]) == 8 == row["charts/episode_jobs"]    # the curriculum's first
    assert lp.progress["step"] == row["charts/rounds"] > 0


def test_ppo_with_the_input_baseline_learns_the_better_site(tmp_path):
    """The learn-to-threshold instance (test_learn_threshold.py) with advantages from three
    rollouts of each arrival sequence instead of the critic: it must still learn."""
    sc = write_instance(tmp_path)
    cfg = TrainConfig(scenario=asdict(sc), steps=2500, seed=3, train_jobs=40, bc_episodes=0,
                      eval_every=1000, val_episodes=1, rollouts=3,
                      agent=AgentConfig(k=4, hidden=32, comm="always"),
                      ppo=PPOConfig(lr=2e-3, gamma=0.9, minibatch=256, ent_coef=0.0))
    src = EpisodeSource(sc, cfg.train_jobs, cfg.train_fraction)
    train(cfg, tmp_path / "run", progress=False, log=lambda *_: None)
    agents, _ = checkpoint.load_agents(tmp_path / "run" / "last.pt")
    out = []
    for i in range(3):
        cl, wl = src.episode(i, validation=True)
        res, _, _ = run_episode(agents, cl, wl, seed=i, record=False)
        out.append(res.metrics["jct_mean_s"])
    assert float(np.mean(out)) < 40.0


@pytest.mark.parametrize("kw, field", [
    (dict(rollouts=0), "rollouts"), (dict(curriculum_jobs=0), "curriculum_jobs"),
    (dict(curriculum_steps=-1), "curriculum_steps"), (dict(bc_target_prob=1.0), "bc_target_prob"),
    (dict(curriculum_jobs=5), "curriculum_steps")])
def test_train_config_refuses_bad_values_naming_the_field(kw, field):
    with pytest.raises(ValueError, match=f"^{field}: found"):
        TrainConfig(**kw)


@pytest.mark.parametrize("kw, field", [
    (dict(ent_final=-1.0), "ent_final"), (dict(imitation_coef=float("nan")), "imitation_coef"),
    (dict(imitation_steps=-5), "imitation_steps"),
    (dict(imitation_coef=0.5), "imitation_steps")])   # a penalty that would never apply
def test_ppo_config_refuses_bad_values_naming_the_field(kw, field):
    with pytest.raises(ValueError, match=f"^{field}: found"):
        PPOConfig(**kw)


def test_a_config_saved_before_these_fields_reads_back_with_their_defaults():
    d = TrainConfig().to_dict()
    for k in ("rollouts", "curriculum_jobs", "curriculum_steps", "bc_target_prob"):
        d.pop(k)
    for k in ("ent_final", "imitation_coef", "imitation_steps"):
        d["ppo"].pop(k)
    assert TrainConfig.from_dict(d) == TrainConfig()
    assert replace(TrainConfig(), rollouts=2) != TrainConfig()
