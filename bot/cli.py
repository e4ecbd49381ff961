"""The `yibao` command: estimates, policy checks and the runtimes (terminal chat, Telegram, web).

The argument names are a contract other tools rely on (see README). Bad arguments exit 2 with one
line; a case the policy cannot estimate exits 2 too (with `--json`, as `{"error": ..., "missing": ...}`).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import sys
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation

from bot.config import ConfigError, Settings, env_example, markdown_table, settings_table
from bot.runtime import StartError, check_shipped_data
from rules.account import account_json, account_lines, account_sources, split
from rules.case import LEVELS, MAX_AMOUNT, MEMBERS, PLANS, VISITS, WHERE, CannotEstimate, Case, InvalidCase
from rules.engine import estimate
from rules.loader import PolicyErrors, load_policies, policy_dir
from rules.policy import PolicySet
from rules.report import estimate_json, estimate_text, policy_table


class UsageError(Exception):
    """A bad argument: printed as one line, exit 2."""


def _amount(text: str) -> Decimal:
    try:
        value = Decimal(text.replace(",", "").strip())
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"'{text}' is not an amount (e.g. 12000 or 800.50)") from None
    if not value.is_finite():
        raise argparse.ArgumentTypeError(f"'{text}' is not an amount (e.g. 12000 or 800.50)")
    if value < 0:
        raise argparse.ArgumentTypeError(f"'{text}' must be zero or more")
    if value > MAX_AMOUNT:  # checked before rounding: 1e26 has too many digits to round to the fen
        raise argparse.ArgumentTypeError(f"'{text}' is beyond any plausible bill (at most {MAX_AMOUNT:,})")
    if value != value.quantize(Decimal("0.01")):
        raise argparse.ArgumentTypeError(f"'{text}' has more than two decimals")
    return value


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a date (YYYY-MM-DD)") from None


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"'{text}' must be a whole number, 1 or more")
    return int(text)


def _whole(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"'{text}' must be a whole number")
    return int(text)


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad argument in one line and exits 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message}")


def _policies(args: argparse.Namespace) -> PolicySet:
    return load_policies(args.policy_dir)


def cmd_estimate(args: argparse.Namespace) -> int:
    policies = _policies(args)
    region = policies.find(args.region)
    if region is None:
        known = ", ".join(sorted(policies.regions))
        raise UsageError(f"unknown region '{args.region}' (known: {known})")
    try:
        case = Case(
            region=region.id, plan=args.plan, grade=args.grade, member=args.member, age=args.age,
            retired_year=args.retired_year, visit=args.visit, level=args.level, total=args.total,
            self_pay=args.self_pay, class_b=args.class_b, date=args.date,
            ytd_deductible=args.ytd_deductible, ytd_fund=args.ytd_fund, ytd_compliant=args.ytd_compliant,
            ytd_burden=args.ytd_burden, admission=args.admission, where=args.where,
            ytd_supplementary=args.ytd_supplementary, ytd_critical=args.ytd_critical,
            current_year_account=args.current_year_account,
        )
    except InvalidCase as bad:
        raise UsageError(f"yibao estimate: {bad}") from None
    if args.family_pool and args.account_balance is None:
        raise UsageError("yibao estimate: --family-pool needs --account-balance (0 for an empty account)")
    result = estimate(case, policies)
    if isinstance(result, CannotEstimate) and result.reason.key == "needs_detail":
        flags = " and ".join(f"--{m.replace('_', '-')}" for m in result.missing)
        verb = "is" if len(result.missing) == 1 else "are"
        message = f"{flags} {verb} needed for this plan in {region.name.en}"
        if not args.json:
            raise UsageError(f"yibao estimate: {message}")
        print(json.dumps({"error": message, "missing": result.missing, "region": region.id,
                          "date": result.date.isoformat()}, ensure_ascii=False, indent=2))
        return 2
    account = split(result, args.account_balance, args.family_pool) \
        if args.account_balance is not None and not isinstance(result, CannotEstimate) else None
    if args.json:
        shown = estimate_json(result, args.lang)
        print(json.dumps(shown | account_json(account) if account else shown, ensure_ascii=False, indent=2))
    else:
        lines = account_lines(account, args.lang) + account_sources(account, args.lang) if account else []
        print("\n".join([estimate_text(result, policies, args.lang), *lines]))
    return 2 if isinstance(result, CannotEstimate) else 0


def cmd_rules_check(args: argparse.Namespace) -> int:
    folder = policy_dir(args.policy_dir)
    policies = load_policies(folder)  # PolicyErrors are reported by main()
    count = sum(len(r.plans) for r in policies)
    print(f"{folder}: {len(policies.regions)} regions, {count} plans, no problems")
    check_shipped_data()  # a StartError names the file, line and field
    return 0


def cmd_rules_show(args: argparse.Namespace) -> int:
    policies = _policies(args)
    region = policies.find(args.region)
    if region is None:
        raise UsageError(f"unknown region '{args.region}' (known: {', '.join(sorted(policies.regions))})")
    print(policy_table(region, args.date or dt.date.today(), args.lang))
    return 0


def cmd_rules_diff(args: argparse.Namespace) -> int:
    from rules.diff import diff_policies, draft_notices, format_changes

    changes = diff_policies(load_policies(args.old_dir), load_policies(args.new_dir))  # PolicyErrors: main()
    if args.json:
        print(json.dumps([c.as_json() for c in changes], ensure_ascii=False, indent=2))
    elif not changes:
        print("no changes")
    elif args.notices:
        print("\n\n".join(draft_notices(changes, args.lang).values()))
    else:
        print(format_changes(changes, args.lang))
    return 0


def _settings(args: argparse.Namespace) -> Settings:
    return Settings.from_env(policy_dir=getattr(args, "policy_dir", None))


def cmd_chat(args: argparse.Namespace) -> int:
    from bot.channels.terminal import run_chat
    from bot.runtime import open_runtime

    async def chat() -> int:
        async with open_runtime(_settings(args)) as runtime:
            return await run_chat(runtime, user=args.user, lang=args.lang)

    return asyncio.run(chat())


def cmd_serve(args: argparse.Namespace) -> int:
    from bot.app import run_serve

    return asyncio.run(run_serve(Settings.from_env(policy_dir=args.policy_dir)))


def cmd_web(args: argparse.Namespace) -> int:
    from bot.channels.web import run_web

    overrides = {"host": args.host, "port": args.port, "web_chat": True}
    return asyncio.run(run_web(Settings.from_env(policy_dir=args.policy_dir, **overrides)))


def cmd_config(args: argparse.Namespace) -> int:
    if args.markdown:
        print(markdown_table())
    elif args.env:
        print(env_example())
    else:
        print(settings_table(Settings.from_env()))
    return 0


def _add_policy_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument("--policy-dir", metavar="DIR",
                   help="folder of policy files (default: $YIBAO_POLICY_DIR, else the shipped policies)")


def _estimate_parser(sub) -> None:
    p = sub.add_parser("estimate", help="estimate what the insurance pays for one visit or stay")
    p.add_argument("--region", required=True, help="region id, Chinese name or alias (上海, sh, …)")
    p.add_argument("--plan", required=True, choices=PLANS)
    p.add_argument("--grade", type=_positive_int, help="contribution grade (一档 = 1)")
    p.add_argument("--member", choices=MEMBERS, help="person category (employee plans)")
    p.add_argument("--age", type=_whole)
    p.add_argument("--retired-year", type=_whole, metavar="YYYY")
    p.add_argument("--visit", required=True, choices=VISITS)
    p.add_argument("--level", required=True, choices=LEVELS)
    p.add_argument("--total", required=True, type=_amount, metavar="AMOUNT")
    p.add_argument("--self-pay", type=_amount, metavar="AMOUNT", help="自费: outside the catalogue")
    p.add_argument("--class-b", type=_amount, metavar="AMOUNT", help="乙类 cost")
    p.add_argument("--date", type=_date, help="date of service (default: today)")
    p.add_argument("--ytd-deductible", type=_amount, default=Decimal(0), metavar="AMOUNT",
                   help="deductible already met this insurance year")
    p.add_argument("--ytd-fund", type=_amount, default=Decimal(0), metavar="AMOUNT",
                   help="what the fund already paid this insurance year")
    p.add_argument("--ytd-compliant", type=_amount, default=Decimal(0), metavar="AMOUNT",
                   help="compliant cost accumulated earlier this year (regions whose bands count the year)")
    p.add_argument("--ytd-burden", type=_amount, default=Decimal(0), metavar="AMOUNT",
                   help="compliant cost the person bore earlier this year (critical-illness insurance)")
    p.add_argument("--ytd-supplementary", type=_amount, metavar="AMOUNT",
                   help="what the fund above the cap (附加基金, 大额互助) already paid this insurance year "
                        "(default: worked out where the policy allows)")
    p.add_argument("--ytd-critical", type=_amount, metavar="AMOUNT",
                   help="what critical-illness insurance already paid this insurance year "
                        "(default: worked out from --ytd-burden where the policy allows)")
    p.add_argument("--current-year-account", type=_amount, metavar="AMOUNT",
                   help="当年账户 balance, where the policy spends it before the deductible (上海 门急诊; "
                        "default: taken as spent, with a warning)")
    p.add_argument("--admission", type=_positive_int, default=1, metavar="N",
                   help="which admission of the insurance year this is")
    p.add_argument("--where", choices=WHERE, default="local",
                   help="where the care happens: local (default), or out of the insured area: filed "
                        "(long-term stay filed), referral, emergency, unfiled (temporary, not filed)")
    _add_policy_dir(p)
    p.add_argument("--account-balance", type=_amount, metavar="AMOUNT",
                   help="个人账户 balance: split the personal share into account and cash")
    p.add_argument("--family-pool", action="store_true",
                   help="家庭共济 is on: a relative's account may pay what the own account cannot")
    p.add_argument("--lang", choices=("zh", "en"), default="zh")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_estimate)


def _rules_parser(sub) -> None:
    rules = sub.add_parser("rules", help="check, show, compare, list, audit and import policy files")
    rsub = rules.add_subparsers(dest="rules_command", required=True, parser_class=_Parser)
    check = rsub.add_parser("check", help="validate every policy file; exit 1 on any problem")
    _add_policy_dir(check)
    check.set_defaults(func=cmd_rules_check)
    show = rsub.add_parser("show", help="the parameters in force, as a table")
    show.add_argument("region")
    show.add_argument("--date", type=_date)
    show.add_argument("--lang", choices=("zh", "en"), default="zh")
    _add_policy_dir(show)
    show.set_defaults(func=cmd_rules_show)
    diff = rsub.add_parser("diff", help="what changed between two policy folders")
    diff.add_argument("old_dir", metavar="OLD_DIR")
    diff.add_argument("new_dir", metavar="NEW_DIR")
    diff.add_argument("--lang", choices=("zh", "en"), default="zh")
    diff_format = diff.add_mutually_exclusive_group()
    diff_format.add_argument("--json", action="store_true", help="a JSON list of changes (values as text)")
    diff_format.add_argument("--notices", action="store_true", help="the drafted notice of each region")
    diff.set_defaults(func=cmd_rules_diff)
    from bot.cli_rules import add_commands

    add_commands(rsub, _add_policy_dir)


def _runtime_parsers(sub) -> None:
    chat = sub.add_parser("chat", help="the guided estimate in this terminal (no token needed)")
    chat.add_argument("--user", help="whose conversation to continue (default: your login name)")
    chat.add_argument("--lang", choices=("zh", "en"), help="language of the conversation")
    _add_policy_dir(chat)
    chat.set_defaults(func=cmd_chat)
    serve = sub.add_parser("serve", help="run the Telegram bot (long polling, or a webhook if WEBHOOK_URL is set)",
                           description="Settings come from the environment; see `yibao config --markdown`.")
    _add_policy_dir(serve)
    serve.set_defaults(func=cmd_serve)
    web = sub.add_parser("web", help="serve only the browser chat page at /chat (no token needed)")
    web.add_argument("--host", help="address to listen on (default: $HOST, else 0.0.0.0)")
    web.add_argument("--port", type=_positive_int, help="port (default: $PORT, else 8080)")
    _add_policy_dir(web)
    web.set_defaults(func=cmd_web)
    config = sub.add_parser("config", help="show the settings in force, or the reference of all of them")
    fmt = config.add_mutually_exclusive_group()
    fmt.add_argument("--markdown", action="store_true", help="the settings table for the README")
    fmt.add_argument("--env", action="store_true", help="an .env.example with every variable")
    config.set_defaults(func=cmd_config)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="yibao", description="yibao-bot: 医保 reimbursement estimates, in chat and on the command line."
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _estimate_parser(sub)
    _rules_parser(sub)
    _runtime_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return args.func(args)
    except UsageError as bad:
        print(bad, file=sys.stderr)
        return 2
    except (ConfigError, StartError) as bad:
        print(f"yibao: {bad}", file=sys.stderr)
        return 1
    except PolicyErrors as bad:
        print(f"invalid policy set ({len(bad.errors)} problem{'s' if len(bad.errors) > 1 else ''}):",
              file=sys.stderr)
        for error in bad.errors:
            print(f"  {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `yibao rules show 上海 | head`: the reader left; no traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nor one when exit flushes stdout
        return 141


if __name__ == "__main__":
    sys.exit(main())

