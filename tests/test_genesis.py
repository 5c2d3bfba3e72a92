"""Genesis files: validation, canonical hashing, and validator ordering."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from nacl.signing import SigningKey

from consensus.genesis import Genesis, GenesisError, ValidatorInfo


def _pub(i: int) -> bytes:
    return bytes(SigningKey(bytes([i + 1]) * 32).verify_key)


def _val(i: int, **kw: object) -> ValidatorInfo:
    fields: dict[str, object] = {
        "name": f"v{i}",
        "pubkey": _pub(i),
        "host": "127.0.0.1",
        "p2p_port": 7000 + i,
        "http_port": 8000 + i,
    }
    fields.update(kw)
    return ValidatorInfo(**fields)  # type: ignore[arg-type]


def _genesis(n: int = 4) -> Genesis:
    return Genesis("test-chain", 1_700_000_000_000, tuple(_val(i) for i in range(n)))


def test_validators_sorted_by_pubkey_and_match_validator_set() -> None:
    g = _genesis(7)
    keys = [v.pubkey for v in g.validators]
    assert keys == sorted(keys)
    vs = g.validator_set()
    assert vs.chain_id == "test-chain"
    assert vs.pubkeys == tuple(keys)
    for v in g.validators:
        assert g.index_of(v.pubkey) == vs.index_of(v.pubkey)
    assert g.index_of(b"\x00" * 32) is None


def test_round_trip_through_file_keeps_extra_and_hash(tmp_path: Path) -> None:
    g = _genesis(4)
    d = g.to_json()
    d["admin"] = {"users": ["alice"]}
    g2 = Genesis.from_json(d)
    assert g2.extra == {"admin": {"users": ["alice"]}}
    path = tmp_path / "sub" / "genesis.json"
    g2.save(path)
    g3 = Genesis.load(path)
    assert g3 == g2
    assert g3.hash() == g2.hash()
    assert g3.hash() != g.hash()  # extra is covered by the hash
    assert json.loads(path.read_text())["admin"] == {"users": ["alice"]}


def test_loader_sorts_unsorted_validators(tmp_path: Path) -> None:
    g = _genesis(5)
    d = g.to_json()
    d["validators"].reverse()
    path = tmp_path / "g.json"
    path.write_text(json.dumps(d))
    loaded = Genesis.load(path)
    assert loaded.validators == g.validators
    assert loaded.hash() == g.hash()  # order in the file does not change the chain


def test_hash_is_sha256_of_canonical_json() -> None:
    import hashlib

    g = _genesis(2)
    canon = json.dumps(g.to_json(), sort_keys=True, separators=(",", ":")).encode()
    assert g.hash() == hashlib.sha256(canon).digest()


@pytest.mark.parametrize("chain_id", ["", "has space", "x" * 65, "ünïcode", "a/b"])
def test_bad_chain_id_rejected(chain_id: str) -> None:
    with pytest.raises(GenesisError, match="chain_id"):
        Genesis(chain_id, 0, (_val(0),))


def test_duplicate_pubkeys_rejected() -> None:
    with pytest.raises(GenesisError, match="share public key"):
        Genesis("c", 0, (_val(0), _val(1, pubkey=_pub(0))))


def test_duplicate_address_rejected() -> None:
    with pytest.raises(GenesisError, match="127.0.0.1:7000"):
        Genesis("c", 0, (_val(0), _val(1, p2p_port=7000)))
    with pytest.raises(GenesisError, match="both use address"):
        Genesis("c", 0, (_val(0), _val(1, http_port=7000)))


def test_duplicate_names_rejected() -> None:
    with pytest.raises(GenesisError, match="used twice"):
        Genesis("c", 0, (_val(0), _val(1, name="v0")))


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("p2p_port", 0, "p2p_port"),
        ("http_port", 65536, "http_port"),
        ("http_port", True, "http_port"),
        ("pubkey", b"\x01" * 31, "32 bytes"),
        ("name", "", "name"),
        ("host", "", "host"),
        ("host", "a b", "whitespace"),
    ],
)
def test_bad_validator_fields_rejected(field: str, value: object, match: str) -> None:
    with pytest.raises(GenesisError, match=match):
        _val(0, **{field: value})


def test_validator_count_limits() -> None:
    with pytest.raises(GenesisError, match="1..256"):
        Genesis("c", 0, ())


def test_from_json_errors_are_clear(tmp_path: Path) -> None:
    good = _genesis(1).to_json()
    cases: list[tuple[object, str]] = [
        ([], "JSON object"),
        ({k: v for k, v in good.items() if k != "validators"}, "missing field"),
        ({**good, "validators": "x"}, "must be a list"),
        ({**good, "validators": [{**good["validators"][0], "pubkey": "zz"}]}, "not valid hex"),
        ({**good, "validators": [{**good["validators"][0], "pubkey": "ab" * 31}]}, "32 bytes"),
        ({**good, "validators": [{**good["validators"][0], "extra": 1}]}, "unknown field"),
        ({**good, "genesis_time_ms": -1}, "genesis_time_ms"),
        ({**good, "genesis_time_ms": 1.5}, "genesis_time_ms"),
    ]
    for doc, match in cases:
        with pytest.raises(GenesisError, match=match):
            Genesis.from_json(doc)
    path = tmp_path / "g.json"
    path.write_text("{not json")
    with pytest.raises(GenesisError, match="not valid JSON"):
        Genesis.load(path)
    with pytest.raises(GenesisError, match="does not exist"):
        Genesis.load(tmp_path / "missing.json")
    path.write_text(json.dumps({**good, "chain_id": "bad id"}))
    with pytest.raises(GenesisError, match=r"g\.json: chain_id"):
        Genesis.load(path)


def test_extra_may_not_shadow_reserved_keys() -> None:
    with pytest.raises(GenesisError, match="redefine"):
        Genesis("c", 0, (_val(0),), {"chain_id": "other"})
