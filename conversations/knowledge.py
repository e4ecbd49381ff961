"""The knowledge base: answers to the questions people ask in chat, as data.

One YAML file a topic in `knowledge/topics/` (the question in its common phrasings in Chinese and
English, a short answer in both, the documents it rests on and how far it is confirmed, the regions it
is about) and one registry of those documents, `knowledge/sources.yaml`, so that a notice cited by ten
answers is written once. Files are validated when loaded: a problem is reported with its file, line and
field, all problems at once, never as a traceback.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import yaml

from conversations.texts import LANGUAGES

FOLDER = Path(__file__).parent / "knowledge"
CONFIDENCE = ("confirmed", "secondary", "seed-only")
ID_RE = re.compile(r"^[a-z][a-z0-9_]*$")
MAX_ANSWER = 1200  # characters: an answer and its sources fit one Telegram message (4096) with room
INTERNAL = re.compile(r"policy-facts|seeds/|\.md\b|\.txt\b|\.ya?ml\b")  # never shown to people
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True, slots=True)
class Document:
    """A document as a person can look it up: title, who issued it, when, and where if known."""

    id: str
    title: str
    issuer: str
    date: str
    url: str


@dataclass(frozen=True, slots=True)
class Topic:
    id: str
    questions: dict[str, tuple[str, ...]]
    answer: dict[str, str]
    sources: tuple[Document, ...]
    confidence: str
    regions: tuple[str, ...]  # empty: everywhere


@dataclass(frozen=True, slots=True)
class KnowledgeError:
    file: str
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.field}: {self.message}"


class KnowledgeErrors(Exception):
    """Every problem of the knowledge folder, raised once."""

    def __init__(self, errors: list[KnowledgeError]):
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors))


class _File:
    """One file's top-level mapping as nodes, so each field's line is known."""

    def __init__(self, path: Path, errors: list[KnowledgeError]):
        self.name = path.name
        self.errors = errors
        self.fields: dict[str, tuple[int, object]] = {}
        try:
            root = yaml.compose(path.read_text(encoding="utf-8"), Loader=LOADER)
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as bad:
            mark = getattr(bad, "problem_mark", None)
            self.fail(mark.line + 1 if mark else 1, "", f"not readable YAML ({type(bad).__name__})")
            return
        if not isinstance(root, yaml.MappingNode):
            self.fail(root.start_mark.line + 1 if root else 1, "", "expected a mapping")
            return
        for key, value in root.value:
            self.fields[key.value] = (value.start_mark.line + 1, yaml.load(yaml.serialize(value), Loader=LOADER))

    def fail(self, line: int, field: str, message: str) -> None:
        self.errors.append(KnowledgeError(self.name, line, field, message))

    def get(self, field: str, kind: type, *, required: bool = True) -> object:
        if field not in self.fields:
            if required:
                self.fail(1, field, "missing")
            return None
        line, value = self.fields[field]
        if not isinstance(value, kind):
            self.fail(line, field, f"expected {kind.__name__}")
            return None
        return value

    def line(self, field: str) -> int:
        return self.fields.get(field, (1, None))[0]


def _texts(file: _File, field: str, *, many: bool) -> dict | None:
    """A {zh: …, en: …} field: a string each (many=False) or a list of strings each."""
    value = file.get(field, dict)
    if value is None:
        return None
    out = {}
    for lang in LANGUAGES:
        item = value.get(lang)
        ok = (isinstance(item, list) and item and all(isinstance(s, str) and s.strip() for s in item)) if many \
            else (isinstance(item, str) and item.strip())
        if not ok:
            file.fail(file.line(field), f"{field}.{lang}", "expected a non-empty list of texts" if many
                      else "expected a non-empty text")
            continue
        out[lang] = tuple(s.strip() for s in item) if many else item.strip()
        if not many and len(item) > MAX_ANSWER:
            file.fail(file.line(field), f"{field}.{lang}", f"longer than {MAX_ANSWER} characters")
        if not many and INTERNAL.search(item):
            file.fail(file.line(field), f"{field}.{lang}", "names an internal file: cite the document itself")
    return out if len(out) == len(LANGUAGES) else None


def _documents(path: Path, errors: list[KnowledgeError]) -> dict[str, Document]:
    file = _File(path, errors)
    documents = {}
    for doc_id, (line, value) in file.fields.items():
        if not ID_RE.match(doc_id.replace("-", "_")) or not isinstance(value, dict):
            file.fail(line, doc_id, "expected an id with a mapping of title, issuer, date, url")
            continue
        fields = {k: value.get(k, "") for k in ("title", "issuer", "date", "url")}
        if not all(isinstance(v, str) for v in fields.values()) or not fields["title"] or not fields["date"]:
            file.fail(line, doc_id, "title and date are required texts; issuer and url are texts")
            continue
        if INTERNAL.search(fields["title"]):
            file.fail(line, f"{doc_id}.title", "names an internal file: cite the document itself")
        documents[doc_id] = Document(doc_id, **fields)
    return documents


def _topic(path: Path, documents: dict[str, Document], errors: list[KnowledgeError]) -> Topic | None:
    file = _File(path, errors)
    before = len(errors)
    if not file.fields:
        return None
    topic_id = file.get("id", str)
    if topic_id is not None and (topic_id != path.stem or not ID_RE.match(topic_id)):
        file.fail(file.line("id"), "id", f"must be the file's name ({path.stem})")
    questions = _texts(file, "questions", many=True)
    answer = _texts(file, "answer", many=False)
    confidence = file.get("confidence", str)
    if confidence is not None and confidence not in CONFIDENCE:
        file.fail(file.line("confidence"), "confidence", f"one of {', '.join(CONFIDENCE)}")
    cited = file.get("sources", list) or []
    for ref in cited:
        if ref not in documents:
            file.fail(file.line("sources"), "sources", f"unknown document {ref!r} (see sources.yaml)")
    if "sources" in file.fields and not cited:
        file.fail(file.line("sources"), "sources", "at least one document")
    regions = file.get("regions", list, required=False) or []
    if not all(isinstance(r, str) for r in regions):
        file.fail(file.line("regions"), "regions", "expected a list of region ids")
    unknown = set(file.fields) - {"id", "questions", "answer", "sources", "confidence", "regions"}
    for name in sorted(unknown):
        file.fail(file.line(name), name, "unknown field")
    if len(errors) > before or questions is None or answer is None:
        return None
    return Topic(str(topic_id), questions, answer, tuple(documents[r] for r in cited), str(confidence),
                 tuple(regions))


def load_knowledge(folder: Path = FOLDER) -> dict[str, Topic]:
    """Every topic of the folder by id; `KnowledgeErrors` with all problems if any file is wrong."""
    errors: list[KnowledgeError] = []
    documents = _documents(folder / "sources.yaml", errors)
    topics = {}
    for path in sorted((folder / "topics").glob("*.yaml")):
        topic = _topic(path, documents, errors)
        if topic:
            topics[topic.id] = topic
    if not topics and not errors:
        errors.append(KnowledgeError("topics", 1, "", "no topic files"))
    if errors:
        raise KnowledgeErrors(errors)
    return topics


@cache
def knowledge() -> dict[str, Topic]:
    """The shipped knowledge base, loaded once a process."""
    return load_knowledge()
