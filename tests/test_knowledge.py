"""The knowledge base (conversations/knowledge/), its matcher and questions asked in the dialogue.

The matcher's figures are measured on `tests/knowledge/heldout.yaml`, written before the knowledge
base's phrasings and never copied into them; `benchmarks/eval_questions.py` prints the same figures.
"""

from __future__ import annotations

import datetime as dt
import re
import shutil
from pathlib import Path

import pytest
import yaml

from conversations import asking
from conversations.dialogue import Dialogue, Session
from conversations.knowledge import FOLDER, KnowledgeErrors, knowledge, load_knowledge
from conversations.replies import Incoming
from conversations.texts import raw, t
from rules.loader import load_policies
from tests.test_dialogue import Chat, asks

HERE = Path(__file__).parent / "knowledge"
HELDOUT = yaml.safe_load((HERE / "heldout.yaml").read_text(encoding="utf-8"))
POLICIES = load_policies()
INTERNAL = re.compile(r"policy-facts|seeds?/|seed \d|种子|\.md\b|\.txt\b|\.ya?ml\b")


def answered(text: str) -> str | None:
    found = asking.find(text)
    return found.topic.id if found else None


# -- the data ----------------------------------------------------------------------------------


def test_every_topic_has_both_languages_sources_and_fits_a_message():
    topics = knowledge()
    assert len(topics) >= 40
    for topic in topics.values():
        for lang in ("zh", "en"):
            reply = asking.reply(asking.matcher().match(topic.questions[lang][0]), lang, POLICIES)
            assert len(reply.text) + len(reply.title or "") < 4096 - 200, topic.id  # one Telegram message
            assert len(f"{reply.title}\n{reply.text}".encode()) < 1800, topic.id  # one WeChat passive reply
            assert not INTERNAL.search(reply.text), (topic.id, lang)
        assert topic.sources and topic.confidence in ("confirmed", "secondary", "seed-only")


def test_topics_name_regions_the_policies_know():
    for topic in knowledge().values():
        for region in topic.regions:
            assert region in POLICIES.regions, (topic.id, region)


def test_the_questions_the_issue_names_are_answered():
    expected = {
        "医保卡余额能报销吗": "account_balance", "个人账户没钱了还能报销吗": "account_empty",
        "统筹账户一年一清零吗": "balance_reset", "周六能结算吗": "weekend_settlement",
        "门诊能刷个人账户吗": "account_outpatient", "家庭共济怎么用": "family_pool",
        "河源社保卡在深圳能用吗": "heyuan_in_shenzhen", "年度转换为什么是7月1日": "shanghai_year",
    }
    assert {q: answered(q) for q in expected} == expected


def test_every_phrasing_finds_its_own_topic():
    wrong = [(q, topic.id, answered(q)) for topic in knowledge().values()
             for qs in topic.questions.values() for q in qs if answered(q) != topic.id]
    assert len(wrong) <= 10, wrong  # phrasings that neighbouring topics share, or too short to be sure


def test_seed_errors_are_corrected_in_the_answers():
    topics = knowledge()
    assert "200" in topics["account_empty"].answer["zh"] and "300" in topics["account_empty"].answer["zh"]
    assert "1,500" in topics["shanghai_outpatient"].answer["zh"]
    assert "18,000" in topics["zigong_resident"].answer["zh"]
    assert "统筹付0元" in topics["how_computed"].answer["zh"]
    assert "300元" in topics["jiangxi_outpatient"].answer["zh"] and "2,000" in topics["jiangxi_outpatient"].answer["zh"]
    assert "已废止" in topics["shenzhen_grades"].answer["zh"]


# -- validation --------------------------------------------------------------------------------


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    shutil.copytree(FOLDER, tmp_path / "knowledge")
    return tmp_path / "knowledge"


def errors_of(folder: Path) -> list[str]:
    with pytest.raises(KnowledgeErrors) as caught:
        load_knowledge(folder)
    return [str(e) for e in caught.value.errors]


def test_the_shipped_folder_loads(folder):
    assert load_knowledge(folder).keys() == knowledge().keys()


def test_problems_are_reported_with_file_line_and_field(folder):
    path = folder / "topics" / "family_pool.yaml"
    text = path.read_text(encoding="utf-8")
    text = text.replace("confidence: secondary", "confidence: sure\ncolour: blue")
    text = text.replace("sources: [guoban-2021-14, nhsa-platform]", "sources: [guoban-2021-14, nowhere]")
    path.write_text(text, encoding="utf-8")
    (folder / "topics" / "weekend_settlement.yaml").write_text("id: weekend_settlement\nquestions: [a\n")
    bad = folder / "topics" / "account_scope.yaml"
    bad.write_text(bad.read_text(encoding="utf-8").replace("  en: |-", "  fr: |-"), encoding="utf-8")
    leak = folder / "topics" / "refund.yaml"
    leak.write_text(leak.read_text(encoding="utf-8").replace("一般只有", "见 policy-facts.md，一般只有"),
                    encoding="utf-8")
    errors = errors_of(folder)
    lines = text.splitlines()
    conf_line = next(i for i, line in enumerate(lines, 1) if line.startswith("confidence"))
    assert f"family_pool.yaml:{conf_line}: confidence: one of confirmed, secondary, seed-only" in errors
    assert f"family_pool.yaml:{conf_line + 1}: colour: unknown field" in errors
    assert any(e.startswith("family_pool.yaml:") and "unknown document 'nowhere'" in e for e in errors)
    assert any(e.startswith("weekend_settlement.yaml:") and "not readable YAML" in e for e in errors)
    assert any(e.startswith("account_scope.yaml:") and "answer.en" in e for e in errors)
    assert any(e.startswith("refund.yaml:") and "internal file" in e for e in errors)


def test_an_id_must_be_the_file_name_and_sources_need_a_title(folder):
    path = folder / "topics" / "refund.yaml"
    path.write_text(path.read_text(encoding="utf-8").replace("id: refund", "id: refunds"), encoding="utf-8")
    sources = folder / "sources.yaml"
    sources.write_text(sources.read_text(encoding="utf-8").replace(
        "  title: 《基本医疗保险用药管理暂行办法》（国家医疗保障局令第1号）\n", ""), encoding="utf-8")
    errors = errors_of(folder)
    assert "refund.yaml:1: id: must be the file's name (refund)" in errors
    assert any(e.startswith("sources.yaml:") and "drug-rules-2020" in e for e in errors)


# -- matching ----------------------------------------------------------------------------------


def test_heldout_paraphrases_top1_at_least_90_percent():
    cases = HELDOUT["paraphrases"]
    assert len(cases) >= 60
    topics = knowledge()
    phrasings = {q for topic in topics.values() for qs in topic.questions.values() for q in qs}
    assert not phrasings & {c["q"] for c in cases}, "a held-out paraphrase was copied into the knowledge base"
    right = sum(answered(c["q"]) == c["topic"] for c in cases)
    assert right / len(cases) >= 0.90, f"top-1 {right}/{len(cases)}"


def test_heldout_off_topic_at_least_95_percent_not_answered():
    messages = [str(m) for m in HELDOUT["off_topic"]]
    quiet = sum(answered(m) is None for m in messages)
    assert quiet / len(messages) >= 0.95, f"{quiet}/{len(messages)}"


@pytest.mark.parametrize("text", ["你好", "今天天气", "12000", "1.2万", "上海", "深圳", "住院", "三级", "跳过",
                                  "返回", "开始计算", "头疼吃什么药", "养老金怎么算？", "公积金怎么提取？", ""])
def test_off_topic_messages_are_not_answered(text):
    assert answered(text) is None


@pytest.mark.parametrize(("text", "expected"), [
    ("个人账户没钱了还能报销吗", True), ("家庭共济怎么用", True), ("能用吗？", True), ("how does it work", True),
    ("Can I use it on a Saturday", True), ("周六能结算么", True), ("上海", False), ("12000", False),
    ("在职", False), ("跳过", False), ("1.2万", False), ("三级医院", False), ("退休了", False),
])
def test_reads_as_question(text, expected):
    assert asking.reads_as_question(text) is expected


def test_english_questions_find_chinese_topics():
    assert answered("Can my wife pay with my personal account?") == "family_pool"
    assert answered("Does the pooled fund reset every year?") == "balance_reset"


# -- in the dialogue ---------------------------------------------------------------------------

TODAY = dt.date(2025, 3, 1)


@pytest.fixture
def chat(redis) -> Chat:
    from bot.store import RedisSessionStore

    return Chat(Dialogue(POLICIES, RedisSessionStore(redis, ttl_seconds=3600), today=lambda: TODAY))


def sources_shown(text: str, lang: str = "zh") -> bool:
    return t(lang, "ask.sources") in text and t(lang, "ask.confidence", level="").split("{")[0] in text


async def test_a_question_mid_estimate_is_answered_then_the_same_question(chat):
    await chat.command("start")
    await chat.say("上海")
    before = await chat.session()
    buttons_before = chat.buttons
    await chat.say("个人账户没钱了还能报销吗？")
    assert chat.turn.replies[0].title == "个人账户没钱了还能报销吗"
    assert "统筹基金" in chat.turn.replies[0].text and sources_shown(chat.text)
    assert "国办发〔2021〕14号" in chat.text and not INTERNAL.search(chat.text)
    assert asks(chat, before.question)
    after = await chat.session()
    assert (after.state, after.question, after.answers) == (before.state, before.question, before.answers)
    assert chat.buttons == buttons_before  # the buttons already shown keep working
    await chat.press(chat.actions[0])
    assert (await chat.session()).answers != before.answers


async def test_an_unknown_question_says_so_and_returns(chat):
    await chat.command("start")
    await chat.say("上海")
    question = (await chat.session()).question
    await chat.say("头疼吃什么药？")
    assert chat.turn.replies[0].text == t("zh", "ask.unknown")
    assert asks(chat, question)


async def test_an_answer_put_as_a_question_is_still_an_answer(chat):
    await chat.command("start")
    await chat.say("上海？")
    assert (await chat.session()).answers.get("region") == "shanghai"


async def test_a_question_while_idle_offers_an_estimate_and_another_question(chat):
    await chat.say("统筹账户一年一清零吗")
    assert chat.turn.replies[0].title == "统筹账户一年一清零吗"
    assert chat.actions == ["~new", "~ask"]
    assert (await chat.session()).state == "idle"
    await chat.press("~ask")
    assert chat.last_text == t("zh", "ask.prompt")
    await chat.say("起付线")  # not put as a question: still read as one after the prompt
    assert chat.turn.replies[0].title == "起付线是什么"
    assert not (await chat.session()).asking


async def test_unknown_question_while_idle_offers_the_estimate(chat):
    await chat.say("你们公司在哪里？")
    assert chat.turn.replies[0].text == t("zh", "ask.unknown")
    assert asks(chat, "region")


async def test_ask_command_with_and_without_a_question(chat):
    await chat.command("ask", "家庭共济怎么用")
    assert chat.turn.replies[0].title == "家庭共济怎么用"
    await chat.say("/ask")
    assert chat.last_text == t("zh", "ask.prompt") and (await chat.session()).asking
    await chat.say("今天天气")
    assert chat.turn.replies[0].text == t("zh", "ask.unknown")
    await chat.say("问问题")
    assert (await chat.session()).asking


async def test_after_the_ask_prompt_a_button_or_command_still_works(chat):
    await chat.command("start")
    await chat.say("/ask")
    await chat.command("help")
    assert not (await chat.session()).asking
    await chat.say("上海")
    assert (await chat.session()).answers.get("region") == "shanghai"


async def test_questions_in_english(chat):
    await chat.command("language", "en")
    await chat.command("start")
    await chat.say("Can I use my card on a Saturday?")
    assert chat.turn.replies[0].title == knowledge()["weekend_settlement"].questions["en"][0]
    assert sources_shown(chat.text, "en") and asks(chat, "region", "en")


async def test_a_region_topic_names_its_region(chat):
    await chat.say("上海医保年度为什么从7月1日开始？")
    assert t("zh", "ask.regions", regions="上海") in chat.text


def test_the_asking_flag_survives_storage():
    assert Session.from_dict(Session(asking=True).to_dict()).asking
    assert not Session.from_dict({"l": "zh", "s": "idle", "q": 0, "k": "x"}).asking


def test_the_help_names_ask():
    for lang in ("zh", "en"):
        assert "/ask" in raw(lang, "commands.help") and raw(lang, "menu.ask")


def test_step_is_pure_for_questions():
    dialogue = Dialogue(POLICIES, None, today=lambda: TODAY)  # type: ignore[arg-type]
    session = Session()
    turn = dialogue.step(session, Incoming(text="医保卡余额可以取出来吗"))
    assert turn.replies[0].title == "医保卡余额可以取出来吗" and session.state == "idle"
