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
from pathlib import Path

from rules.loader import PolicyError, PolicyErrors, name_index, parse_text
from rules.policy import PolicySet, Region

Loaded = tuple[Region | None, list[PolicyError], dict[str, tuple[int, str]]]
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


def cache_path() -> Path | None:
    """$YIBAO_CACHE_DIR, else ~/.cache/yibao-bot; `YIBAO_CACHE_DIR=off` turns the cache off."""
    chosen = os.environ.get("YIBAO_CACHE_DIR")
    if chosen == "off":
        return None
    base = Path(chosen) if chosen else Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "yibao-bot"
    return base / "policies.pickle"


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
    except OSError:  # a read-only home is fine: the next start parses again
        pass


def _load_all(folder: Path, files: list[Path]) -> dict[str, Loaded]:
    """Each file's result by its path inside the folder, from the cache where its bytes are unchanged."""
    version = _code_version()
    where = cache_path()
    cached = _read_cache(where, version)
    fresh: dict[str, Loaded] = {}
    out: dict[str, Loaded] = {}
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
        out[shown] = (region, problems, lines)
        if key:
            fresh[key] = out[shown]
    if fresh.keys() != cached.keys():
        _write_cache(where, version, fresh)
    return out


def _claims(region: Region) -> set[str]:
    names = {region.id, region.name.zh, region.name.en, *region.aliases}
    return {n.strip().casefold() for n in names} | ({f"#{region.code}"} if region.code else set())


def load_folder(folder: Path) -> PolicySet:
    """Every region of the folder, validated, hand files winning; raises `PolicyErrors`."""
    if not folder.is_dir():
        raise PolicyErrors([PolicyError(str(folder), 0, "", "no such policy folder")])
    files = policy_files(folder)
    if not files:
        raise PolicyErrors([PolicyError(str(folder), 0, "", "no policy files (*.yaml) in this folder")])
    loaded = _load_all(folder, files)
    errors = [e for _, problems, _ in loaded.values() for e in problems]
    alias_lines = {shown: lines for shown, (_, _, lines) in loaded.items()}
    found = [region for region, _, _ in loaded.values() if region]
    regions: dict[str, Region] = {}
    claimed: dict[str, Region] = {}
    for region in (r for r in found if not r.imported):
        _add(regions, region, errors)
        for claim in _claims(region):
            claimed.setdefault(claim, region)
    shadowed: dict[str, str] = {}
    for region in (r for r in found if r.imported):
        winner = next((claimed[c] for c in sorted(_claims(region)) if c in claimed), None)
        if winner is not None:
            shadowed[region.path] = winner.path
        else:
            _add(regions, region, errors)
    names = name_index(regions, errors, alias_lines)
    if errors:
        raise PolicyErrors(errors)
    return PolicySet(regions, names, str(folder), shadowed)


def _add(regions: dict[str, Region], region: Region, errors: list[PolicyError]) -> None:
    other = regions.get(region.id)
    if other is not None:
        errors.append(PolicyError(region.path, 1, "region", f"'{region.id}' is also the region of {other.path}"))
    else:
        regions[region.id] = region
