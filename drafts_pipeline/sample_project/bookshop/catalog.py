"""Books and the catalogue that finds them."""

import re
from dataclasses import dataclass, field

ISBN_PATTERN = re.compile(r"^(97[89])?\d{9}[\dX]$")


@dataclass
class Book:
    isbn: str
    title: str
    author: str
    price_cents: int
    tags: set[str] = field(default_factory=set)


def normalize_isbn(raw: str) -> str:
    cleaned = raw.replace("-", "").replace(" ", "").upper()
    if not ISBN_PATTERN.match(cleaned):
        raise ValueError(f"not an ISBN: {raw!r}")
    return cleaned


class Catalog:
    """Books by ISBN."""

    def __init__(self) -> None:
        self._books: dict[str, Book] = {}

    def add_book(self, book: Book, *, replace: bool = False) -> None:
        isbn = normalize_isbn(book.isbn)
        if isbn in self._books and not replace:
            raise KeyError(f"{isbn} is already in the catalog")
        self._books[isbn] = book

    def find_by_author(self, author: str, limit: int | None = None) -> list[Book]:
        wanted = author.casefold()
        found = [b for b in self._books.values() if wanted in b.author.casefold()]
        found.sort(key=lambda b: b.title)
        return found if limit is None else found[:limit]

    def tagged(self, *tags: str):
        for book in self._books.values():
            if set(tags) <= book.tags:
                yield book
