"""A source as a person can check it: the document's title, 文号, issuing body, effective date and link;
for anything that is not an identified official document (a web article, a repost of unknown origin),
its title and "网络文章，未经核实".

A source is an official document when the policy file names its issuer or its 文号 (`issuer`,
`doc_no`); its `file` (where maintainers keep a copy) is never shown.
"""

from __future__ import annotations

from rules.case import Source

WORDS = {
    "zh": {"sep": " · ", "issuers": "、", "effective": "{date} 起施行", "web": "网络文章，未经核实",
           "doc_no": "{title}（{doc_no}）"},
    "en": {"sep": " · ", "issuers": ", ", "effective": "in force from {date}", "web": "web article, not verified",
           "doc_no": "{title} ({doc_no})"},
}


def is_document(source: Source) -> bool:
    """Whether the source is an official document one can look up (by issuer and 文号)."""
    return bool(source.issuer or source.doc_no)


def cite(source: Source, lang: str) -> str:
    """One line: 深圳市医疗保障办法（深圳市人民政府令第358号） · 深圳市人民政府 · 2023-10-01 起施行 · https://…"""
    words = WORDS["en" if lang == "en" else "zh"]
    title = words["doc_no"].format(title=source.title, doc_no=source.doc_no) if source.doc_no else source.title
    parts = [title]
    if source.issuer:
        parts.append(words["issuers"].join(source.issuer))
    if source.effective:
        parts.append(words["effective"].format(date=source.effective.isoformat()))
    if source.url:
        parts.append(source.url)
    if not is_document(source):
        parts.append(words["web"])
    return words["sep"].join(parts)
