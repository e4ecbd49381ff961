"""How well typed questions find their answers: the figures the issue asks for.

Prints, for the held-out set (tests/knowledge/heldout.yaml, written before the knowledge base's
phrasings) and the tuning set (tests/knowledge/dev.yaml): the share of paraphrases whose best topic is
the right one (target ≥ 90%), the share of off-topic messages not answered by the matcher (target ≥ 95%),
the same through the dialogue's rule (a message is taken as a question only when it reads as one), and
the time one match takes. Every miss is listed. Reports, never fails.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from conversations import asking  # noqa: E402


def report(name: str, path: Path) -> None:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    cases = data["paraphrases"] + data.get("paraphrases_2", [])
    misses = []
    for case in cases:
        found = asking.find(case["q"])
        if found is None or found.topic.id != case["topic"]:
            misses.append(f"  miss: {case['q']} → {found.topic.id if found else 'not answered'} (want {case['topic']})")
    off = [str(m) for m in data["off_topic"]]
    answered = [m for m in off if asking.find(m)]
    as_question = [m for m in off if asking.reads_as_question(m) and asking.find(m)]
    right = len(cases) - len(misses)
    print(f"{name}: top-1 right {right}/{len(cases)} = {right / len(cases):.1%}; "
          f"off-topic not answered {len(off) - len(answered)}/{len(off)} = {1 - len(answered) / len(off):.1%} "
          f"(matcher alone), {len(off) - len(as_question)}/{len(off)} = {1 - len(as_question) / len(off):.1%} "
          f"(in the dialogue)")
    for line in misses + [f"  answered off-topic: {m}" for m in answered]:
        print(line)


def main() -> None:
    start = time.perf_counter()
    asking.matcher()
    print(f"matcher ready in {time.perf_counter() - start:.2f} s (jieba's dictionary, the knowledge base)")
    here = ROOT / "tests" / "knowledge"
    report("held-out", here / "heldout.yaml")
    report("tuning", here / "dev.yaml")
    texts = ["个人账户没钱了还能报销吗", "can my wife pay with my account", "今天天气怎么样", "12000"]
    start = time.perf_counter()
    rounds = 500
    for _ in range(rounds):
        for text in texts:
            asking.find(text)
    per = (time.perf_counter() - start) / (rounds * len(texts))
    print(f"one match: {per * 1000:.3f} ms")


if __name__ == "__main__":
    main()
