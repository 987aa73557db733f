/**
 * Shelves of books: an ES module, so only what it exports is public.
 */
import { normalizeIsbn } from "./isbn.js";

export function findBook(shelf, title, { exact = false } = {}) {
  const wanted = exact ? title : title.toLowerCase();
  return shelf.books.find((book) => book.title === wanted);
}

/** Already documented: not a task. */
export function documented(shelf) {
  return shelf.books.length;
}

export const countBooks = (shelf, ...tags) =>
  shelf.books.filter((book) => tags.every((tag) => book.tags.includes(tag))).length;

export function* eachTitle(shelf, limit = 10) {
  for (const book of shelf.books.slice(0, limit)) {
    yield book.title;
  }
}

export function restock(shelf) {
  function nested(book) {
    return normalizeIsbn(book.isbn);
  }
  shelf.books.forEach(nested);
}

function notExported(shelf) {
  return shelf;
}

export class Shelf {
  constructor(name) {
    this.name = name;
    this.books = [];
  }

  add(book, position = 0) {
    if (!book) {
      throw new TypeError("no book");
    }
    this.books.splice(position, 0, book);
  }

  #secret() {
    return this.books;
  }

  _internal() {
    return notExported(this);
  }

  get size() {
    return this.books.length;
  }

  set size(value) {
    this.books.length = value;
  }

  static fromTitles(...titles) {
    return new Shelf(titles.join(", "));
  }

  /** Already documented: not a task. */
  clear() {
    this.books = [];
  }
}
