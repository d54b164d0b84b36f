"""`agora up --config FILE` (deploy/up_config.py): the embedded default loads, every bad value
is an UpConfigError naming the file, the line and the field, relative paths are relative to
the config file. That no YAML makes the loader fail any other way is property-tested in
test_up_config_properties.py."""

from __future__ import annotations

import dataclasses
import pickle
import shutil
from pathlib import Path

import pytest

from agora.agents.workloads.errors import InputError
from agora.agents.workloads.loader import DEFAULT_CLUSTER
from agora.deploy.up_config import (DEFAULT_CONFIG, SPLITS, STRATEGIES,
                                    FederationSection, MetricsSection, RaySection, TlsSection,
                                    UpConfig, UpConfigError, load_up_config, up_config_from_dict)
from tests.errorcheck import check

REPO = Path(__file__).resolve().parents[2]
CHECKPOINT = REPO / "agents" / "learn" / "checkpoints" / "learned-synE.pt"
DEFAULT_SITES = ("dc-east", "dc-west", "dc-north", "dc-south", "edge-1", "edge-2",
                 "factory-a", "factory-b")


def write(tmp_path: Path, text: str, name: str = "up.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


# --- the embedded default -----------------------------------------------------------------------

def test_the_embedded_default_is_local_yaml_and_has_the_documented_values():
    cfg = load_up_config()  # no argument: deploy/configs/local.yaml
    assert cfg.source == str(DEFAULT_CONFIG)
    # local.yaml is the default: a config that says nothing means the same
    assert dataclasses.replace(cfg, source="<defaults>") == UpConfig()
    assert (cfg.seed, cfg.cluster, cfg.sites, cfg.split) == (0, "default", 8, "stratified")
    assert (cfg.workload, cfg.load) == ("synthetic:jobs=200", None)
    assert cfg.policy == CHECKPOINT and cfg.policy.is_file()
    assert (cfg.replicas, cfg.f, cfg.coordinator) == (4, 1, {})
    assert (cfg.speed, cfg.episodes, cfg.round_timeout_s) == (500.0, 1, 2.0)
    assert (cfg.comm, cfg.peers) == (None, None)        # as the checkpoint says
    assert cfg.federation == FederationSection(enabled=False, rounds=1, local_steps=500,
                                               strategy="fedavg")
    assert cfg.ray == RaySection(address=None, num_cpus=None, agent_num_cpus=0.0,
                                 agent_max_restarts=-1, agent_max_task_retries=-1,
                                 multi_node=False, dashboard=True)
    assert cfg.metrics == MetricsSection(enabled=True, host="127.0.0.1")
    assert cfg.tls == TlsSection(enabled=True, certs_dir=REPO / "out" / "up" / "certs")
    assert cfg.out == REPO / "out" / "up"
    assert tuple(cfg.site_resources()) == DEFAULT_SITES
    assert cfg.site_resources()["dc-east"] == "agora-site-dc-east"
    assert cfg.scenario().cluster == "default" and cfg.scenario().workload == cfg.workload


def test_every_top_level_field_of_local_yaml_is_commented():
    lines = DEFAULT_CONFIG.read_text().splitlines()
    keys = {ln.split(":")[0] for ln in lines if ln and ln[0].isalpha()}
    names = {f.name for f in dataclasses.fields(UpConfig)} - {"source"}
    assert keys == names
    for ln in lines:
        if ln and ln[0] != "#" and ":" in ln and ln.split(":")[0].strip() in (
                "seed", "cluster", "sites", "split", "workload", "load", "policy", "replicas",
                "speed", "episodes", "episode_timeout_s", "round_timeout_s", "out", "enabled",
                "rounds", "local_steps", "strategy", "address", "num_cpus", "agent_num_cpus",
                "agent_max_restarts", "agent_max_task_retries", "multi_node", "host",
                "certs_dir"):
            assert "#" in ln, f"local.yaml: {ln!r} has no comment"


def test_a_file_of_comments_only_means_every_default(tmp_path):
    cfg = load_up_config(write(tmp_path, "# nothing to change\n"))
    assert dataclasses.replace(cfg, source="<defaults>") == UpConfig()


@pytest.mark.parametrize("text", ["", "\n\n  \n"])
def test_a_file_of_nothing_is_refused_not_every_default(tmp_path, text):
    # a probe: a file of no bytes started the 8-site default cluster (a wrong or cut file)
    with pytest.raises(UpConfigError, match="the file is empty .*a comment line to run every "
                                            "default"):
        load_up_config(write(tmp_path, text))


def test_defaults_resolve_from_deploy_configs_and_given_paths_from_the_file(tmp_path,
                                                                         monkeypatch):
    (tmp_path / "sub").mkdir()
    shutil.copy(DEFAULT_CLUSTER, tmp_path / "c.yaml")
    (tmp_path / "ck.pt").write_bytes(b"not read at load time")
    (tmp_path / "sub" / "jobs.jsonl").write_text("")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # relative to the file, never to the current folder
    p = write(tmp_path / "sub", "policy: ../ck.pt\ncluster: ../c.yaml\nworkload: jobs.jsonl\n"
              "out: results\ntls: {certs_dir: ../certs}\ncoordinator: {data_dir: db}\n")
    cfg = load_up_config(p)
    assert cfg.policy == tmp_path / "ck.pt"
    assert cfg.cluster == str(tmp_path / "c.yaml")
    assert cfg.workload == str(tmp_path / "sub" / "jobs.jsonl")
    assert cfg.out == tmp_path / "sub" / "results"
    assert cfg.tls.certs_dir == tmp_path / "certs"
    assert cfg.coordinator == {"data_dir": str(tmp_path / "sub" / "db")}
    # what the file leaves out keeps local.yaml's meaning (relative to deploy/configs)
    other = load_up_config(write(tmp_path, "seed: 3\n"))
    assert other.seed == 3 and other.policy == CHECKPOINT and other.out == REPO / "out" / "up"


def test_values_are_read_with_their_types(tmp_path):
    p = write(tmp_path, "seed: 7\nload: 1\nreplicas: 7\nspeed: 2\n"
              "episodes: 3\nround_timeout_s: 1\nepisode_timeout_s: 7200\n"
              "federation: {enabled: true, rounds: 2, local_steps: 10, strategy: trimmed}\n"
              "ray: {address: auto, agent_num_cpus: 1, agent_max_restarts: 0}\n"
              "metrics: {enabled: false, host: 0.0.0.0}\n"
              "coordinator: {batch_timeout_s: 0, checkpoint_interval: 32}\nkeep_runs: 0\n"
              "restarts: 0\n")
    cfg = load_up_config(p)
    assert (cfg.seed, cfg.replicas, cfg.f, cfg.speed, cfg.episodes) == (7, 7, 2, 2.0, 3)
    assert cfg.keep_runs == 0 and load_up_config(write(tmp_path, "seed: 1\n")).keep_runs > 0
    assert cfg.restarts == 0 and load_up_config(write(tmp_path, "seed: 1\n")).restarts == 5
    assert cfg.episode_timeout_s == 7200.0
    assert type(cfg.load) is float and type(cfg.speed) is float
    assert type(cfg.round_timeout_s) is float and type(cfg.ray.agent_num_cpus) is float
    assert cfg.federation == FederationSection(True, 2, 10, "trimmed")
    assert cfg.ray.address == "auto" and cfg.ray.agent_max_restarts == 0
    assert cfg.metrics == MetricsSection(False, "0.0.0.0")
    assert cfg.coordinator == {"batch_timeout_s": 0.0, "checkpoint_interval": 32}
    assert type(cfg.coordinator["batch_timeout_s"]) is float


def test_the_config_is_frozen_and_survives_pickling():
    cfg = load_up_config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.seed = 1  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(cfg)) == cfg
    e = UpConfigError(path="a.yaml", line=3, field="seed", problem="found -1",
                      expected="a whole number >= 0")
    back = pickle.loads(pickle.dumps(e))
    assert type(back) is UpConfigError and str(back) == str(e)
    assert isinstance(e, InputError) and isinstance(e, ValueError)
    assert cfg.to_dict()["policy"] == str(CHECKPOINT)
    assert cfg.to_dict()["ray"]["address"] is None


def test_coordinator_config_carries_f_the_overrides_and_out(tmp_path):
    cfg = load_up_config(write(tmp_path, "replicas: 7\nout: o\n"
                               "coordinator: {batch_size: 4, view_change_timeout_s: 2}\n"))
    addrs = [f"127.0.0.1:{5000 + i}" for i in range(7)]
    cc = cfg.coordinator_config(addrs)
    assert cc.n == 7 and cc.f == 2 and cc.replicas == tuple(addrs)
    assert cc.batch_size == 4 and cc.view_change_timeout_s == 2.0 and cc.cluster == "default"
    assert Path(cc.data_dir) == tmp_path / "o" / "coordinator"
    assert Path(cc.keys_file) == tmp_path / "o" / "coordinator" / "keys.yaml"
    with pytest.raises(ValueError, match="7"):
        cfg.coordinator_config(addrs[:4])
    names = {f.name for f in dataclasses.fields(type(cc))}
    tls_on = dataclasses.replace(cfg, tls=TlsSection(enabled=True, certs_dir=tmp_path / "c"))
    if "tls" in names:
        cc = tls_on.coordinator_config(addrs)
        assert cc.tls.enabled and Path(cc.tls.certs_dir) == tmp_path / "c"
    if "metrics_host" in names:
        assert cfg.coordinator_config(addrs).metrics_host == "127.0.0.1"
        off = dataclasses.replace(cfg, metrics=MetricsSection(enabled=False))
        assert off.coordinator_config(addrs).metrics_port is None


# --- errors: file, line, field, what would be right ----------------------------------------------

HEAD = "# agora up\nseed: 0\n"  # the case's own text starts on line 3

ERRORS = [
    # (case text, line within it, field, words the message must say)
    ("replicas: 3\n", 1, "replicas", ["found 3", "3f+1", "4, 7, 10"]),
    ("replicas: 5\n", 1, "replicas", ["3f+1", "4 (f = 1) and 7"]),
    ("replicas: 1\n", 1, "replicas", ["3f+1 for any f >= 1"]),
    ("replicas: 4.0\n", 1, "replicas", ["whole number"]),
    ("sites: 0\n", 1, "sites", [">= 1"]),
    ("peers: 0\n", 1, "peers", [">= 1"]),
    ("peers: 2.5\n", 1, "peers", ["whole number"]),
    ("seed: -1\n", 1, "seed", ["found -1", ">= 0"]),
    ("seed: 1.5\n", 1, "seed", ["whole number"]),
    ("seed: true\n", 1, "seed", ["found true"]),
    ("split: random\n", 1, "split", ["stratified | by-model | contiguous"]),
    ("bogus: 1\n", 1, "bogus", ["unknown key 'bogus'", "seed", "round_timeout_s", "tls"]),
    ("load: 0\n", 1, "load", ["> 0"]),
    ("load: -2.5\n", 1, "load", ["negative"]),
    ("load: fast\n", 1, "load", ["'fast'", "finite number"]),
    ("speed: 0\n", 1, "speed", [">= 0.001", "workload seconds per wall-clock second"]),
    ("speed: 1.0e+300\n", 1, "speed", ["<= 1,000,000"]),
    ("seed: 100000000000000000000000000000\n", 1, "seed", ["<= 9,223,372,036,854,775,807"]),
    ("replicas: 1000000000000\n", 1, "replicas", ["<= 100"]),
    ("ray: {agent_num_cpus: 1000000}\n", 1, "ray.agent_num_cpus", ["<= 1,024"]),
    ("speed: .nan\n", 1, "speed", ["NaN", "finite"]),
    ("episodes: 0\n", 1, "episodes", [">= 1"]),
    ("keep_runs: -1\n", 1, "keep_runs", [">= 0"]),
    ("ray: {idle_worker_s: 0}\n", 1, "ray.idle_worker_s", [">= 0.001", "seconds"]),
    ("keep_runs: 2.0\n", 1, "keep_runs", ["whole number"]),
    ("restarts: -1\n", 1, "restarts", [">= 0"]),
    ("restarts: yes\n", 1, "restarts", ["whole number"]),
    ("coordinator: {retain_finished_jobs: -3}\n", 1, "coordinator.retain_finished_jobs",
     [">= 0"]),
    ("round_timeout_s: 0\n", 1, "round_timeout_s", [">= 0.001", "seconds"]),
    ("out: 5\n", 1, "out", ["path"]),
    ("out: \"a\\0b\"\n", 1, "out", ["not a usable path"]),
    ("policy: missing.pt\n", 1, "policy", ["missing.pt does not exist", "agora train"]),
    ("policy: ''\n", 1, "policy", ["path"]),
    ("cluster: nothere.yaml\n", 1, "cluster", ["nothere.yaml is not a file"]),
    ("cluster: cluster.txt\n", 1, "cluster", ["unknown kind of cluster", ".csv"]),
    ("cluster: 8\n", 1, "cluster", ["'default'"]),
    ("workload: 'synthetic:jobs=0'\n", 1, "workload", ["jobs must be an integer in [1"]),
    ("workload: 'synthetic:colour=red'\n", 1, "workload",
     ["unknown synthetic parameter 'colour'", "jobs"]),
    ("workload: 'synthetic:jobs'\n", 1, "workload", ["key=value"]),
    ("workload: jobs.jsonl\n", 1, "workload", ["jobs.jsonl is not a file"]),
    ("workload: jobs.txt\n", 1, "workload", ["unknown kind of workload"]),
    # a name no file system holds: Path.is_file raised OSError past the reader (CLI probe)
    (f"policy: {'p' * 300}.pt\n", 1, "policy", ["File name too long", "agora train"]),
    (f"cluster: {'c' * 300}.yaml\n", 1, "cluster", ["File name too long"]),
    (f"workload: {'w' * 300}.jsonl\n", 1, "workload", ["File name too long"]),
    ("federation:\n  enabled: false\n  strategy: mean\n", 3, "federation.strategy",
     ["'mean'", "fedavg | median | trimmed"]),
    ("federation:\n  rounds: 0\n", 2, "federation.rounds", [">= 1"]),
    ("federation:\n  local_steps: -5\n", 2, "federation.local_steps", [">= 1"]),
    ("federation:\n  enabled: false\n  every: 2\n", 3, "federation.every",
     ["unknown key 'every'", "enabled, rounds, local_steps, strategy"]),
    ("federation:\n  enabled: yes please\n", 2, "federation.enabled", ["true or false"]),
    ("episodes: 1\nfederation:\n  enabled: true\n", 3, "federation.enabled",
     ["no round would run", "episodes >= 2"]),
    ("federation: 5\n", 1, "federation", ["found 5", "a mapping"]),
    ("ray:\n  agent_max_restarts: -2\n", 2, "ray.agent_max_restarts", [">= -1"]),
    ("ray:\n  agent_max_task_retries: x\n", 2, "ray.agent_max_task_retries", [">= -1"]),
    ("ray:\n  agent_num_cpus: -0.5\n", 2, "ray.agent_num_cpus", [">= 0", "CPUs"]),
    ("ray:\n  num_cpus: 0\n", 2, "ray.num_cpus", [">= 1"]),
    ("ray:\n  worker_niceness: 20\n", 2, "ray.worker_niceness", ["<= 19"]),
    ("ray:\n  address: auto\n  worker_niceness: 0\n", 3, "ray.worker_niceness",
     ["only with address null", "RAY_worker_niceness"]),
    ("instance_niceness: -1\n", 1, "instance_niceness", [">= 0"]),
    ("ray:\n  address: ''\n", 2, "ray.address", ["'auto'"]),
    ("ray:\n  address: auto\n  multi_node: true\n", 3, "ray.multi_node",
     ["with address 'auto'", "only with address null"]),
    ("ray:\n  address: auto\n  num_cpus: 2\n", 3, "ray.num_cpus", ["only with address null"]),
    ("ray:\n  multi_node: 1\n", 2, "ray.multi_node", ["true or false"]),
    ("ray:\n  nodes: 3\n", 2, "ray.nodes", ["unknown key 'nodes'", "address", "multi_node"]),
    ("metrics:\n  host: ''\n", 2, "metrics.host", ["host name"]),
    ("metrics:\n  enabled: 1\n", 2, "metrics.enabled", ["true or false"]),
    ("tls:\n  enabled: maybe\n", 2, "tls.enabled", ["'maybe'", "true or false"]),
    ("tls:\n  certs_dir: [a]\n", 2, "tls.certs_dir", ["path"]),
    ("coordinator:\n  batch_size: 0\n", 2, "coordinator.batch_size", ["integer >= 1"]),
    ("web:\n  port: 70000\n", 2, "web.port", ["<= 65,535"]),
    ("web:\n  enabled: sometimes\n", 2, "web.enabled", ["true or false"]),
    ("web:\n  colour: red\n", 2, "web.colour", ["enabled, host, port"]),
    ("coordinator:\n  view_change_timeout_s: 0\n", 2, "coordinator.view_change_timeout_s",
     ["> 0"]),
    ("coordinator:\n  sqlite_synchronous: WAL\n", 2, "coordinator.sqlite_synchronous",
     ["FULL, NORMAL or EXTRA"]),
    ("coordinator:\n  bogus: 1\n", 2, "coordinator.bogus",
     ["unknown key 'bogus'", "batch_size", "view_change_timeout_s"]),
    ("coordinator:\n  replicas: [a:1, b:2, c:3, d:4]\n", 2, "coordinator.replicas",
     ["cannot be overridden", "top-level 'replicas'"]),
    ("coordinator:\n  f: 2\n", 2, "coordinator.f", ["cannot be overridden", "3f+1"]),
    ("coordinator:\n  cluster: default\n", 2, "coordinator.cluster", ["cannot be overridden"]),
    ("coordinator:\n  batch_size: 4\n  checkpoint_interval: 100\n", 1,
     "coordinator.watermark_window", ["checkpoint_interval"]),
    ("coordinator: [1]\n", 1, "coordinator", ["a list", "batch_size"]),
    ("seed: 1\nsites: 2\nseed: 2\n", 3, "seed", ["appears twice", "first on line"]),
    ("run_as: no-such-user-x\n", 1, "run_as", ["no such user on this node"]),
    ("sites:\n  - name: a\n", 1, "sites", ["this is a cluster file", "'cluster' names"]),
    ("run_as: 'root; rm -rf /'\n", 1, "run_as", ["is not a user name", "nobody"]),
    ("run_as: [nobody]\n", 1, "run_as", ["a list", "unprivileged user"]),
]


@pytest.mark.parametrize("text, line, field, words", ERRORS,
                         ids=[f"{f}-{i}" for i, (_, _, f, _) in enumerate(ERRORS)])
def test_each_bad_value_names_the_file_line_and_field(tmp_path, text, line, field, words):
    (tmp_path / "cluster.txt").write_text("")
    (tmp_path / "jobs.txt").write_text("")
    body = HEAD + text if not text.startswith("seed:") else "# agora up\n\n" + text
    p = write(tmp_path, body)
    with pytest.raises(UpConfigError) as e:
        load_up_config(p)
    check(e.value, p, line + 2, field, *words)


def test_yaml_syntax_errors_and_non_mappings_name_the_file_and_line(tmp_path):
    p = write(tmp_path, "seed: 0\nsites: [1, 2\nspeed: 3\n")
    with pytest.raises(UpConfigError) as e:
        load_up_config(p)
    assert e.value.path == str(p) and e.value.line in (2, 3, 4) and "not valid YAML" in str(e.value)
    p = write(tmp_path, "\n- seed\n- 1\n")
    with pytest.raises(UpConfigError) as e:
        load_up_config(p)
    check(e.value, p, 2, None, "found a list", "a mapping of agora up fields")
    with pytest.raises(UpConfigError) as e:
        load_up_config(tmp_path / "missing.yaml")
    assert "cannot read the file" in str(e.value) and e.value.path == str(tmp_path / "missing.yaml")


def test_the_default_policy_must_exist_too(tmp_path, monkeypatch):
    import agora.deploy.up_config as uc

    monkeypatch.setattr(uc, "CONFIGS_DIR", tmp_path / "nowhere")
    with pytest.raises(UpConfigError) as e:
        load_up_config(write(tmp_path, "seed: 1\n"))
    assert e.value.field == "policy" and "does not exist" in str(e.value)


def test_a_cluster_that_does_not_load_is_named_at_the_cluster_line(tmp_path):
    (tmp_path / "bad.yaml").write_text("sites: []\n")
    p = write(tmp_path, "seed: 0\ncluster: bad.yaml\n")
    with pytest.raises(UpConfigError) as e:
        load_up_config(p)
    check(e.value, p, 2, "cluster", "bad.yaml", "cannot be used")


def test_a_site_name_that_cannot_name_a_ray_resource_is_refused(tmp_path):
    text = DEFAULT_CLUSTER.read_text().replace("name: edge-1", "name: edge 1")
    text = text.replace("a: edge-1", "a: edge 1")
    (tmp_path / "c.yaml").write_text(text)
    p = write(tmp_path, "# sites\n\ncluster: c.yaml\n")
    with pytest.raises(UpConfigError) as e:
        load_up_config(p)
    check(e.value, p, 3, "cluster", "'edge 1'", "letters, digits")


def test_plain_dicts_check_the_same_without_lines(tmp_path):
    cfg = up_config_from_dict({"replicas": 10, "out": "x"}, base_dir=tmp_path)
    assert cfg.f == 3 and cfg.out == tmp_path / "x"
    with pytest.raises(UpConfigError) as e:
        up_config_from_dict({"replicas": 6}, source="flags")
    check(e.value, "flags", None, "replicas", "3f+1")


def test_choices_match_the_code_that_uses_them():
    from agora.federation.server import STRATEGIES as FLOWER

    assert set(STRATEGIES) == set(FLOWER)
    assert "stratified" in SPLITS


def test_state_of_a_config_shipped_inside_an_installed_agora_goes_under_the_current_folder(
        tmp_path, monkeypatch):
    import agora
    from agora.deploy.up_config import state_folder

    monkeypatch.chdir(tmp_path)
    shipped = agora.IMPORT_ROOT / "agora" / "deploy" / "configs"
    assert state_folder(shipped, installed=True) == tmp_path.resolve() / "deploy" / "configs"
    assert state_folder(shipped, installed=False) == shipped.resolve()
    mine = tmp_path / "elsewhere"                  # a config of the user's own: its folder
    assert state_folder(mine, installed=True) == mine.resolve()


def test_peers_overrides_the_checkpoints_neighbourhood(tmp_path):
    (tmp_path / "cluster.txt").write_text("")
    (tmp_path / "jobs.txt").write_text("")
    cfg = load_up_config(write(tmp_path, HEAD + "peers: 4\ncomm: none\n"))
    checkpoint = {"k": 16, "comm": "trigger", "peers": 16}
    assert cfg.agent_config(checkpoint) == {"k": 16, "comm": "none", "peers": 4}
    assert UpConfig().agent_config(checkpoint) == checkpoint      # null: as the checkpoint says


def test_a_checkpoint_no_site_agent_runs_is_refused_naming_the_policy(tmp_path):
    """comm 'global' (every peer's exact state, agents.learn.global_state) is a simulation-only
    experiment: agora up / replay refuse it before starting anything, not in each agent."""
    import torch

    from agora.agents.learn.learned_policy import AgentConfig, Agents

    torch.manual_seed(0)
    agents = Agents(AgentConfig(k=4, hidden=32, comm="global"))
    weights, checkpoint = agents.policy_weights(), agents.cfg.to_dict()
    cfg = load_up_config(write(tmp_path, HEAD))
    with pytest.raises(UpConfigError) as e:
        cfg.site_policy_config(weights, checkpoint)
    check(e.value, cfg.source, None, "policy", "comm 'global'", "trigger, always, none")
    over = load_up_config(write(tmp_path, HEAD + "comm: trigger\n", "over.yaml"))
    with pytest.raises(UpConfigError) as e:        # a comm: override does not make it run
        over.site_policy_config(weights, checkpoint)
    check(e.value, over.source, None, "policy", "comm 'global'")
    torch.manual_seed(0)
    plain = Agents(AgentConfig(k=4, hidden=32))
    assert cfg.site_policy_config(plain.policy_weights(), plain.cfg.to_dict())["comm"] == \
        "trigger"


@pytest.mark.parametrize("key, text", [("out", "out: afile\n"),
                                       ("tls.certs_dir", "tls: {certs_dir: afile}\n")])
def test_a_folder_agora_writes_into_may_not_be_a_file(key, text, tmp_path):
    (tmp_path / "afile").write_text("not a folder")
    p = write(tmp_path, text)
    with pytest.raises(UpConfigError, match=f"field '{key}': .*afile is a file"):
        load_up_config(p)
