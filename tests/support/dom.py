"""A small DOM of an HTML page (ours as rendered, or Chromium's --dump-dom) to find elements and read
their text as a person sees it: SVG `<title>`s are tooltips, so they are left out unless asked for."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser

VOID = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}
)


@dataclass(eq=False)
class Element:
    """One element: its tag, attributes and children (elements and text, in order)."""

    tag: str
    attrs: dict[str, str]
    children: list[Element | str] = field(default_factory=list)

    def iter(self) -> Iterator[Element]:
        """This element and every element under it, in document order."""
        yield self
        for child in self.children:
            if isinstance(child, Element):
                yield from child.iter()

    def find_all(
        self, tag: str | None = None, *, cls: str | None = None, id: str | None = None
    ) -> list[Element]:
        """The elements under this one (itself included) with this tag, class and id."""
        return [
            el
            for el in self.iter()
            if (tag is None or el.tag == tag)
            and (cls is None or cls in el.classes)
            and (id is None or el.attrs.get("id") == id)
        ]

    def find(self, tag: str | None = None, *, cls: str | None = None, id: str | None = None) -> Element:
        """The first such element; AssertionError when there is none."""
        found = self.find_all(tag, cls=cls, id=id)
        assert found, f"no <{tag or '*'}> with class {cls!r} and id {id!r}"
        return found[0]

    @property
    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())

    def text(self, *, titles: bool = False) -> str:
        """The text under this element, whitespace collapsed; SVG titles only when asked for."""
        parts: list[str] = []

        def walk(el: Element) -> None:
            for child in el.children:
                if isinstance(child, str):
                    parts.append(child)
                elif titles or child.tag != "title":
                    walk(child)

        walk(self)
        return re.sub(r"\s+", " ", "".join(parts)).strip()

    def cells(self) -> list[list[str]]:
        """A table's body rows as the text of their cells."""
        return [
            [td.text() for td in tr.find_all("td")]
            for body in self.find_all("tbody")
            for tr in body.find_all("tr")
        ]


class _Builder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Element("#document", {})
        self._stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {name: value or "" for name, value in attrs})
        self._stack[-1].children.append(element)
        if tag not in VOID:
            self._stack.append(element)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._stack[-1].children.append(Element(tag, {name: value or "" for name, value in attrs}))

    def handle_endtag(self, tag: str) -> None:
        for depth in range(len(self._stack) - 1, 0, -1):
            if self._stack[depth].tag == tag:
                del self._stack[depth:]
                return

    def handle_data(self, data: str) -> None:
        self._stack[-1].children.append(data)


def parse(page: str | bytes) -> Element:
    """The document of a page."""
    builder = _Builder()
    builder.feed(page.decode() if isinstance(page, bytes) else page)
    builder.close()
    return builder.root
