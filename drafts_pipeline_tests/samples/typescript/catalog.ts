import type { Book } from "./book";

export interface Finder {
  find(title: string): Book | undefined;
}

export function search(query: string, limit: number = 20, ...tags: string[]): Book[] {
  if (query.length === 0) {
    throw new RangeError("empty query");
  }
  return [];
}

export function overloaded(value: string): string;
export function overloaded(value: number): number;
export function overloaded(value: string | number): string | number {
  return value;
}

function local(value: string): string {
  return value;
}

export abstract class Catalog<T> {
  private cache = new Map<string, T>();

  constructor(private readonly name: string) {}

  public lookup(isbn: string, fallback?: T): T | undefined {
    return this.cache.get(isbn) ?? fallback;
  }

  protected refresh(): void {
    this.cache.clear();
  }

  private drop(): void {
    this.cache.clear();
  }

  @logged
  async reload(this: Catalog<T>, { force }: { force: boolean }): Promise<void> {
    await Promise.resolve(force);
  }

  abstract size(): number;
}
