"""Text rules and replay give the same bytes whatever the interpreter, its hash seed or version.

Python's Unicode database changes between releases (U+1FAE8 is not printable on 3.11 and
is on 3.12), so the rules of protocol version 2 use explicit code points only. A recorded
history of every kind of command is re-executed in fresh interpreters with other hash
seeds, and must give the same event bytes and app hashes.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from commands.handlers import parse_payload
from domain.names import ascii_lower, email_error_v2, printable, team_name_error_v2, team_slug_v2
from domain.rules import LATEST, LEGACY
from tests import replay_history

ROOT = Path(__file__).resolve().parent.parent


def test_a_team_named_with_a_newer_emoji_is_accepted_on_every_interpreter() -> None:
    name = "core \U0001fae8"  # SHAKING FACE, Unicode 15: not printable for Python 3.11
    assert team_name_error_v2(name) is None
    assert team_slug_v2(name) == "core"
    parsed = parse_payload("team.create", {"org": "acme", "name": name}, LATEST)
    assert not hasattr(parsed, "code"), parsed


def test_explicit_ranges() -> None:
    for bad in (
        "a\x00",
        "a\u200b",
        "a\u202e",
        "a\u2028",
        "\ufeffa",
        "a\ud800",
        "a\ue000",
        "a\U000e0001",
        "a\ufffe",
    ):
        assert not printable(bad), repr(bad)
    for good in ("a b", "Δelta", "日本語", "\U0001fae8", "ok"):
        assert printable(good), repr(good)
    assert team_name_error_v2(" spaced") is not None and team_name_error_v2("spaced ") is not None
    assert ascii_lower("K\u212aÄ") == "k\u212aÄ"  # only A-Z fold: the Kelvin sign stays itself
    assert team_slug_v2("Kelvin \u212a") == "kelvin"
    assert email_error_v2("dora@exämple.com") is None
    assert email_error_v2("eve\u3000x@example.com") is not None
    assert email_error_v2("a b@example.com") is not None


def test_version_1_keeps_its_rules() -> None:
    name = "ops \u0378"  # unassigned: version 1 asks the interpreter, version 2 does not
    old = parse_payload("team.create", {"org": "acme", "name": name}, LEGACY)
    assert getattr(old, "code", None) == 422
    new = parse_payload("team.create", {"org": "acme", "name": name}, LATEST)
    assert not hasattr(new, "code"), new


def _replay_in_subprocess(blocks_file: Path, seed: str) -> list[dict[str, object]]:
    env = {**os.environ, "PYTHONHASHSEED": seed}
    done = subprocess.run(
        [sys.executable, "-m", "tests.replay_history", str(blocks_file)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert isinstance(result, list)
    return result


def test_a_recorded_history_replays_to_the_same_bytes_under_other_hash_seeds(tmp_path: Path) -> None:
    blocks = replay_history.record()
    here = replay_history.replay(blocks)
    receipts = [json.loads(bytes.fromhex(r)) for b in here for r in b["receipts"]]
    assert any(r["ok"] for r in receipts) and any(not r["ok"] for r in receipts)  # both kinds recorded
    blocks_file = tmp_path / "blocks.json"
    blocks_file.write_text(json.dumps([[tx.hex() for tx in block] for block in blocks]))
    for seed in ("0", "1", "4242"):
        assert _replay_in_subprocess(blocks_file, seed) == here


#: Calls that consult the interpreter's Unicode database. Allowed only in version 1 rules.
_UNICODE_DB_METHODS = {
    *("isprintable", "isspace", "isalpha", "isalnum", "isdigit", "isdecimal", "isnumeric", "isidentifier"),
    *("lower", "upper", "casefold", "title", "capitalize", "swapcase"),
    *("strip", "lstrip", "rstrip", "split", "splitlines", "normalize"),
}
_VERSION_1 = {
    "team_name_error",
    "team_slug",
    "email_error",
    "branch_name_error",
    "_refname_bad",
    "ref_name_error",
}


SOURCES = sorted((ROOT / "domain").glob("*.py")) + sorted((ROOT / "commands").glob("*.py"))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_domain_and_commands_do_not_consult_the_unicode_database(path: Path) -> None:
    """`str.strip()` and friends without explicit characters use Unicode tables; version 2 may not."""
    tree = ast.parse(path.read_text())
    offenders: list[str] = []
    for func in ast.walk(tree):
        if not isinstance(func, ast.FunctionDef) or func.name in _VERSION_1:
            continue
        for node in ast.walk(func):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in _UNICODE_DB_METHODS
                and not node.args  # strip("-") and split("/") name their characters
            ):
                offenders.append(f"{func.name}: .{node.func.attr}() at line {node.lineno}")
    assert not offenders, f"{path.name}: {offenders}"


_V1_PATTERNS = {"_EMAIL_RE"}


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_patterns_do_not_use_unicode_classes(path: Path) -> None:
    r"""`\s`, `\w`, `\d` and `\b` follow the Unicode database unless the pattern is ASCII-only."""
    tree = ast.parse(path.read_text())
    offenders: list[str] = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Assign) and isinstance(node.value, ast.Call)):
            continue
        call = node.value
        if not (isinstance(call.func, ast.Attribute) and call.func.attr in ("compile", "fullmatch", "match")):
            continue
        names = {t.id for t in node.targets if isinstance(t, ast.Name)}
        pattern = call.args[0] if call.args else None
        if (
            names & _V1_PATTERNS
            or not isinstance(pattern, ast.Constant)
            or not isinstance(pattern.value, str)
        ):
            continue
        flags = ast.unparse(call.args[1]) if len(call.args) > 1 else ""
        if any(c in pattern.value for c in ("\\s", "\\w", "\\d", "\\b")) and "ASCII" not in flags:
            offenders.append(f"{sorted(names)} at line {node.lineno}")
    assert not offenders, f"{path.name}: {offenders}"
