/**
 * Stock levels for the bookshop's web front end: the demo's JavaScript module.
 */

export function restockLevel(onHand, weeklySales, leadWeeks = 2) {
  if (weeklySales < 0) {
    throw new RangeError("weekly sales cannot be negative");
  }
  return Math.max(0, weeklySales * leadWeeks - onHand);
}

export const lowStock = (stock, threshold = 3, ...ignored) =>
  Object.entries(stock)
    .filter(([isbn, count]) => count <= threshold && !ignored.includes(isbn))
    .map(([isbn]) => isbn);

/** Already documented: discovery skips it. */
export function totalCopies(stock) {
  return Object.values(stock).reduce((sum, count) => sum + count, 0);
}

function wholeCopies(value) {
  return Math.max(1, Math.ceil(value));
}

export class Reservations {
  constructor() {
    this.byCustomer = new Map();
  }

  reserve(customer, isbn, copies = 1) {
    const held = this.byCustomer.get(customer) ?? [];
    held.push({ isbn, copies: wholeCopies(copies) });
    this.byCustomer.set(customer, held);
    return held.length;
  }

  release(customer) {
    this.byCustomer.delete(customer);
  }
}
