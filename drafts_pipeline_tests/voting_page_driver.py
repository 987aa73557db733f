"""What the voting page's tests share: blind drafts to show, the page served on a free loopback
port, the CSRF token read off a page, and a record of every response for the name scan."""

import base64
import contextlib
import re
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import uvicorn
from sqlalchemy import select
from starlette.types import ASGIApp

from drafts_pipeline.drafting.validation import DocDraft, ParameterDoc, RaisesDoc, render_docstring
from drafts_pipeline.llm.providers import SHIPPED_PROVIDERS
from drafts_pipeline.store import DraftStore
from drafts_pipeline.store.models import DraftVersion
from drafts_pipeline.voting.page import SESSION_COOKIE

SUMMARIES = {
    "claude": "Add up the order lines and the shipping cost.",
    "openai": "Return the total price of an order.",
    "kimi": "Compute what the customer pays for an order.",
}


def blind_drafts() -> dict[str, str]:
    """provider -> a docstring for `make_task`'s `compute_total` that names no provider; each
    has its own summary, so a test can tell which one a page shows under which label."""
    return {
        provider: render_docstring(
            DocDraft(
                summary=summary,
                description="Lines are <b>summed</b> first.\nShipping comes last.",
                parameters=[
                    ParameterDoc(name="lines", description="The prices of the order's lines."),
                    ParameterDoc(name="shipping", description="The shipping cost: 0 when free."),
                ],
                returns="The order's total.",
                raises=[RaisesDoc(exception="TypeError", when="a line is not a number.")],
                example=">>> compute_total([2, 3], shipping=1)\n6",
            )
        )
        for provider, summary in SUMMARIES.items()
    }


def forbidden_names(store: DraftStore) -> set[str]:
    """Every provider, vendor and model name the page must never serve: those of the configured
    providers and those of every stored draft."""
    names = {name for spec in SHIPPED_PROVIDERS for name in (spec.name, spec.kind, spec.api)}
    names |= {spec.default_model for spec in SHIPPED_PROVIDERS}
    names |= {"anthropic", "moonshot", "chatgpt", "gpt-"}
    with store._session() as session:
        for provider, model in session.execute(select(DraftVersion.provider, DraftVersion.model)):
            names |= {provider, model}
    return {name.lower() for name in names}


def csrf_token(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found is not None, "the page has no form with a CSRF token"
    return found[1]


@dataclass
class ServedResponses:
    """Every response a test saw, as text to scan: its URL, status, headers, body, and the
    session cookie's payload decoded (it is only signed, so a client can read it)."""

    texts: list[str] = field(default_factory=list)

    def add(self, url: str, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        lines = [f"{url} {status}", *(f"{name}: {value}" for name, value in headers)]
        for name, value in headers:
            if name.lower() == "set-cookie" and value.startswith(f"{SESSION_COOKIE}="):
                payload = value.split("=", 1)[1].split(".", 1)[0]
                lines.append(base64.b64decode(payload + "==").decode())
        lines.append(body.decode("utf-8", errors="replace"))
        self.texts.append("\n".join(lines))

    def names_found(self, names: set[str]) -> list[str]:
        return sorted(
            f"{name!r} in {text.splitlines()[0]}"
            for text in self.texts
            for name in names
            if name in text.lower()
        )


@contextlib.contextmanager
def serving(app: ASGIApp) -> Iterator[str]:
    """`app` served by uvicorn on a free port of 127.0.0.1 in a thread; yields its base URL.
    The socket listens before the server starts, so early requests wait in its backlog."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, lifespan="off", log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join()
        listener.close()
