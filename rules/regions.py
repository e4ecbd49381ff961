"""Finding a region as people say it: 广州, 广州市, guangzhou, Guangzhou, 穗, 440100, "广东 广州".

Built once per policy set (`region_index`), so a lookup costs the same with 10 regions or 350: exact
keys in a dict, names inside a sentence found by trying the sentence's short substrings, typos compared
only with the names that share their first letter. A name two places share (苏州/宿州 "suzhou", 吉林
the city and the province) is never guessed: the caller gets every candidate to ask about. A
province answer gives its cities. Knows nothing of chat: `conversations` builds the questions.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from rules.policy import PolicySet, RegionHead

SHORT_NAMES = Path(__file__).parent / "texts" / "region_short_names.yaml"
NOISE = re.compile(r"[\s·・,，、。.!！?？'’\-_/]+")
SUFFIXES = ("特别行政区", "维吾尔自治区", "壮族自治区", "回族自治区", "自治区", "省", "市", "city", "province")


def normalise(text: str) -> str:
    """Case, width, spaces and punctuation folded: "Guang Zhou" and "guangzhou" are one key."""
    return NOISE.sub("", unicodedata.normalize("NFKC", text).casefold())


@dataclass(frozen=True, slots=True)
class Province:
    key: str
    zh: str
    en: str
    regions: tuple[str, ...]  # region ids, in the order a picker shows them

    def name(self, lang: str) -> str:
        return self.en if lang == "en" else self.zh


@dataclass(frozen=True, slots=True)
class Found:
    """What a text names: one region, several (ask), a province (offer its cities), or nothing."""

    regions: tuple[str, ...] = ()
    province: str | None = None

    @property
    def region(self) -> str | None:
        return self.regions[0] if len(self.regions) == 1 and self.province is None else None


@dataclass
class RegionIndex:
    keys: dict[str, set[str]] = field(default_factory=dict)            # name → region ids
    province_keys: dict[str, str] = field(default_factory=dict)        # name → province key
    provinces: dict[str, Province] = field(default_factory=dict)       # in picker order
    by_letter: dict[str, list[str]] = field(default_factory=dict)      # first character → keys

    def lookup(self, text: str) -> Found:
        key = normalise(text)[:40]
        if not key:
            return Found()
        return (self._exact(key) or self._with_province(key) or self._inside(key) or self._close(key)
                or Found())

    def _exact(self, key: str) -> Found | None:
        regions = self._regions(key)
        province = self.province_keys.get(key) or self.province_keys.get(_strip(key))
        if province is not None:
            own = self.provinces[province].regions
            if regions and set(regions) >= set(own):  # 北京 the city is 北京 the province
                return Found(tuple(sorted(regions)))
            return Found(tuple(sorted(regions)), province)
        return Found(tuple(sorted(regions))) if regions else None

    def _regions(self, key: str) -> set[str]:
        return self.keys.get(key) or self.keys.get(_strip(key)) or set()

    def _with_province(self, key: str) -> Found | None:
        """"广东 广州", "广东省广州市", "guangdong guangzhou": the city within the province."""
        for name, province in self.province_keys.items():
            if key.startswith(name) and len(key) > len(name):
                rest = self._regions(key[len(name):])
                inside = rest & set(self.provinces[province].regions)
                if inside:
                    return Found(tuple(sorted(inside)))
        return None

    def _inside(self, key: str) -> Found | None:
        """A name inside a sentence ("我在广州上班"): the longest one found wins, unless two tie."""
        if len(key) > 24:
            return None
        for size in range(min(len(key) - 1, 12), 1, -1):
            found: set[str] = set()
            for start in range(len(key) - size + 1):
                found |= self.keys.get(key[start:start + size], set())
            if found:
                return Found(tuple(sorted(found)))
        return None

    def _close(self, key: str) -> Found | None:
        """A typo: compared only with the names that start with the same character."""
        if len(key) < 4:
            return None
        near = difflib.get_close_matches(key, self.by_letter.get(key[0], []), n=3, cutoff=0.85)
        found = set().union(*(self.keys[n] for n in near)) if near else set()
        return Found(tuple(sorted(found))) if found else None


def _strip(key: str) -> str:
    for suffix in SUFFIXES:
        if key.endswith(suffix) and len(key) > len(suffix) + 1:
            return key[: -len(suffix)]
    return key


def _short_names() -> dict[str, list[str]]:
    return yaml.safe_load(SHORT_NAMES.read_text(encoding="utf-8")) or {}


def _region_keys(region: RegionHead, extra: list[str]) -> set[str]:
    names = [region.id, region.id.rsplit("-", 1)[0], region.name.zh, region.name.en, *region.aliases, *extra]
    if region.code:
        names.append(region.code)
    keys = {normalise(n) for n in names}
    return {k for k in keys | {_strip(k) for k in keys} if k}


def build_index(policies: PolicySet) -> RegionIndex:
    index = RegionIndex()
    extra = _short_names()
    members: dict[str, list[RegionHead]] = {}
    names: dict[str, tuple[str, str]] = {}
    for region in policies.heads.values():  # names only: no region's plans are built for this
        for key in _region_keys(region, extra.get(region.id, [])):
            index.keys.setdefault(key, set()).add(region.id)
        if region.province:
            pkey = normalise(region.province.en)
            members.setdefault(pkey, []).append(region)
            names[pkey] = (region.province.zh, region.province.en)
    # provinces in the order of their administrative codes (北京 11, 天津 12 … 新疆 65), as official lists
    for pkey in sorted(members, key=lambda k: (min(r.code or "999999" for r in members[k]), k)):
        regions = sorted(members[pkey], key=lambda r: (r.code or "999999", r.id))
        zh, en = names[pkey]
        index.provinces[pkey] = Province(pkey, zh, en, tuple(r.id for r in regions))
        for name in {zh, en, pkey}:
            index.province_keys[normalise(name)] = pkey
    for key in index.keys:
        index.by_letter.setdefault(key[0], []).append(key)
    return index


_CACHE: dict[int, tuple[PolicySet, RegionIndex]] = {}


def region_index(policies: PolicySet) -> RegionIndex:
    """The index of a policy set, built on first use and kept with it (a reload builds a new one)."""
    hit = _CACHE.get(id(policies))
    if hit is not None and hit[0] is policies:
        return hit[1]
    index = build_index(policies)
    if len(_CACHE) >= 4:
        _CACHE.pop(next(iter(_CACHE)))
    _CACHE[id(policies)] = (policies, index)
    return index
