"""``agora logs`` reads a run's output in bounded chunks and decodes UTF-8 across them (a
probe: ``--follow`` printed a character split between two reads as two U+FFFD, and a 50 MB
log was read whole into memory); ``--client`` is refused, not ignored."""

from __future__ import annotations

import pytest

from agora.deploy.cli import main
from agora.deploy.cli_logs import _LogReader, _shown, _write_exact


def test_a_character_split_between_two_reads_is_printed_whole(tmp_path):
    f = tmp_path / "stdout"
    f.write_bytes("caf".encode() + "é".encode()[:1])
    r = _LogReader(f)
    first = "".join(r.chunks(final=False))
    with open(f, "ab") as out:
        out.write("é".encode()[1:] + b" ok\n")
    assert first + "".join(r.chunks(final=False)) == "café ok\n"
    with open(f, "ab") as out:                # a run that ends mid-character
        out.write(b"\xc3")
    assert _shown("".join(r.chunks(final=True))) == "\ufffd"     # in JSON


def test_bytes_that_are_no_utf8_are_written_back_as_they_were(tmp_path, capsysbinary):
    """A probe: ``agora logs`` printed invalid UTF-8 as U+FFFD (20,971,526 bytes stored,
    20,971,530 printed): a binary output came back altered."""
    data = b"ok \xff\xfe caf\xc3\xa9 \xc3"
    f = tmp_path / "stdout"
    f.write_bytes(data)
    for text in _LogReader(f).chunks(final=True):
        _write_exact(text)
    assert capsysbinary.readouterr().out == data


def test_a_large_log_is_read_in_bounded_chunks(tmp_path, monkeypatch):
    monkeypatch.setattr(_LogReader, "CHUNK", 1000)
    f = tmp_path / "stdout"
    text = "".join(f"line {i} — é\n" for i in range(2000))
    f.write_text(text)
    r = _LogReader(f)
    parts = list(r.chunks(final=True))
    assert "".join(parts) == text and len(parts) > 20
    assert all(len(p.encode()) <= 1000 + 3 for p in parts)
    assert r.offset == len(text.encode())


def test_logs_refuse_a_client_they_would_not_use(capsys):
    assert main(["logs", "j/t", "--client", "site:dc-b"]) == 2
    assert "--client site:dc-b: agora logs reads the runs' folders" in capsys.readouterr().err
