"""Which knowledge-base topic a typed question asks about, or none.

Chinese has no spaces, so words come from jieba (its dictionary ships inside the package: nothing is
downloaded at run time), in its search mode, which yields a compound and its parts ("个人账户" gives
个人, 账户 and 个人账户) so a paraphrase that uses only a part still meets it. English words are split on
letters. Every word is then mapped to a concept of `knowledge/vocabulary.yaml` (余额, 卡里, balance → 个人账户),
so wording matters less than meaning, and an English question finds a topic written in Chinese.

Topics are ranked with BM25 (Okapi, Lucene's always-positive idf) over two fields: the topic's question
phrasings, and its answer at a lower weight. BM25 is a dozen lines here rather than the rank-bm25
package: that package needs numpy, has not changed since 2022, and hides the per-word weights that the
threshold below is made of.

A best topic is accepted only when the message's words are mostly about it: the idf weight of the
message's words that the topic contains, over the idf weight of all its words (a word the knowledge base
never uses weighs as much as the rarest one), must reach `COVERAGE`, and it must share at least two
concepts with the topic, or one concept it names in its questions that is not a mere answer word (a
region, a button). "你好", "今天天气", "上海", "12000" and "头疼吃什么药" are therefore not answered.
"""

from __future__ import annotations

import logging
import math
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache

import yaml

from conversations.knowledge import FOLDER, Topic
from conversations.parsing import normalise

K1 = 1.2
B = 0.5  # topics with many phrasings are long; a milder length penalty than the usual 0.75
ANSWER_WEIGHT = 0.3
COVERAGE = 0.5
FOREIGN_WEIGHT = 5.0  # a word of a neighbouring subject (养老保险, 公积金): outweighs any shared concept
ELSEWHERE = 0.5  # the score of a region's topic when the message names no place of it
UNKNOWN_WEIGHT = 1.0  # a word the knowledge base never uses: below any concept it names in one topic
SURE = 0.7  # a message sharing one concept with a topic: only if nothing else in it is foreign
SINGLE_IDF = 1.5  # a one-word message is a question only if the word is that specific (起付线, 家庭共济)
_CJK = re.compile(r"[\u4e00-\u9fff]")
_NUMBER = re.compile(r"^[\d.,%万千百十两零一二三四五六七八九块元]+$")  # amounts typed at the wrong time


@dataclass(frozen=True, slots=True)
class Match:
    topic: Topic
    score: float
    coverage: float


@dataclass(frozen=True, slots=True)
class Vocabulary:
    concept_of: dict[str, str]  # word → concept
    phrases: tuple[tuple[str, str], ...]  # several-word phrases ("no money") → their concept
    stop: frozenset[str]
    weak: frozenset[str]  # concepts
    foreign: frozenset[str]  # words


@cache
def _vocabulary() -> Vocabulary:
    data = yaml.safe_load((FOLDER / "vocabulary.yaml").read_text(encoding="utf-8"))
    pairs = [(str(word).lower(), concept) for concept, words in data["concepts"].items() for word in words]
    return Vocabulary(
        concept_of={w: c for w, c in pairs if " " not in w},
        phrases=tuple((w, c) for w, c in pairs if " " in w),
        stop=frozenset(str(w).lower() for words in data["stopwords"].values() for w in words),
        weak=frozenset(data["weak"]),
        foreign=frozenset(str(w).lower() for w in data["foreign"]),
    )


@cache
def _segmenter():  # type: ignore[no-untyped-def]
    """jieba's tokenizer with the domain's words added, so 个人账户 or 家庭共济 stay one word too."""
    import jieba

    jieba.setLogLevel(logging.WARNING)  # it announces every dictionary load on stderr
    tokenizer = jieba.Tokenizer()
    vocabulary = _vocabulary()
    for word in [*vocabulary.concept_of, *vocabulary.foreign]:
        if _CJK.search(word) and len(word) > 1:
            tokenizer.add_word(word, freq=2000)
    return tokenizer


def concepts(text: str) -> list[str]:
    """The message's words as concepts, stopwords and bare numbers dropped (order kept, repeats kept)."""
    words: list[str] = []
    text = normalise(text)
    for phrase, concept in _vocabulary().phrases:
        text = text.replace(phrase, f" {concept} ")
    for piece in re.split(r"([a-z][a-z0-9'-]*)", text):
        if not piece.strip():
            continue
        if piece[0].isascii() and piece[0].isalpha():
            words.append(piece.removesuffix("'s"))
        else:
            words.extend(w for w in _segmenter().lcut_for_search(piece) if w.strip())
    return [c for word in words for c in _concept(word)]


def _concept(word: str) -> list[str]:
    """A word's concept; an unknown Chinese word with a particle in it ("交了", "报不报") stands for the
    concepts of its characters, any other unknown word ("眼科", "取消") for itself."""
    vocabulary = _vocabulary()
    concept_of, stop = vocabulary.concept_of, vocabulary.stop
    if word in stop or _NUMBER.match(word) or not (word[0].isalnum() or _CJK.match(word)):
        return []
    if word in concept_of:
        return [concept_of[word]]
    if word.isascii():
        for suffix in ("ing", "ed", "s"):
            stem = word.removesuffix(suffix)
            if stem != word and stem in concept_of:
                return [concept_of[stem]]
        return [word]
    if any(c in stop for c in word):
        return [concept_of[c] for c in word if c in concept_of]
    return [word]


def _plain(text: str) -> str:
    """A phrasing without case, spaces and punctuation, for exact lookups."""
    return "".join(c for c in normalise(text) if c.isalnum())


class _Field:
    """One BM25 field over every topic: term counts and lengths."""

    def __init__(self, docs: dict[str, list[str]]):
        self.counts = {tid: Counter(words) for tid, words in docs.items()}
        self.lengths = {tid: len(words) for tid, words in docs.items()}
        self.average = sum(self.lengths.values()) / max(1, len(docs))

    def score(self, tid: str, terms: Iterable[str], idf: dict[str, float]) -> float:
        counts, norm = self.counts[tid], K1 * (1 - B + B * self.lengths[tid] / self.average)
        return sum(idf[t] * counts[t] * (K1 + 1) / (counts[t] + norm) for t in terms if counts[t])


class Matcher:
    """BM25 over the topics; `weak` adds answer words (region names) that alone never make a question."""

    def __init__(self, topics: dict[str, Topic], weak: Iterable[str] = ()):
        self.topics = topics
        self.questions = _Field({tid: [c for qs in t.questions.values() for q in qs for c in concepts(q)]
                                 for tid, t in topics.items()})
        self.answers = _Field({tid: [c for a in t.answer.values() for c in concepts(a)]
                               for tid, t in topics.items()})
        seen: Counter[str] = Counter()  # document frequency over the questions: answers mention everything
        for tid in topics:
            seen.update(set(self.questions.counts[tid]))
        n = len(topics)
        self.idf = {term: math.log(1 + (n - k + 0.5) / (k + 0.5)) for term, k in seen.items()}
        for tid in topics:  # a word only answers use tells little about what was asked
            self.idf.update({t: UNKNOWN_WEIGHT for t in self.answers.counts[tid] if t not in self.idf})
        vocabulary = _vocabulary()
        self.weak = vocabulary.weak | {vocabulary.concept_of.get(normalise(w), normalise(w)) for w in weak}
        self.foreign = vocabulary.foreign
        self.places = {tid: {vocabulary.concept_of.get(r, r) for r in t.regions} for tid, t in topics.items()}
        self.exact = {_plain(q): t for t in topics.values() for qs in t.questions.values() for q in qs}

    def match(self, text: str) -> Match | None:
        """The topic the text asks about, or None when no topic fits well enough."""
        if _plain(text) in self.exact:  # one of the phrasings, as written
            return Match(self.exact[_plain(text)], math.inf, 1.0)
        terms = set(concepts(text))
        ranked = self._rank(terms)
        return ranked[0] if ranked and self._accepts(terms, ranked[0]) else None

    def rank(self, text: str) -> list[Match]:
        """Every topic that shares a word with the text, best first (for tests and tuning)."""
        return self._rank(set(concepts(text)))

    def _weight(self, term: str) -> float:
        if term in self.foreign:
            return FOREIGN_WEIGHT
        return self.idf.get(term, UNKNOWN_WEIGHT)

    def _rank(self, terms: set[str]) -> list[Match]:
        known = [t for t in terms if t in self.idf and t not in self.foreign]
        if not known:
            return []
        total = sum(self._weight(t) for t in terms)
        out = []
        for tid, topic in self.topics.items():
            score = self.questions.score(tid, known, self.idf) + \
                ANSWER_WEIGHT * self.answers.score(tid, known, self.idf)
            if score <= 0:
                continue
            if self.places[tid] and not self.places[tid] & terms:
                score *= ELSEWHERE  # a region's topic, asked without naming the region
            coverage = sum(self.idf[t] for t in known if self._has(tid, t)) / total
            out.append(Match(topic, score * (0.5 + coverage), coverage))
        return sorted(out, key=lambda m: -m.score)

    def _has(self, tid: str, term: str) -> bool:
        return bool(self.questions.counts[tid][term] or self.answers.counts[tid][term])

    def _accepts(self, terms: set[str], best: Match) -> bool:
        """Mostly about the topic, not only answer words, and more than one common word."""
        if best.coverage < COVERAGE or terms <= self.weak:
            return False
        shared = {t for t in terms if self._has(best.topic.id, t)}
        if len(shared) >= 2:
            return True
        strong = {t for t in shared - self.weak if self.questions.counts[best.topic.id][t]}
        specific = len(strong) == 1 and self.idf[next(iter(strong))] >= SINGLE_IDF
        return specific and (len(terms) == 1 or best.coverage >= SURE)
