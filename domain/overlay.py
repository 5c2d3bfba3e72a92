"""A layered, copy-on-write key-value store: the storage under `LedgerState`.

Consensus executes blocks speculatively before they are final, so state must fork
cheaply: a fork is an empty layer over its parent. Reads walk the layers from the
newest; writes land only in the newest. Two kinds of tables:

- flat tables map a key to an immutable value (a deletion in a fork is a tombstone);
- grouped tables map a group key to a small dict (e.g. repo id -> {user id: permission}).
  A fork copies a group the first time it writes to it, so reads never merge layers.

When a forked block is finalized, `merge_into_parent()` folds the fork's writes into its
parent in place; the fork then reads exactly as the parent and is retired (no more writes).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator, Mapping
from types import MappingProxyType
from typing import Any, Self


class _Deleted:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<deleted>"


_DELETED: Any = _Deleted()
_ABSENT: Any = object()
_EMPTY: Mapping[Hashable, Any] = MappingProxyType({})


class RetiredStateError(RuntimeError):
    """A write to a state that was merged into its parent (it now only mirrors the parent)."""


class Overlay:
    __slots__ = ("_parent", "_flat", "_groups", "_merged")

    def __init__(self, parent: Overlay | None = None) -> None:
        self._parent = parent
        self._flat: dict[str, dict[Hashable, Any]] = {}
        self._groups: dict[str, dict[Hashable, dict[Hashable, Any]]] = {}
        self._merged = False

    # -- layers ------------------------------------------------------------------

    def _live(self) -> Overlay:
        """This layer, or the first ancestor that is not retired."""
        layer: Overlay = self
        while layer._merged:
            assert layer._parent is not None
            layer = layer._parent
        return layer

    def _layers(self) -> Iterator[Overlay]:
        layer: Overlay | None = self
        while layer is not None:
            yield layer
            layer = layer._parent

    @property
    def depth(self) -> int:
        """How many layers a read walks through (1 for a base state)."""
        return sum(1 for _ in self._layers())

    @property
    def is_fork(self) -> bool:
        return self._live()._parent is not None

    def fork(self) -> Self:
        """A copy-on-write child: its writes never touch this state."""
        child = type(self).__new__(type(self))
        Overlay.__init__(child, self._live())
        return child

    def merge_into_parent(self) -> Overlay:
        """Fold this fork's writes into its parent in place and retire this fork.

        Afterwards this state reads exactly as the parent, and forks taken from this state
        (e.g. speculative execution of the next block) stay valid and can be merged next.
        Other forks of the parent (competing blocks at the same height) become stale and
        must be discarded. Returns the parent that received the writes.
        """
        if self._merged:
            raise RetiredStateError("this state was already merged into its parent")
        if self._parent is None:
            raise ValueError("a base state has no parent to merge into")
        target = self._parent._live()
        is_base = target._parent is None
        for table, entries in self._flat.items():
            dest = target._flat.setdefault(table, {})
            if is_base:
                for key, value in entries.items():
                    if value is _DELETED:
                        dest.pop(key, None)
                    else:
                        dest[key] = value
            else:
                dest.update(entries)
        for table, groups in self._groups.items():
            gdest = target._groups.setdefault(table, {})
            for gkey, inner in groups.items():
                if is_base and not inner:
                    gdest.pop(gkey, None)
                else:
                    gdest[gkey] = inner  # ownership moves to the parent; this layer is emptied
        self._flat = {}
        self._groups = {}
        self._merged = True
        self._parent = target
        return target

    def _writable(self) -> None:
        if self._merged:
            raise RetiredStateError("this state was merged into its parent and is read-only")

    # -- flat tables -------------------------------------------------------------

    def get(self, table: str, key: Hashable) -> Any:
        # One dict lookup per layer: the base state may be merged into by the ledger's worker
        # while the API reads it, and a lookup must see a key either before or after.
        for layer in self._layers():
            entries = layer._flat.get(table)
            if entries is not None:
                value = entries.get(key, _ABSENT)
                if value is not _ABSENT:
                    return None if value is _DELETED else value
        return None

    def keys(self, table: str) -> list[Hashable]:
        """Every live key of a flat table, across layers (unordered; callers sort)."""
        seen: dict[Hashable, bool] = {}
        for layer in self._layers():
            for key, value in layer._flat.get(table, {}).items():
                seen.setdefault(key, value is not _DELETED)
        return [k for k, live in seen.items() if live]

    def put(self, table: str, key: Hashable, value: Any) -> None:
        self._writable()
        if value is None:
            raise ValueError("None is not a storable value; use delete()")
        self._flat.setdefault(table, {})[key] = value

    def delete(self, table: str, key: Hashable) -> None:
        self._writable()
        if self._parent is None:
            self._flat.get(table, {}).pop(key, None)
        else:
            self._flat.setdefault(table, {})[key] = _DELETED

    # -- grouped tables ----------------------------------------------------------

    def group(self, table: str, gkey: Hashable) -> Mapping[Hashable, Any]:
        """A read-only view of one group (empty if absent)."""
        for layer in self._layers():
            groups = layer._groups.get(table)
            if groups is not None:
                inner = groups.get(gkey)
                if inner is not None:
                    return MappingProxyType(inner)
        return _EMPTY

    def group_mut(self, table: str, gkey: Hashable) -> dict[Hashable, Any]:
        """The group's dict owned by this layer (copied from an ancestor on first write)."""
        self._writable()
        own = self._groups.setdefault(table, {})
        inner = own.get(gkey)
        if inner is None:
            inner = dict(self._parent.group(table, gkey)) if self._parent is not None else {}
            own[gkey] = inner
        return inner

    # -- whole-state views (tests, debugging, digests) ---------------------------

    def snapshot(self) -> dict[str, dict[Hashable, Any]]:
        """Every table flattened across layers into plain dicts (groups as dicts; empty groups dropped)."""
        layers = list(self._layers())[::-1]
        flat: dict[str, dict[Hashable, Any]] = {}
        groups: dict[str, dict[Hashable, Any]] = {}
        for layer in layers:
            for table, entries in layer._flat.items():
                dest = flat.setdefault(table, {})
                for key, value in entries.items():
                    if value is _DELETED:
                        dest.pop(key, None)
                    else:
                        dest[key] = value
            for table, gmap in layer._groups.items():
                gdest = groups.setdefault(table, {})
                for gkey, inner in gmap.items():
                    gdest[gkey] = dict(inner)
        out: dict[str, dict[Hashable, Any]] = {}
        for table, entries in flat.items():
            if entries:
                out[table] = entries
        for table, gmap in groups.items():
            kept = {g: inner for g, inner in gmap.items() if inner}
            if kept:
                out["group:" + table] = kept
        return out
