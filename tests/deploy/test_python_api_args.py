"""The Python API refuses a bad argument as the commands refuse a bad flag: TypeError for a
wrong type, ValueError for a value out of range, each naming the argument (a probe:
``simulate(seed=None)`` ran unseeded and unrepeatable, ``policy=None`` ended in an
AttributeError deep inside, ``seed=-1`` in numpy's own words, ``schedule(site=123)`` in
"bad argument type for built-in operation")."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agora import jobs, schedule, simulate, submit

SMALL = "synthetic:jobs=3"

CASES = [
    (dict(seed=None), TypeError, "seed"), (dict(seed=-1), ValueError, "seed"),
    (dict(seed=1.5), TypeError, "seed"), (dict(seed="3"), TypeError, "seed"),
    (dict(seed=True), TypeError, "seed"), (dict(seed=2 ** 70), ValueError, "seed"),
    (dict(policy=None), TypeError, "policy"), (dict(policy=5), TypeError, "policy"),
    (dict(policy="srpt-cap:nan"), ValueError, "expected a number"),
    (dict(policy="nope"), ValueError, "policy"), (dict(workload=None), TypeError, "workload"),
    (dict(workload=["a"]), TypeError, "workload"), (dict(cluster=3), TypeError, "cluster"),
    (dict(config="nope"), TypeError, "config"), (dict(config={"seed": 3}), TypeError, "config"),
    (dict(load="0.5"), TypeError, "load"), (dict(load=math.nan), ValueError, "load"),
    (dict(load=0), ValueError, "load"), (dict(inflate="2"), TypeError, "inflate"),
    (dict(inflate=0.5), ValueError, "inflate"), (dict(arrival_window=-1), ValueError,
                                                  "arrival_window"),
    (dict(split="x"), ValueError, "split"), (dict(sites=0), ValueError, "sites"),
]


@pytest.mark.parametrize("kw, error, name", CASES, ids=[str(c[0]) for c in CASES])
def test_simulate_names_the_bad_argument(kw, error, name):
    kw = {"workload": SMALL, **kw}
    with pytest.raises(error) as e:
        simulate(**kw)
    assert name in str(e.value)


@settings(max_examples=40, deadline=None)
@given(seed=st.one_of(st.none(), st.booleans(), st.floats(allow_nan=True), st.text(max_size=3),
                      st.integers(min_value=-2 ** 70, max_value=2 ** 70)))
def test_any_seed_runs_seeded_or_is_refused_naming_seed(seed):
    try:
        r = simulate(workload=SMALL, policy="fifo", seed=seed)
    except (TypeError, ValueError) as e:
        assert str(e).startswith("seed: ")
    else:
        assert isinstance(seed, int) and not isinstance(seed, bool) and r.seeds["policy"] == seed


@pytest.mark.parametrize("call, name", [
    (lambda: schedule(site=123), "site"), (lambda: schedule(job=[1]), "job"),
    (lambda: schedule(task=1.5), "task"), (lambda: schedule(since_version=-1), "since_version"),
    (lambda: schedule(config=None), "config"), (lambda: jobs(job=5), "job"),
    (lambda: jobs(client=None), "client"), (lambda: submit(None), "jobs"),
    (lambda: submit("x.jsonl", keys=3), "keys"),
    # a probe: site and job together read the site's schedule alone; a task named no flag
    (lambda: schedule(site="dc-a", job="hello"), "site and job"),
    (lambda: schedule(job="hello", since_version=3), "job and since_version"),
    (lambda: schedule(task="nojob"), "task"),
    # a probe: the coordinator's refusal naming a protocol field, a CoordinatorError
    (lambda: schedule(job="x" * 129), "job"), (lambda: schedule(site="a b"), "site"),
    (lambda: schedule(task="j/" + "t" * 129), "task"),
])
def test_service_calls_name_the_bad_argument_before_reaching_anything(call, name):
    with pytest.raises((TypeError, ValueError)) as e:
        call()
    assert str(e.value).startswith(f"{name}: ")


def test_simulate_takes_paths_as_submit_does(tmp_path):
    # a probe: simulate(cluster=Path(...)) was refused as "expected a non-empty string"
    from pathlib import Path

    (tmp_path / "c.yaml").write_text("sites:\n  - name: a\n    nodes: [{name: n, cpu: 2, "
                                     "mem: 1024}]\n")
    (tmp_path / "w.jsonl").write_text('{"id": "j", "arrival": 0, "origin": "a", "tasks": '
                                      '[{"id": "t", "duration": 2, "demand": {"cpu": 1, "mem": 8}}]}\n')
    r = simulate(cluster=Path(tmp_path / "c.yaml"), workload=Path(tmp_path / "w.jsonl"),
                 policy="fifo")
    assert r.metrics["jobs_completed"] == 1 and r.metrics["jct_mean_s"] == 2
    # and a checkpoint's path (a probe: policy=Path(...) was a TypeError)
    ck = Path(__file__).resolve().parents[2] / "agents/learn/checkpoints/learned-synE.pt"
    r = simulate(cluster=tmp_path / "c.yaml", workload=tmp_path / "w.jsonl", policy=ck)
    assert r.metrics["jobs_completed"] == 1


def test_simulates_default_policy_is_the_commands():
    """A probe: ``simulate()`` defaulted to sjf where ``agora simulate`` runs tetris."""
    import inspect

    from agora.deploy.cli import parser

    want = parser().parse_args(["simulate"]).policy
    assert inspect.signature(simulate).parameters["policy"].default == want == "tetris"


def test_sites_and_split_are_refused_with_a_cluster_that_has_its_sites(tmp_path):
    """A probe: ``simulate(sites=3)`` with a YAML cluster was taken and not used (the command
    refuses --sites there); ``split=["x"]`` was a ValueError, not a TypeError."""
    for kw in ({"sites": 3}, {"split": "by-model"}):
        with pytest.raises(ValueError, match=rf"^{next(iter(kw))}: .* node-list \.csv"):
            simulate(cluster="deploy/demo/cluster.yaml", workload="synthetic:jobs=2", **kw)
    with pytest.raises(TypeError, match="^split: got \\['x'\\]"):
        simulate(workload="synthetic:jobs=2", split=["x"])
    r = simulate(cluster="deploy/demo/cluster.yaml", workload="synthetic:jobs=2", seed=1)
    assert r.metrics["jobs"] == 2


def test_client_keys_and_config_are_named_as_the_api_calls_them_before_not_running(tmp_path):
    """A probe: a bad ``client`` or a missing ``keys`` was told only as "nothing is
    running"; a missing ``config`` was named ``--config``, a flag the API has not."""
    jobs_file = "deploy/demo/jobs.jsonl"
    with pytest.raises(ValueError, match="^client: 'bogus' is no client id"):
        submit(jobs_file, client="bogus")
    with pytest.raises(FileNotFoundError, match="^keys: .*none.keys is not a file"):
        submit(jobs_file, keys=str(tmp_path / "none.keys"))
    for call in (lambda: submit(jobs_file, config="nope.yaml"),
                 lambda: schedule(config="nope.yaml"), lambda: jobs(config="nope.yaml")):
        with pytest.raises(FileNotFoundError, match="^config: nope.yaml is not a file"):
            call()


@pytest.mark.parametrize("argv, flag", [
    (["submit", "deploy/demo/jobs.jsonl", "--client", "bogus"], "--client"),
    (["jobs", "--keys", "/nonexistent/k.yaml"], "--keys"),
    (["schedule", "get", "--client", "site:"], "--client"),
    (["status", "--client", "x" * 300], "--client"),
])
def test_the_commands_refuse_a_bad_client_or_keys_before_looking_for_a_service(argv, flag,
                                                                              capsys):
    from agora.deploy.cli import main

    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f": {flag}: " in err[0] and "nothing is running" not in err[0]
    assert len(err[0]) < 300, err
