"""Orders, discounts and totals."""

from decimal import ROUND_HALF_EVEN, Decimal


def apply_discount(total_cents: int, percent: float) -> int:
    if not 0 <= percent <= 100:
        raise ValueError("percent must be between 0 and 100")
    discounted = Decimal(total_cents) * (Decimal(100) - Decimal(str(percent))) / 100
    return int(discounted.quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def compute_total(lines: list[tuple[int, int]], shipping_cents: int = 0) -> int:
    subtotal = sum(quantity * price for quantity, price in lines)
    return subtotal + (0 if subtotal >= 5000 else shipping_cents)


def format_price(cents: int, currency: str = "EUR") -> str:
    return f"{cents // 100}.{cents % 100:02d} {currency}"


async def send_confirmation(mailer, order_id: str, email: str) -> bool:
    response = await mailer.send(to=email, subject=f"Order {order_id}", body="Thank you!")
    return response.status == "queued"


def _internal_audit(order_id: str) -> None:
    print(order_id)


def documented_already(order_id: str) -> str:
    """Already documented: discovery skips it."""
    return order_id.upper()
