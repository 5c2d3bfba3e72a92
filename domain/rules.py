"""The chain's protocol rules, by height: what every node must decide the same way.

A handler's verdict may change only at a height every node knows in advance, or a
chain that accepted something under the old rules would replay to different receipts.
So rule changes are versioned: genesis lists when each protocol version takes effect
(`"protocol": {"upgrades": [{"version": 2, "height": 0}], "max_object_bytes": N}`),
and `ChainRules.at(height)` gives the `Rules` a block at that height runs under.

A genesis without a `protocol` entry (written before versions existed) runs version 1
forever, unless its operators add an upgrade at a future height to every node's
genesis file: a coordinated upgrade, and a node that misses it halts on the first
block whose app hash it cannot reproduce rather than forking silently.

Version 1 is the first wave's rules. Version 2 adds: git's own ref-name rules decided
by the ledger (directory/file conflicts, component and total lengths, reserved
namespaces), per-ref (non-atomic) pushes unless the client asks for `--atomic`, the
refusal to delete a repository's default branch, the maximum object size, and API token
scopes: a node-attested transaction may do only what its token's scopes allow
(`commands.scopes`); under version 1 a token acts with its user's full authority.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: The newest protocol version this code runs; `stele genesis new` starts chains on it.
LATEST_VERSION = 2
#: GitHub's limit for one file; a push carrying a larger object (uncompressed) is refused.
DEFAULT_MAX_OBJECT_BYTES = 100 * 1024 * 1024
_MAX_HEIGHT = 2**63 - 1


@dataclass(frozen=True, slots=True)
class Rules:
    """The rules one block is executed under."""

    version: int
    #: Largest uncompressed git object a push may bring; 0 = no ledger limit (version 1).
    max_object_bytes: int = 0

    @property
    def git_ref_rules(self) -> bool:
        """Ref names, conflicts and default-branch deletion decided by the ledger (v2)."""
        return self.version >= 2

    @property
    def per_ref_pushes(self) -> bool:
        """A push applies the refs it can and refuses the others, unless atomic (v2)."""
        return self.version >= 2

    @property
    def token_scopes(self) -> bool:
        """A token's OAuth scopes limit what it may do, in the ledger and the API (v2)."""
        return self.version >= 2


LEGACY = Rules(version=1)
LATEST = Rules(version=LATEST_VERSION, max_object_bytes=DEFAULT_MAX_OBJECT_BYTES)


@dataclass(frozen=True, slots=True)
class ChainRules:
    """Which protocol version runs from which height, and the chain's parameters."""

    #: (height, version), sorted by height, versions increasing; empty: version 1 throughout.
    upgrades: tuple[tuple[int, int], ...] = ()
    max_object_bytes: int = DEFAULT_MAX_OBJECT_BYTES

    def at(self, height: int) -> Rules:
        version = 1
        for start, v in self.upgrades:
            if start <= height:
                version = v
        if version < 2:
            return LEGACY
        return Rules(version=version, max_object_bytes=self.max_object_bytes)

    def to_json(self) -> dict[str, Any]:
        return {
            "upgrades": [{"version": v, "height": h} for h, v in self.upgrades],
            "max_object_bytes": self.max_object_bytes,
        }

    @staticmethod
    def latest() -> ChainRules:
        """A new chain: the newest version from height 0."""
        return ChainRules(upgrades=((0, LATEST_VERSION),))

    @staticmethod
    def from_genesis(extra: Mapping[str, Any]) -> ChainRules:
        """The rules a genesis file's `protocol` entry names (absent: version 1 throughout).

        Raises ValueError naming what is wrong.
        """
        raw = extra.get("protocol")
        if raw is None:
            return ChainRules()
        if not isinstance(raw, dict):
            raise ValueError('genesis "protocol" must be an object')
        unknown = sorted(set(raw) - {"upgrades", "max_object_bytes"})
        if unknown:
            raise ValueError(f'genesis "protocol" has unknown keys: {", ".join(unknown)}')
        limit = raw.get("max_object_bytes", DEFAULT_MAX_OBJECT_BYTES)
        if not _is_int(limit) or not 1024 <= limit <= 2**40:
            raise ValueError('genesis "protocol.max_object_bytes" must be an integer from 1024 to 2**40')
        items = raw.get("upgrades", [])
        if not isinstance(items, list):
            raise ValueError('genesis "protocol.upgrades" must be a list')
        upgrades: list[tuple[int, int]] = []
        for item in items:
            if not isinstance(item, dict) or set(item) != {"version", "height"}:
                raise ValueError('each genesis "protocol.upgrades" entry is {"version": V, "height": H}')
            version, height = item["version"], item["height"]
            if not _is_int(version) or not 2 <= version <= LATEST_VERSION:
                raise ValueError(
                    f"protocol version {version!r} is not one this node runs (2 to {LATEST_VERSION}); "
                    "upgrade Stele"
                )
            if not _is_int(height) or not 0 <= height <= _MAX_HEIGHT:
                raise ValueError(f"protocol upgrade height {height!r} must be a non-negative integer")
            upgrades.append((height, version))
        upgrades.sort()
        for (h1, v1), (h2, v2) in zip(upgrades, upgrades[1:], strict=False):
            if h1 == h2 or v2 <= v1:
                raise ValueError('genesis "protocol.upgrades" must raise the version at distinct heights')
        return ChainRules(upgrades=tuple(upgrades), max_object_bytes=limit)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
