"""The region question with ~350 regions: type a name, or pick a province, then a city.

A view is named by a short code carried in the buttons themselves, so paging needs no session state:
`~rp:N` is page N of the provinces, `~rc:KEY:N` page N of one province's cities. Every view has at
most PAGE buttons of places plus navigation, so no keyboard grows with the number of regions, and the
reply stays well under 2 KB. The last region the person used is offered first. What a typed name finds
comes from `rules.regions`: one region answers, several are asked about, a province opens its cities.
"""

from __future__ import annotations

from conversations.replies import Button, Reply
from conversations.texts import t
from rules.policy import PolicySet
from rules.regions import Found, Province, region_index

PAGE = 24  # places a view shows; with navigation and controls a keyboard stays at ~28 buttons at most
PER_ROW = 3


def is_view(value: str) -> bool:
    return value.startswith(("~rp:", "~rc:"))


def _page(text: str) -> int:
    return int(text) if text.isdigit() and int(text) < 100 else 0


def _rows(buttons: list[Button]) -> list[tuple[Button, ...]]:
    return [tuple(buttons[i:i + PER_ROW]) for i in range(0, len(buttons), PER_ROW)]


def _region_label(policies: PolicySet, rid: str, lang: str, with_province: bool = False) -> str:
    region = policies.regions[rid]
    if with_province and region.province:
        return f"{region.name(lang)}（{region.province(lang)}）" if lang == "zh" \
            else f"{region.name(lang)} ({region.province(lang)})"
    return region.name(lang)


def only_region(policies: PolicySet, code: str) -> str | None:
    """The one region of a province view whose province has only one (北京, 上海): picked at once."""
    if not code.startswith("~rc:"):
        return None
    province = region_index(policies).provinces.get(code[4:].partition(":")[0])
    return province.regions[0] if province is not None and len(province.regions) == 1 else None


def view(policies: PolicySet, code: str, q: int, lang: str, last: str | None,
         controls: list[Button], text: str | None = None) -> Reply:
    """The region question showing the view `code` ("" = the first page of provinces)."""
    index = region_index(policies)
    if code.startswith("~rc:"):
        key, _, page = code[4:].partition(":")
        province = index.provinces.get(key)
        if province is not None:
            return _cities(policies, province, _page(page), q, lang, controls, text)
    return _provinces(policies, _page(code[4:]) if code.startswith("~rp:") else 0, q, lang, last, controls, text)


def _provinces(policies: PolicySet, page: int, q: int, lang: str, last: str | None,
               controls: list[Button], text: str | None) -> Reply:
    provinces = list(region_index(policies).provinces.values())
    pages = max(1, -(-len(provinces) // PAGE))
    page = min(page, pages - 1)
    shown = provinces[page * PAGE:(page + 1) * PAGE]
    rows: list[tuple[Button, ...]] = []
    if last in policies.regions and page == 0:
        rows.append((Button(f"{q}|{last}", t(lang, "picker.last", region=_region_label(policies, last, lang))),))
    rows += _rows([Button(f"{q}|~rc:{p.key}:0", p.name(lang)) for p in shown])
    rows += _nav(q, f"~rp:{page - 1}" if page > 0 else None, f"~rp:{page + 1}" if page + 1 < pages else None, lang)
    if controls:
        rows.append(tuple(controls))
    return Reply(text or t(lang, "prompts.region"), buttons=tuple(rows))


def _cities(policies: PolicySet, province: Province, page: int, q: int, lang: str, controls: list[Button],
            text: str | None) -> Reply:
    pages = max(1, -(-len(province.regions) // PAGE))
    page = min(page, pages - 1)
    shown = province.regions[page * PAGE:(page + 1) * PAGE]
    rows = _rows([Button(f"{q}|{rid}", _region_label(policies, rid, lang)) for rid in shown])
    back = Button(f"{q}|~rp:0", t(lang, "picker.provinces"))
    nav = _nav(q, f"~rc:{province.key}:{page - 1}" if page > 0 else None,
               f"~rc:{province.key}:{page + 1}" if page + 1 < pages else None, lang)
    rows += [(back, *(nav[0] if nav else ()))]
    if controls:
        rows.append(tuple(controls))
    return Reply(text or t(lang, "picker.province", province=province.name(lang)), buttons=tuple(rows))


def _nav(q: int, prev: str | None, nxt: str | None, lang: str) -> list[tuple[Button, ...]]:
    row = []
    if prev:
        row.append(Button(f"{q}|{prev}", t(lang, "picker.prev")))
    if nxt:
        row.append(Button(f"{q}|{nxt}", t(lang, "picker.next")))
    return [tuple(row)] if row else []


def found_reply(policies: PolicySet, found: Found, typed: str, q: int, lang: str,
                controls: list[Button]) -> Reply:
    """What a typed name that is not one region gets: the candidates, a province's cities, or help."""
    if found.regions:  # several places share the name (or a city and a province): ask, never guess
        buttons = [Button(f"{q}|{rid}", _region_label(policies, rid, lang, with_province=True))
                   for rid in found.regions[:PAGE]]
        if found.province:
            province = region_index(policies).provinces[found.province]
            buttons.append(Button(f"{q}|~rc:{province.key}:0", t(lang, "picker.whole_province",
                                                                 province=province.name(lang))))
        rows = _rows(buttons) + ([tuple(controls)] if controls else [])
        return Reply(t(lang, "picker.which", text=typed[:40]), buttons=tuple(rows))
    if found.province:
        province = region_index(policies).provinces[found.province]
        return _cities(policies, province, 0, q, lang, controls, None)
    return view(policies, "", q, lang, None, controls, t(lang, "hints.region_unknown", text=typed[:40]))
