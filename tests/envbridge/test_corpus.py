"""The corpus of awkward .env files: byte-for-byte round trips, values, and python-dotenv parity."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from dotenv import dotenv_values

from configsync.envbridge.envfile import EnvDocument

CORPUS = Path(__file__).parent / "corpus"
FILES = sorted(CORPUS.glob("*.env"))

# Where python-dotenv reads differently, on purpose (see configsync.envbridge.envfile):
# it treats 'export' as a prefix only when followed by a name, like us, but reads a bare
# name as None; none of the corpus files has one. No other divergence is expected here.
DOTENV_DIVERGENCES: dict[str, set[str]] = {}


def _expected(path: Path) -> dict[str, str]:
    return json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))


def test_corpus_is_not_empty() -> None:
    assert len(FILES) >= 10


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_parse_render_is_byte_identical(path: Path) -> None:
    data = path.read_bytes()
    document = EnvDocument.parse_bytes(data)
    assert document.render().encode("utf-8") == data


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_values(path: Path) -> None:
    assert EnvDocument.parse_bytes(path.read_bytes()).values() == _expected(path)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_python_dotenv_reads_the_same_values(path: Path) -> None:
    ours = EnvDocument.parse_bytes(path.read_bytes()).values()
    theirs = dotenv_values(dotenv_path=path, interpolate=False, encoding="utf-8")
    skip = DOTENV_DIVERGENCES.get(path.name, set())
    assert {k: v for k, v in ours.items() if k not in skip} == {
        k: v for k, v in theirs.items() if k not in skip
    }


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_rewriting_every_value_keeps_every_other_byte(path: Path) -> None:
    """Setting each variable to its own value changes nothing; a new value touches one token."""
    data = path.read_bytes()
    document = EnvDocument.parse_bytes(data)
    for name, value in document.values().items():
        document.set(name, value)
    assert document.render().encode("utf-8") == data

    for name in _expected(path):
        document = EnvDocument.parse_bytes(data)
        before = [e.raw for e in document.entries]
        target = document.last_entry(name)
        assert target is not None
        document.set(name, "new value with 'quote' and $x\nline")
        after = [e.raw for e in document.entries]
        changed = [i for i, (a, b) in enumerate(zip(before, after, strict=True)) if a != b]
        assert changed == [document.entries.index(document.last_entry(name))]  # type: ignore[arg-type]
        reparsed = EnvDocument.parse(document.render()).values()
        assert reparsed[name] == "new value with 'quote' and $x\nline"
        assert {k: v for k, v in reparsed.items() if k != name} == {
            k: v for k, v in _expected(path).items() if k != name
        }
