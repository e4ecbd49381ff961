"""Rule-engine benchmark: estimates per second on one core, and the time to load and validate the policies.

    python benchmarks/bench_rules.py [--policy-dir DIR] [--seconds 2] [--loads 15] [--every 25] [--profile]

The case mix is built from the policies themselves: every region, plan, visit and level, a few kinds of
person (in service / retired, ages, years of retirement, grades), amounts from a clinic visit to a long
stay, with and without a known self-paid / class B split, on two dates. Cases the policy cannot estimate
are timed separately (they are cheap and would flatter the figure). Single process, single thread.
Targets: >= 20,000 estimates/s and < 200 ms to load and validate every policy file.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import io
import itertools
import pstats
import statistics
import sys
import time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from rules.case import Case, Estimate  # noqa: E402
from rules.engine import estimate  # noqa: E402
from rules.loader import DEFAULT_DIR, load_policies  # noqa: E402
from rules.policy import PolicySet  # noqa: E402

TARGET_RATE = 20_000
TARGET_LOAD_MS = 200

PEOPLE = [
    {"member": "in_service", "age": 30},
    {"member": "in_service", "age": 50},
    {"member": "retired", "age": 65, "retired_year": 1998},
    {"member": "retired", "age": 75, "retired_year": 2010},
    {"age": 8},
    {"age": 66},
]
AMOUNTS = [  # (total, self_pay, class_b); None = not known
    ("860.50", None, None),
    ("5000", "300", "0"),
    ("23000", "1200", "4000"),
    ("150000", "8000", "20000"),
    ("680000", None, None),
]
DATES = [dt.date(2024, 3, 1), dt.date(2025, 9, 1)]
YTD = [{}, {"ytd_deductible": Decimal(1500), "ytd_fund": Decimal(60000), "ytd_compliant": Decimal(25000),
            "ytd_burden": Decimal(35000), "admission": 2}]


def sample(policies: PolicySet, every: int) -> list:
    """The hand-maintained regions and every `every`-th imported one (1: all ~350, whose full mix is
    about 1.7 million cases, minutes to build); the imported files are written alike by one importer."""
    imported = sorted((r for r in policies if r.imported), key=lambda r: r.id)
    return [r for r in policies if not r.imported] + imported[::every]


def build_cases(policies: PolicySet, regions: list) -> tuple[list[Case], list[Case]]:
    """(estimable cases, cases the policy cannot estimate), over every plan, visit and level of `regions`."""
    ok: list[Case] = []
    cannot: list[Case] = []
    for region in regions:
        for plan in region.plans.values():
            grades = list(plan.grades) or [None]
            for visit in plan.visits.values():
                for level, person, grade, (total, self_pay, class_b), day, ytd in itertools.product(
                        visit.levels, PEOPLE, grades, AMOUNTS, DATES, YTD):
                    case = Case(region=region.id, plan=plan.id, visit=visit.id, level=level, grade=grade,
                                total=Decimal(total), self_pay=None if self_pay is None else Decimal(self_pay),
                                class_b=None if class_b is None else Decimal(class_b), date=day, **person, **ytd)
                    result = estimate(case, policies)
                    (ok if isinstance(result, Estimate) else cannot).append(case)
    return ok, cannot


def rate(cases: list[Case], policies: PolicySet, seconds: float) -> float:
    """Estimates per second over `cases`, cycled for about `seconds`; the best of three runs."""
    if not cases:
        return 0.0
    runs = []
    for _ in range(3):
        done = 0
        start = time.perf_counter()
        deadline = start + seconds / 3
        while True:
            for case in cases:
                estimate(case, policies)
            done += len(cases)
            now = time.perf_counter()
            if now >= deadline:
                break
        runs.append(done / (now - start))
    return max(runs)


def load_times(folder: Path, loads: int) -> list[float]:
    """Milliseconds for each fresh load-and-validate of the whole folder."""
    times = []
    for _ in range(loads):
        start = time.perf_counter()
        load_policies(folder)
        times.append((time.perf_counter() - start) * 1000)
    return times


def profile(what, top: int = 18) -> str:
    prof = cProfile.Profile()
    prof.enable()
    what()
    prof.disable()
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(top)
    return out.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policy-dir", type=Path, help=f"policy folder (default: {DEFAULT_DIR}; if it has no "
                        "*.yaml, tests/policies_props)")
    parser.add_argument("--seconds", type=float, default=3.0, help="time spent measuring the estimate rate")
    parser.add_argument("--loads", type=int, default=15, help="fresh loads timed for the load figure")
    parser.add_argument("--every", type=int, default=25, help="every Nth imported region in the case mix "
                        "(default 25; 1 for all, which takes minutes)")
    parser.add_argument("--profile", action="store_true", help="print cProfile hot spots (always when a "
                        "target is missed)")
    args = parser.parse_args(argv)

    folder = args.policy_dir or DEFAULT_DIR
    if args.policy_dir is None and not any(folder.glob("*.yaml")):
        folder = ROOT / "tests" / "policies_props"
        print(f"note: {DEFAULT_DIR} has no policy files; using the test policies in {folder}")
    policies = load_policies(folder)
    files = sorted(folder.rglob("*.yaml"))
    size = sum(f.stat().st_size for f in files)
    print(f"policies: {folder} — {len(files)} files, {size / 1024:.1f} KiB, {len(policies.regions)} regions")

    regions = sample(policies, args.every)
    print(f"case mix over {len(regions)} regions (hand-maintained, and every {args.every}th imported one)")
    ok, cannot = build_cases(policies, regions)
    per_region: dict[str, int] = {}
    for case in ok:
        per_region[case.region] = per_region.get(case.region, 0) + 1
    print(f"case mix: {len(ok)} estimable cases; {len(cannot)} that cannot be estimated")

    estimates = rate(ok, policies, args.seconds)
    cannots = rate(cannot, policies, max(0.5, args.seconds / 3))
    print(f"estimates/s (one core, estimable mix): {estimates:,.0f}  ({1e6 / estimates:.1f} µs each)  "
          f"target >= {TARGET_RATE:,}: {'OK' if estimates >= TARGET_RATE else 'MISSED'}")
    if cannot:
        print(f"cannot-estimate answers/s:             {cannots:,.0f}")
    by_region = {r: rate([c for c in ok if c.region == r], policies, 0.3) for r in sorted(per_region)}
    print("by region (estimates/s): " + ", ".join(f"{r} {v:,.0f}" for r, v in by_region.items()))
    balanced = len(by_region) / sum(1 / v for v in by_region.values()) if by_region else 0.0
    print(f"estimates/s, every region weighted equally: {balanced:,.0f}")

    times = load_times(folder, args.loads)
    median = statistics.median(times)
    print(f"load + validate all policies: median {median:.1f} ms of {len(times)} fresh loads "
          f"(min {min(times):.1f}, max {max(times):.1f})  target < {TARGET_LOAD_MS} ms: "
          f"{'OK' if median < TARGET_LOAD_MS else 'MISSED'}")

    if args.profile or estimates < TARGET_RATE:
        print("\n-- estimate hot spots (cProfile, tottime) --")
        print(profile(lambda: [estimate(c, policies) for c in ok * max(1, 20000 // max(1, len(ok)))]))
    if args.profile or median >= TARGET_LOAD_MS:
        print("\n-- load hot spots (cProfile, tottime) --")
        print(profile(lambda: load_policies(folder)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
