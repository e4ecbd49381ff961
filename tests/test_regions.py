"""Finding a region as people say it (rules.regions), over the shipped policies: names, romanized
names, short names, codes, "province city", names two places share, provinces."""

from __future__ import annotations

import pytest

from rules.engine import default_policies
from rules.regions import Found, normalise, region_index

INDEX = region_index(default_policies())


@pytest.mark.parametrize("text", ["广州", "广州市", "guangzhou", "Guangzhou", "GUANG ZHOU", "穗", "440100",
                                  "广东 广州", "广东省广州市", "guangdong guangzhou", "我在广州上班", "guangzou"])
def test_guangzhou_as_people_say_it(text):
    assert INDEX.lookup(text) == Found(("guangzhou",))


def test_shared_romanized_name_is_asked_not_guessed():
    assert INDEX.lookup("suzhou") == Found(("suzhou-anhui", "suzhou-jiangsu"))
    assert INDEX.lookup("苏州").region == "suzhou-jiangsu" and INDEX.lookup("宿州").region == "suzhou-anhui"
    assert INDEX.lookup("taizhou").region is None and len(INDEX.lookup("taizhou").regions) == 2


def test_city_and_province_of_one_name_are_asked():
    found = INDEX.lookup("吉林")
    assert found.regions == ("jilin",) and found.province == "jilin" and found.region is None


def test_province_offers_its_cities():
    found = INDEX.lookup("广东省")
    assert found.regions == () and found.province == "guangdong"
    cities = INDEX.provinces["guangdong"].regions
    assert cities[0] == "guangzhou" and {"shenzhen", "zhuhai", "foshan"} <= set(cities) and len(cities) == 21


def test_municipality_is_the_region():
    assert INDEX.lookup("北京").region == "beijing" and INDEX.lookup("上海市").region == "shanghai"


def test_codes_and_minority_romanizations():
    assert INDEX.lookup("510100").region == "chengdu"
    assert INDEX.lookup("甘孜").region == "garze" and INDEX.lookup("甘孜藏族自治州").region == "garze"
    assert INDEX.lookup("xpcc").region == "xpcc" and INDEX.lookup("新疆生产建设兵团").region == "xpcc"


@pytest.mark.parametrize("text", ["", "   ", "火星", "123", "x" * 500, "？？", "999999"])
def test_nothing_found(text):
    assert INDEX.lookup(text) == Found()


def test_every_region_found_by_its_id_and_code():
    for region in default_policies():
        assert region.id in INDEX.lookup(region.id).regions
        if region.code:
            assert region.id in INDEX.lookup(region.code).regions


def test_provinces_in_administrative_order():
    keys = list(INDEX.provinces)
    assert keys[:3] == ["beijing", "tianjin", "hebei"] and keys[-1] == "xinjiang"


def test_normalise_folds_width_case_and_spaces():
    assert normalise("Ｇｕａｎｇ　Ｚｈｏｕ") == "guangzhou"
