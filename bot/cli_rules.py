"""`yibao rules import | audit | list`: the subcommands about the policy set as a whole.

Kept apart from `bot/cli.py` so the command line's main module stays small; they print what
`rules.catalog` and `rules.importers` compute."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rules.catalog import audit, audit_text, list_text, region_list
from rules.loader import DEFAULT_DIR, load_policies, policy_dir

IMPORTERS = ("good9527",)


def cmd_import(args: argparse.Namespace) -> int:
    from rules.importers.good9527 import import_dir
    from rules.importers.writer import write_files

    source = Path(args.source_dir)
    if not (source / "cities").is_dir() or not (source / "MANIFEST.tsv").is_file():
        print(f"yibao rules import: {source} is not a {args.dataset} folder (needs cities/ and MANIFEST.tsv)")
        return 2
    out = Path(args.out) if args.out else policy_dir(args.policy_dir)
    written, same, kept = write_files(import_dir(source, out))
    print(f"{len(written)} written, {len(same)} unchanged, {len(kept)} kept (edited by hand since generated)")
    for path in kept:
        print(f"  kept: {path} (move the edit into a hand-maintained file, then delete this one to re-import)")
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    report = audit(load_policies(args.policy_dir))
    print(json.dumps(report, ensure_ascii=False, indent=2) if args.json else audit_text(report))
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    policies = load_policies(args.policy_dir)
    if args.json:
        print(json.dumps(region_list(policies), ensure_ascii=False, indent=2))
    else:
        print(list_text(policies, args.lang))
    return 0


def add_commands(rsub, add_policy_dir) -> None:
    imp = rsub.add_parser("import", help="write one policy file per region from an open dataset")
    imp.add_argument("dataset", choices=IMPORTERS)
    imp.add_argument("source_dir", metavar="DIR", help="the dataset folder (cities/, MANIFEST.tsv, …)")
    imp.add_argument("--out", metavar="DIR", help=f"policy folder to write cn/… into (default: {DEFAULT_DIR})")
    add_policy_dir(imp)
    imp.set_defaults(func=cmd_import)
    aud = rsub.add_parser("audit", help="figures, confidence and disputed values of the imported regions")
    aud.add_argument("--json", action="store_true")
    add_policy_dir(aud)
    aud.set_defaults(func=cmd_audit)
    lst = rsub.add_parser("list", help="every region: id, names, province, code, plans, weakest confidence")
    lst.add_argument("--json", action="store_true", help="a JSON list, for tools")
    lst.add_argument("--lang", choices=("zh", "en"), default="zh")
    add_policy_dir(lst)
    lst.set_defaults(func=cmd_list)
