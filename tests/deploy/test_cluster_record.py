"""A live schedule resumes only on the cluster it began with (``deploy/cluster_record.py``):
resumed with a site added to the cluster file, every job that had completed went back to
open and ran again (a probe of membership changes)."""

from __future__ import annotations

import pytest

from agora.deploy.cluster_record import RECORD, check_or_record
from tests.simkit import cluster, node, site


def demo(*extra):
    return cluster(site("a", node("a", "n0", 2)), site("b", node("b", "n0", 2)), *extra)


def test_the_first_start_records_the_cluster_and_the_same_one_resumes(tmp_path):
    check_or_record(tmp_path, demo(), "c.yaml")
    assert (tmp_path / RECORD).is_file()
    check_or_record(tmp_path, demo(), "c.yaml")


@pytest.mark.parametrize("other, said", [
    (demo(site("d", node("d", "n0", 1))), "sites added: d"),
    (cluster(site("a", node("a", "n0", 2))), "sites gone: b"),
    (cluster(site("b", node("b", "n0", 2)), site("a", node("a", "n0", 2))), "another order"),
    (cluster(site("a", node("a", "n0", 4)), site("b", node("b", "n0", 2))), "nodes changed"),
])
def test_another_cluster_is_refused_saying_how_it_differs(tmp_path, other, said):
    check_or_record(tmp_path, demo(), "c.yaml")
    with pytest.raises(ValueError) as e:
        check_or_record(tmp_path, other, "c.yaml")
    assert str(e.value).startswith("c.yaml: the cluster is not the one the schedule")
    assert said in str(e.value) and "would run completed work again" in str(e.value)


def test_a_changed_rule_of_the_state_machine_is_refused(tmp_path):
    """Replicas replay their logs after checkpoints of their own: a retain_finished_jobs
    changed between two runs would make them replay the same log to different states."""
    import json

    check_or_record(tmp_path, demo(), "c.yaml", {"retain_finished_jobs": 100})
    assert json.loads((tmp_path / RECORD).read_text())["rules"] == {
        "retain_finished_jobs": 100}
    check_or_record(tmp_path, demo(), "c.yaml", {"retain_finished_jobs": 100})
    with pytest.raises(ValueError) as e:
        check_or_record(tmp_path, demo(), "c.yaml", {"retain_finished_jobs": 0})
    assert str(e.value).startswith("coordinator: retain_finished_jobs: 100 -> 0")
    with pytest.raises(ValueError, match="sites added: d"):     # the cluster is still checked
        check_or_record(tmp_path, demo(site("d", node("d", "n0", 1))), "c.yaml",
                        {"retain_finished_jobs": 100})


def test_a_state_older_than_the_rule_goes_on_keeping_every_job(tmp_path):
    """The review's finding: a record (or replicas' databases) from before compaction was
    resumed under the default bound, though its logs were executed keeping every job."""
    from agora.deploy.cluster_record import rules

    old, fresh, bare = tmp_path / "old", tmp_path / "fresh", tmp_path / "bare"
    for d in (old, fresh, bare):
        d.mkdir()
    check_or_record(old, demo(), "c.yaml")                 # a record without rules
    (bare / "data").mkdir()
    (bare / "data" / "replica-0.sqlite").write_bytes(b"")  # a state without a record
    legacy = {"retain_finished_jobs": 0, "max_unfinished_jobs_per_site": 0}
    assert rules({}, old) == rules({}, bare) == legacy
    assert rules({}, fresh) == {"retain_finished_jobs": 10_000,
                                "max_unfinished_jobs_per_site": 10_000}
    assert rules({"retain_finished_jobs": 7}, old) == {**legacy, "retain_finished_jobs": 7}
    check_or_record(old, demo(), "c.yaml", rules({}, old))          # goes on, recorded
    assert rules({}, old) == legacy
    with pytest.raises(ValueError, match="retain_finished_jobs: 0 -> 7"):
        check_or_record(old, demo(), "c.yaml", rules({"retain_finished_jobs": 7}, old))


def test_a_state_recorded_before_the_site_quota_goes_on_without_it(tmp_path):
    """A record whose rules predate ``max_unfinished_jobs_per_site`` was made by replicas
    that bounded no site: resumed, they replay their logs without the bound (with the
    default, a log that admitted more would replay to another state), and the record takes
    the rule; setting it then is a change of rule, refused."""
    from agora.deploy.cluster_record import recorded_rules, rules

    check_or_record(tmp_path, demo(), "c.yaml", {"retain_finished_jobs": 5})   # before it
    assert rules({}, tmp_path) == {"retain_finished_jobs": 5,
                                   "max_unfinished_jobs_per_site": 0}
    check_or_record(tmp_path, demo(), "c.yaml", rules({}, tmp_path))            # resumed
    assert recorded_rules(tmp_path)["max_unfinished_jobs_per_site"] == 0
    with pytest.raises(ValueError, match="max_unfinished_jobs_per_site: 0 -> 10"):
        check_or_record(tmp_path, demo(), "c.yaml",
                        rules({"max_unfinished_jobs_per_site": 10}, tmp_path))


def test_the_rules_of_an_agora_up_configuration_fill_in_the_default():
    from agora.deploy.cluster_record import rules

    assert rules({"retain_finished_jobs": 7}) == {"retain_finished_jobs": 7,
                                                  "max_unfinished_jobs_per_site": 10_000}
    assert rules({"round_timeout_s": 1.0})["retain_finished_jobs"] == 10_000


def test_agora_up_refuses_to_resume_on_another_cluster_before_it_starts_anything(tmp_path):
    from agora.deploy.launch import start_group

    (tmp_path / "coordinator").mkdir()
    check_or_record(tmp_path / "coordinator", demo(), "c.yaml")
    with pytest.raises(ValueError, match="sites added: d"):
        start_group(None, demo(site("d", node("d", "n0", 1))), "c.yaml", tmp_path, keep=True)
    assert sorted(p.name for p in (tmp_path / "coordinator").iterdir()) == [RECORD]


def test_agora_up_says_so_in_one_line_and_exits_2_before_it_detaches(tmp_path, capsys,
                                                                     monkeypatch):
    # the re-probe: refused inside the service it exited 1, after a "(resumed)" banner
    from pathlib import Path

    from agora.deploy import live
    from agora.deploy.cli import main

    demo_cluster = Path(__file__).resolve().parents[2] / "deploy" / "demo" / "cluster.yaml"
    (tmp_path / "up.yaml").write_text(f"cluster: {demo_cluster}\nout: {tmp_path / 'out'}\n")
    (tmp_path / "out" / "coordinator").mkdir(parents=True)
    check_or_record(tmp_path / "out" / "coordinator", demo(), "c.yaml")

    def started(*a, **k):
        raise AssertionError("the service started")
    monkeypatch.setattr(live, "serve", started)
    monkeypatch.setattr(live, "detach", started)
    for extra in ([], ["--detach"]):
        assert main(["up", "--config", str(tmp_path / "up.yaml"), *extra]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "the cluster is not the one the schedule" in err[0]
