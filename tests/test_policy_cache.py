"""The cache of checked policy files: keyed by content and loader code, so it is never stale."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import pytest

from rules import folder as folder_module
from rules.folder import LazyRegions, cache_path
from rules.loader import PolicyErrors, load_policies
from rules.policy import UNLIMITED

SHIPPED = Path(__file__).resolve().parent.parent / "rules" / "policies"


@pytest.fixture
def policies_dir(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.setenv("YIBAO_CACHE_DIR", str(tmp_path / "cache"))
    target = tmp_path / "policies"
    (target / "cn").mkdir(parents=True)
    shutil.copy(SHIPPED / "shanghai.yaml", target / "shanghai.yaml")
    shutil.copytree(SHIPPED / "cn" / "guangdong", target / "cn" / "guangdong")
    return target


def parses(monkeypatch) -> list[str]:
    seen: list[str] = []
    real = folder_module.parse_text

    def counting(data, stem, shown, lines=None):
        seen.append(shown)
        return real(data, stem, shown, lines)

    monkeypatch.setattr(folder_module, "parse_text", counting)
    return seen


def test_second_load_comes_from_the_cache_and_is_equal(policies_dir, monkeypatch):
    first = load_policies(policies_dir)
    seen = parses(monkeypatch)
    second = load_policies(policies_dir)
    assert seen == [] and isinstance(second.regions, LazyRegions)
    assert set(first.regions) == set(second.regions) and len(second.regions) == 22
    for rid in first.regions:
        assert first.regions[rid] == second.regions[rid]
    shanghai = second.regions["shanghai"]  # "no cap" stays the one UNLIMITED through the pickle
    assert any(e.value is UNLIMITED for plan in shanghai.plans.values() for node in (plan, *plan.visits.values())
               for series in node.params.values() for e in series.entries)
    assert second.names == first.names and second.heads == first.heads


def test_an_edited_file_is_read_again(policies_dir, monkeypatch):
    load_policies(policies_dir)
    path = policies_dir / "cn/guangdong/guangzhou.yaml"
    path.write_text(path.read_text(encoding="utf-8").replace("{community: 250, '1': 250, '2': 500, '3': 1000}",
                                                             "{community: 260, '1': 250, '2': 500, '3': 1000}"),
                    encoding="utf-8")
    seen = parses(monkeypatch)
    again = load_policies(policies_dir)
    assert seen == ["cn/guangdong/guangzhou.yaml"]
    visit = again.regions["guangzhou"].plans["employee"].visits["inpatient"]
    assert visit.params["deductible"].entries[0].value["community"] == 260


def test_a_new_loader_misses_the_cache(policies_dir, monkeypatch):
    load_policies(policies_dir)
    monkeypatch.setattr(folder_module, "_code_version", lambda: "another loader")
    seen = parses(monkeypatch)
    load_policies(policies_dir)
    assert len(seen) == 22  # every file parsed again


def test_problems_are_reported_from_the_cache_too(policies_dir):
    (policies_dir / "broken.yaml").write_text("region: broken\nname: {zh: 坏, en: Broken}\n", encoding="utf-8")
    for _ in range(2):
        with pytest.raises(PolicyErrors) as bad:
            load_policies(policies_dir)
        assert any(e.file == "broken.yaml" and "missing required key 'sources'" in e.message
                   for e in bad.value.errors)


def test_a_corrupt_cache_is_ignored(policies_dir):
    load_policies(policies_dir)
    where = cache_path(policies_dir)
    where.write_bytes(b"not a pickle")
    assert len(load_policies(policies_dir).regions) == 22
    assert pickle.loads(where.read_bytes())["entries"]  # rewritten


def test_cache_off_writes_nothing(policies_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("YIBAO_CACHE_DIR", "off")
    load_policies(policies_dir)
    assert cache_path(policies_dir) is None and not (tmp_path / "cache").exists()


def test_unknown_region_is_a_key_error(policies_dir):
    load_policies(policies_dir)
    regions = load_policies(policies_dir).regions
    assert "nowhere" not in regions and regions.get("nowhere") is None
    with pytest.raises(KeyError):
        regions["nowhere"]
