"""Names of persons in a search text: "妈妈 在海边" searches the photos 妈妈 is in for 在海边 (a name means nothing to
Chinese-CLIP; it would only blur the sentence). A name matches as a whole word, or, with two characters or
more, anywhere in the text (Chinese has no spaces: 妈妈在海边); longer names first, so 小明明 is not taken for 小明."""

from __future__ import annotations

from dataclasses import dataclass

from operations.services import Services


@dataclass(frozen=True)
class NamedInText:
    text: str  # what is left for the text encoder ("" when the text was names only)
    people: tuple[tuple[int, str], ...] = ()  # (person id, name) found, in the order of the text


def extract(services: Services, collection: str, text: str) -> NamedInText:
    named = services.face_store.named(collection)
    if not named:
        return NamedInText(text)
    return split(text, named)


def split(text: str, named: dict[str, int]) -> NamedInText:
    words = set(text.split())
    found: list[tuple[int, int, str]] = []  # (position, person, name)
    rest = text
    for name in sorted(named, key=lambda n: (-len(n), n)):
        if name in words or (len(name) >= 2 and name in rest):
            position = text.find(name)
            if name in rest:
                found.append((position, named[name], name))
                rest = rest.replace(name, " ")
    rest = " ".join(rest.split())
    return NamedInText(rest, tuple((person, name) for _, person, name in sorted(found)))
