"""Finding 1 (issue 16): keys anyone could recompute. ``agora up`` derived every key from
``agora-up-<seed>`` and wrote them all world-readable. Now keys are random, key files are
private (0600) also when they replace a file of other permissions, and a resumed service
keeps the keys its replicas' logs are signed with."""

from __future__ import annotations

import os
import stat

import pytest

from agora.deploy.local_group import LocalGroup
from agora.coordinator.pbft.keys import generate_keys
from agora.coordinator.server import load_keys
from agora.deploy.certs import ensure_all

CLIENTS = ["operator", "site:a", "site:b"]


def mode(p) -> int:
    return stat.S_IMODE(os.stat(p).st_mode)


def test_agora_up_keys_are_random_not_derived_from_the_seed(tmp_path):
    a = LocalGroup(tmp_path / "a", n=4, clients=CLIENTS, cluster="default")
    b = LocalGroup(tmp_path / "b", n=4, clients=CLIENTS, cluster="default")
    derived = generate_keys(4, CLIENTS, seed=b"agora-up-0")   # what agora up used to do
    for cid in ("operator", "site:a", "replica:0"):
        assert a.keys.client_signing[cid] != b.keys.client_signing[cid]
        assert a.keys.client_signing[cid] != derived.client_signing[cid]
    assert a.keys.replica_signing[0] != b.keys.replica_signing[0]
    assert a.keys.mac_key(0, 1) != b.keys.mac_key(0, 1)


def test_key_files_are_private_also_when_they_replace_a_readable_file(tmp_path, capsys):
    d = tmp_path / "g"
    d.mkdir()
    (d / "keys.yaml").write_text("old")
    os.chmod(d / "keys.yaml", 0o644)
    LocalGroup(d, n=4, clients=CLIENTS, cluster="default")
    assert mode(d / "keys.yaml") == 0o600

    from agora.deploy.cli_coordinator import main
    out = tmp_path / "keys.yaml"
    out.write_text("old")
    os.chmod(out, 0o644)
    assert main(["keys", "--replicas", "4", "--clients", "site:a", "--out", str(out),
                 "--force"]) == 0   # (replacing a file needs --force)
    assert mode(out) == 0o600
    assert "site:a" in load_keys(out).client_signing

    certs = tmp_path / "certs"
    certs.mkdir()
    (certs / "site-a.key").write_text("old")
    os.chmod(certs / "site-a.key", 0o644)
    ensure_all(certs, ["a"], replicas=4)
    keys = sorted(certs.glob("*.key"))
    assert len(keys) == 1 + 1 + 4 + 1            # ca, site-a, replica-0..3, client
    assert all(mode(k) == 0o600 for k in keys), {k.name: oct(mode(k)) for k in keys}


def test_a_resumed_service_keeps_its_keys_and_a_new_membership_gets_new_ones(tmp_path):
    first = LocalGroup(tmp_path, n=4, clients=CLIENTS, cluster="default")
    again = LocalGroup(tmp_path, n=4, clients=CLIENTS, cluster="default", keep_keys=True)
    assert again.keys == first.keys
    fresh = LocalGroup(tmp_path, n=4, clients=CLIENTS, cluster="default")   # no keep
    assert fresh.keys.client_signing["operator"] != first.keys.client_signing["operator"]
    other = LocalGroup(tmp_path, n=4, clients=CLIENTS + ["site:c"], cluster="default",
                       keep_keys=True)
    assert "site:c" in other.keys.client_signing
    assert other.keys.client_signing["operator"] != fresh.keys.client_signing["operator"]


def test_a_link_planted_where_a_key_is_written_is_not_followed(tmp_path, monkeypatch):
    """A review: the temporary file of a key had a predictable name and was opened, not
    created -- a link planted there made the key be written onto the link's target (and
    that target made 0600). Now its name is random and it must not exist."""
    from agora.coordinator import private_file

    victim = tmp_path / "victim"
    victim.write_text("precious")
    monkeypatch.setattr(private_file.secrets, "token_hex", lambda n: "feed")
    (tmp_path / ".ca.key.feed.tmp").symlink_to(victim)
    with pytest.raises(FileExistsError):
        private_file.write_private(tmp_path / "ca.key", b"secret")
    assert victim.read_text() == "precious"
    assert not (tmp_path / "ca.key").exists()


def test_certificates_and_their_folder_are_not_writable_by_others_whatever_the_umask(tmp_path):
    from agora.deploy.certs import make_all
    old = os.umask(0)
    try:
        make_all(tmp_path / "certs", ["a"], 1)
    finally:
        os.umask(old)
    assert mode(tmp_path / "certs") == 0o755
    crts = sorted((tmp_path / "certs").glob("*.crt"))
    assert crts and all(mode(c) == 0o644 for c in crts), {c.name: oct(mode(c)) for c in crts}
    assert all(mode(k) == 0o600 for k in (tmp_path / "certs").glob("*.key"))


def test_a_key_file_others_may_read_or_another_user_owns_is_refused_where_it_is_read(
        tmp_path, monkeypatch):
    """A review: only a site's own key was checked when read; the group's key file (every
    replica's and client's secrets) and the TLS keys were used whatever their mode, and no
    key file's owner was looked at (another user could have planted or could replace it).
    Now each is refused, named, with what to do; the file is left as it is."""
    from agora.coordinator import private_file, site_key
    from agora.coordinator.transport import _read

    out = tmp_path / "keys.yaml"
    LocalGroup(tmp_path / "g", n=4, clients=CLIENTS, cluster="default")
    out.write_bytes((tmp_path / "g" / "keys.yaml").read_bytes())
    os.chmod(out, 0o644)
    with pytest.raises(ValueError, match=r"keys.yaml: mode 644; .*agora keys --force") as e:
        load_keys(out)
    assert str(e.value).startswith(str(out))
    os.chmod(out, 0o640)                           # a group may read it: refused too
    with pytest.raises(ValueError, match="mode 640"):
        load_keys(out)
    os.chmod(out, 0o600)
    assert "site:a" in load_keys(out).client_signing

    certs = tmp_path / "certs"
    ensure_all(certs, ["a"], replicas=4)
    tls_key = certs / "replica-0.key"
    assert _read(tls_key, "key")                   # 0600, ours: read
    os.chmod(tls_key, 0o644)
    with pytest.raises(ValueError, match=r"^tls.key: .*replica-0.key: mode 644; a TLS key"):
        _read(tls_key, "key")
    assert _read(certs / "replica-0.crt", "cert")  # a certificate is public: 0644 is right

    site = tmp_path / "sk" / "site-a.key"
    site_key.load_or_create(site)
    # another user owns them (this process's user id told otherwise, in this test only)
    monkeypatch.setattr(private_file.os, "geteuid", lambda: os.stat(out).st_uid + 1)
    for read in (lambda: load_keys(out), lambda: site_key.load_or_create(site)):
        with pytest.raises(ValueError, match=r"owned by user id \d+, not by this process"):
            read()
    assert mode(out) == 0o600 and mode(site) == 0o600


def test_a_ca_key_others_may_read_signs_nothing(tmp_path):
    """A probe: agora up signed new site and client certificates with a ca.key at 0644,
    without a word (the other keys are checked where they are read)."""
    from agora.deploy.certs import issue

    certs = tmp_path / "certs"
    ensure_all(certs, ["a"], replicas=4)
    assert issue(certs, "site-b").cert.is_file()
    os.chmod(certs / "ca.key", 0o644)
    with pytest.raises(ValueError, match=r"ca.key: mode 644; the CA's key must be readable"):
        issue(certs, "site-c")
    assert not (certs / "site-c.crt").exists()


def test_a_dangling_link_where_a_site_key_goes_is_named_not_followed_for_good(tmp_path):
    """A probe: os.link found the name taken, the retry found it missing, for good
    (RecursionError, 7,900 lines of traceback, also from an agent under agora up)."""
    from agora.coordinator import site_key

    link = tmp_path / "site-a.key"
    link.symlink_to(tmp_path / "elsewhere.key")
    with pytest.raises(ValueError, match=r"a symbolic link to .*elsewhere.key, which does not "
                                         r"exist"):
        site_key.load_or_create(link)
    assert not (tmp_path / "elsewhere.key").exists() and link.is_symlink()
