"""A policy folder: every `*.yaml` in it and its subfolders, with hand-maintained files winning.

Precedence (see rules/FORMAT.md): a file with an `imported:` header was generated from a dataset; any
other file is maintained by hand. A hand file wins over imported files for the same region (same id,
same 6-digit code, or a name or alias the hand file claims): those imported files are not loaded, and
are listed in `PolicySet.shadowed` so `yibao rules list` and `yibao rules audit` can say so. Two hand
files, or two imported files, for one region are an error.

Parsing and validating ~350 files costs ~250 ms, so checked files are kept in a cache keyed by the
SHA-256 of each file's bytes together with the SHA-256 of the loader's own source: a changed file, or
a changed loader, misses the cache, so it can never serve a stale result.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

from rules.loader import PolicyError, PolicyErrors, name_index, parse_text
from rules.policy import PolicySet, Region, RegionHead

# A checked file: its head and the region pickled (None when invalid), its problems, where its aliases are.
Loaded = tuple[RegionHead | None, bytes | None, list[PolicyError], dict[str, tuple[int, str]]]
_CODE_FILES = ("loader.py", "policy.py", "case.py", "folder.py")


def policy_files(folder: Path) -> list[Path]:
    """The policy files of a folder, in a stable order; hidden folders are skipped."""
    return sorted(p for p in folder.rglob("*.yaml")
                  if not any(part.startswith(".") for part in p.relative_to(folder).parts))


def _code_version() -> str:
    digest = hashlib.sha256(sys.version.encode())
    here = Path(__file__).parent
    for name in _CODE_FILES:
        digest.update((here / name).read_bytes())
    return digest.hexdigest()


def cache_path(folder: Path) -> Path | None:
    """One cache file per policy folder, in $YIBAO_CACHE_DIR, else ~/.cache/yibao-bot;
    `YIBAO_CACHE_DIR=off` turns the cache off."""
    chosen = os.environ.get("YIBAO_CACHE_DIR")
    if chosen == "off":
        return None
    base = Path(chosen) if chosen else Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "yibao-bot"
    name = hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:16]
    return base / f"policies-{name}.pickle"


def _read_cache(path: Path | None, version: str) -> dict[str, Loaded]:
    if path is None:
        return {}
    try:
        with path.open("rb") as fh:
            stored = pickle.load(fh)
    except Exception:  # missing, unreadable or from another version: simply parse again
        return {}
    return stored.get("entries", {}) if isinstance(stored, dict) and stored.get("version") == version else {}


def _write_cache(path: Path | None, version: str, entries: dict[str, Loaded]) -> None:
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("wb", dir=path.parent, delete=False, suffix=".tmp") as fh:
            pickle.dump({"version": version, "entries": entries}, fh, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(fh.name, path)
        _prune(path.parent)
    except OSError:  # a read-only home is fine: the next start parses again
        pass


def _prune(directory: Path, days: int = 30) -> None:
    """Cache files of folders not loaded for a month go (throw-away folders of tests, old checkouts)."""
    limit = time.time() - days * 86400
    for old in directory.glob("policies-*.pickle"):
        try:
            if old.stat().st_atime < limit and old.stat().st_mtime < limit:
                old.unlink()
        except OSError:
            pass


def _load_all(folder: Path, files: list[Path]) -> tuple[dict[str, Loaded], dict[str, Region]]:
    """Each file's result by its path inside the folder, from the cache where its bytes are unchanged;
    and the regions parsed now (those from the cache are unpickled only when first used)."""
    version = _code_version()
    where = cache_path(folder)
    cached = _read_cache(where, version)
    fresh: dict[str, Loaded] = {}
    out: dict[str, Loaded] = {}
    parsed: dict[str, Region] = {}
    for file in files:
        shown = file.relative_to(folder).as_posix()
        try:
            data: bytes | None = file.read_bytes()
        except OSError:
            data = None
        key = f"{shown}:{hashlib.sha256(data).hexdigest()}" if data is not None else None
        if key and key in cached:
            out[shown] = fresh[key] = cached[key]
            continue
        lines: dict[str, tuple[int, str]] = {}
        region, problems = parse_text(data, file.stem, shown, lines)
        if region is not None:
            parsed[shown] = region
        blob = pickle.dumps(region, protocol=pickle.HIGHEST_PROTOCOL) if region is not None else None
        out[shown] = (RegionHead.of(region) if region else None, blob, problems, lines)
        if key:
            fresh[key] = out[shown]
    if fresh.keys() != cached.keys():
        _write_cache(where, version, fresh)
    return out, parsed


class LazyRegions(Mapping[str, Region]):
    """Regions by id; one that came from the cache is unpickled the first time it is used, so a start
    with ~350 cached files costs milliseconds and a dialogue only builds the regions people ask about."""

    def __init__(self, ready: dict[str, Region], blobs: dict[str, bytes]):
        self._ready = ready
        self._blobs = blobs
        self._order = sorted({*ready, *blobs})
        self._lock = threading.Lock()

    def __getitem__(self, key: str) -> Region:
        region = self._ready.get(key)
        if region is None:
            blob = self._blobs[key]  # KeyError for an unknown id, as a dict
            with self._lock:
                region = self._ready.get(key) or pickle.loads(blob)
                self._ready[key] = region
        return region

    def __contains__(self, key: object) -> bool:
        return key in self._ready or key in self._blobs

    def __iter__(self) -> Iterator[str]:
        return iter(self._order)

    def __len__(self) -> int:
        return len(self._order)


def _claims(head: RegionHead) -> set[str]:
    names = {head.id, head.name.zh, head.name.en, *head.aliases}
    return {n.strip().casefold() for n in names} | ({f"#{head.code}"} if head.code else set())


def load_folder(folder: Path) -> PolicySet:
    """Every region of the folder, validated, hand files winning; raises `PolicyErrors`."""
    if not folder.is_dir():
        raise PolicyErrors([PolicyError(str(folder), 0, "", "no such policy folder")])
    files = policy_files(folder)
    if not files:
        raise PolicyErrors([PolicyError(str(folder), 0, "", "no policy files (*.yaml) in this folder")])
    loaded, parsed = _load_all(folder, files)
    errors = [e for _, _, problems, _ in loaded.values() for e in problems]
    alias_lines = {shown: lines for shown, (_, _, _, lines) in loaded.items()}
    found = [(head, shown) for shown, (head, _, _, _) in loaded.items() if head]
    heads: dict[str, RegionHead] = {}
    claimed: dict[str, RegionHead] = {}
    for head, _ in found:
        if not head.imported:
            _add(heads, head, errors)
            for claim in _claims(head):
                claimed.setdefault(claim, head)
    shadowed: dict[str, str] = {}
    for head, _ in found:
        if head.imported:
            winner = next((claimed[c] for c in sorted(_claims(head)) if c in claimed), None)
            if winner is not None:
                shadowed[head.path] = winner.path
            else:
                _add(heads, head, errors)
    names = name_index(heads, errors, alias_lines)
    if errors:
        raise PolicyErrors(errors)
    ready = {h.id: parsed[h.path] for h in heads.values() if h.path in parsed}
    blobs = {h.id: loaded[h.path][1] for h in heads.values() if h.path not in parsed}
    return PolicySet(LazyRegions(ready, blobs), names, str(folder), shadowed, heads)


def _add(heads: dict[str, RegionHead], head: RegionHead, errors: list[PolicyError]) -> None:
    other = heads.get(head.id)
    if other is not None:
        errors.append(PolicyError(head.path, 1, "region", f"'{head.id}' is also the region of {other.path}"))
    else:
        heads[head.id] = head
