"""Region ids and names of imported cities: short Chinese names people use, unique ids.

An id is the dataset's file stem (its own romanization: guangzhou, garze, xpcc); where two provinces
use one stem (福州/抚州 both "fuzhou") each gets its province appended (fuzhou-fujian, fuzhou-jiangxi),
and the English name says the province too. The short Chinese name drops 市/地区/盟/林区/示范区/新区 and
the ethnic part of an 自治州 (凉山彝族自治州 → 凉山) unless that makes it equal to another city's.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

ETHNIC = ("朝鲜族", "土家族", "布依族", "傈僳族", "景颇族", "哈尼族", "蒙古族", "苗族", "藏族", "羌族", "彝族",
          "侗族", "傣族", "白族", "壮族", "回族", "蒙古", "哈萨克", "柯尔克孜")
SUFFIXES = ("自治州", "地区", "林区", "示范区", "新区", "盟", "市")
PROVINCE_EN = {"neimenggu": "Inner Mongolia", "xizang": "Tibet", "shaanxi": "Shaanxi", "shanxi": "Shanxi"}
PROVINCE_SUFFIX = re.compile(r"(维吾尔|壮族|回族)?(自治区|省|市)$")


@dataclass(frozen=True)
class CityName:
    id: str
    zh: str
    en: str
    aliases: list[str]
    province_zh: str
    province_en: str


def short_name(full: str) -> str:
    for suffix in SUFFIXES:
        if full.endswith(suffix) and len(full) > len(suffix) + 1:
            base = full[: -len(suffix)]
            cut = min((base.find(e) for e in ETHNIC if base.find(e) > 0), default=len(base))
            return base[:cut]
    return full


def province_zh(name: str, folder: str) -> str:
    if folder == "xinjiang" and "兵团" in name:
        return "新疆"
    return PROVINCE_SUFFIX.sub("", name) or name


def city_names(files: list[Path]) -> dict[Path, CityName]:
    """Names for every city file at once (ids and short names depend on the other cities)."""
    data = {f: json.loads(f.read_text(encoding="utf-8")) for f in files}
    stems = Counter(f.stem for f in files)
    shorts = Counter(short_name(d["cityName"]) for d in data.values())
    out: dict[Path, CityName] = {}
    for file, d in data.items():
        folder, stem = file.parent.name, file.stem
        full = d["cityName"]
        short = short_name(full)
        if shorts[short] > 1 or short == full:
            short = full
        region_id = stem.replace("_", "-") if stems[stem] == 1 else f"{stem.replace('_', '-')}-{folder}"
        p_en = PROVINCE_EN.get(folder, folder.capitalize())
        en = "Xinjiang Production and Construction Corps" if stem == "xpcc" else stem.replace("_", " ").title()
        if stems[stem] > 1:
            en = f"{en} ({p_en})"
        aliases = [full] if full != short else []
        out[file] = CityName(region_id, short, en, aliases, province_zh(d.get("provinceName", ""), folder), p_en)
    return out
