"""The voting page: one task in `voting` at a time, its drafts side by side under their blind
labels in an order shuffled per voter, and a vote in one click or one key press.

Everything is a plain form, so the page works with JavaScript off; the one script adds keys.
Nothing it serves can name a provider or a model: it reads tasks through
`DraftStore.voting_task_for`, which gives labels and text only, and never shows a task one of
whose drafts names a provider or model (the blindness rule of the voting-ready set).
"""

import hashlib
import ipaddress
import random
import secrets
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, MutableHeaders
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from drafts_pipeline.drafting.blindness import blindness_leaks
from drafts_pipeline.errors import StoreUnavailable, VotesRejected
from drafts_pipeline.llm.provider_file import configured_providers, leak_names
from drafts_pipeline.store import DraftStore
from drafts_pipeline.store.models import Vote, column_length
from drafts_pipeline.store.vote_results import VotingTask
from drafts_pipeline.store.votes import VoteInput
from drafts_pipeline.voting.docstrings import DocstringSections, docstring_sections

HERE = Path(__file__).parent
SESSION_COOKIE = "drafts_voting"
SESSION_MAX_AGE_S = 30 * 24 * 3600
CSRF_FIELD = "csrf_token"
AGAIN = "again"
"""The session key of a task to show again: a vote on it was refused as it had been reopened."""
KEYED_POSITIONS = 9
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cache-Control": "no-store",
}
REFUSED_WITHOUT_TOKEN = (
    "This form did not carry the voting page's security token (CSRF token), so it may not "
    "have come from the voting page. Nothing was recorded. Open the voting page again and "
    "vote from there."
)


def display_order(voter: str, task_id: str, labels: Iterable[str]) -> tuple[str, ...]:
    """The order in which `voter` sees a task's labels: a shuffle seeded by voter and task
    only, so that a reload shows the same order, the server recomputes it when the vote comes
    back instead of trusting the form, and positions spread evenly over voters."""
    order = sorted(labels)
    random.Random(hashlib.sha256(f"{voter}\0{task_id}".encode()).digest()).shuffle(order)
    return tuple(order)


def voter_name_problem(name: str) -> str | None:
    """Why `name` cannot be a voter's name; None when it can."""
    longest = column_length(Vote, "voter")
    if not name:
        return "Enter a name: it goes with your votes, so that no task is shown to you twice."
    if len(name) > longest:
        return f"That name is {len(name)} characters long; use at most {longest}."
    if not name.isprintable():
        return "Use a name without line breaks or other control characters."
    return None


@dataclass(frozen=True)
class ShownDraft:
    """A labelled draft at its place on one voter's page (positions from 1)."""

    position: int
    label: str
    content: str
    sections: DocstringSections

    @property
    def key(self) -> str | None:
        return str(self.position) if self.position <= KEYED_POSITIONS else None


def shown_drafts(voter: str, task: VotingTask) -> list[ShownDraft]:
    by_label = {draft.label: draft.content for draft in task.drafts}
    return [
        ShownDraft(position, label, by_label[label], docstring_sections(by_label[label]))
        for position, label in enumerate(display_order(voter, task.task_id, by_label), start=1)
    ]


class SecurityHeaders:
    """Adds `SECURITY_HEADERS` to every HTTP response: no referrer leaves the page, only its
    own script and style files run, nothing is cached, no other site frames it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)


class VotingPage:
    """The page's routes over one store."""

    def __init__(self, store: DraftStore) -> None:
        self.store = store
        environment = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
        self.templates = Jinja2Templates(env=environment)
        # (Task id, ballot) -> whether one of its drafts names a provider or model. A ballot's
        # labelled drafts never change, so a verdict holds for the life of the process; a task
        # reopened or regenerated is judged again on its new ballot.
        self.leaking: dict[tuple[str, int], bool] = {}

    def routes(self) -> list[Route | Mount]:
        return [
            Route("/", self.home, methods=["GET"]),
            Route("/name", self.enter_name, methods=["POST"]),
            Route("/leave", self.leave, methods=["POST"]),
            Route("/vote", self.vote, methods=["POST"]),
            Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
        ]

    def render(
        self, request: Request, template: str, status_code: int = 200, **context: Any
    ) -> Response:
        context.setdefault("voter", request.session.get("voter"))
        context.setdefault("notice", request.session.pop("notice", None))
        context[CSRF_FIELD] = _csrf_token(request)
        return self.templates.TemplateResponse(request, template, context, status_code=status_code)

    async def home(self, request: Request) -> Response:
        voter = request.session.get("voter")
        if not voter:
            return self.render(request, "name.html")
        again = request.session.pop(AGAIN, None)
        task = await run_in_threadpool(self.next_task, voter, again)
        if task is None:
            return self.render(request, "done.html")
        return self.render(request, "task.html", task=task, drafts=shown_drafts(voter, task))

    async def enter_name(self, request: Request) -> Response:
        form = await request.form(max_files=0, max_fields=4)
        if not _csrf_ok(request, form):
            return self.refused(request)
        name = str(form.get("voter", "")).strip()
        problem = voter_name_problem(name)
        if problem is not None:
            return self.render(request, "name.html", 400, problem=problem, entered=name)
        request.session["voter"] = name
        return RedirectResponse("/", status_code=303)

    async def leave(self, request: Request) -> Response:
        form = await request.form(max_files=0, max_fields=4)
        if not _csrf_ok(request, form):
            return self.refused(request)
        request.session.pop("voter", None)
        return RedirectResponse("/", status_code=303)

    async def vote(self, request: Request) -> Response:
        form = await request.form(max_files=0, max_fields=5)
        if not _csrf_ok(request, form):
            return self.refused(request)
        voter = request.session.get("voter")
        if not voter:
            request.session["notice"] = "Enter your name first; your vote was not recorded."
            return RedirectResponse("/", status_code=303)
        task_id, choice = str(form.get("task_id", "")), str(form.get("choice", ""))
        shown = str(form.get("ballot", "")).strip()
        if shown and not shown.isdecimal():
            request.session["notice"] = (
                f"Your vote was not recorded: the form's ballot {shown!r} is not a number."
            )
            return RedirectResponse("/", status_code=303)
        notice, again = await run_in_threadpool(
            self.record_vote, voter, task_id, choice, int(shown) if shown else None
        )
        request.session["notice"] = notice
        if again:
            request.session[AGAIN] = task_id
        return RedirectResponse("/", status_code=303)

    def refused(self, request: Request) -> Response:
        return self.render(
            request, "message.html", 403, title="Refused", message=REFUSED_WITHOUT_TOKEN
        )

    async def store_unavailable(self, request: Request, error: Exception) -> Response:
        return self.render(
            request,
            "message.html",
            503,
            title="The votes cannot be reached",
            message="The draft store is out of reach just now. Try again in a minute.",
        )

    def next_task(self, voter: str, again: str | None = None) -> VotingTask | None:
        """The task `voter` should see next, leaving out every task with a draft whose text
        names a provider or model. `again`: a task whose vote was refused because it was
        reopened, shown first on its current ballot while it is in `voting`."""
        if again is not None:
            task = self.store.voting_task(again)
            if task is not None and not self.leaks(task):
                return task
        while True:
            skip = [key for key, leaks in self.leaking.items() if leaks]
            task = self.store.voting_task_for(voter, skip=skip)
            if task is None or not self.leaks(task):
                return task

    def leaks(self, task: VotingTask) -> bool:
        """Whether one of the task's drafts names a provider or model (its verdict kept)."""
        key = (task.task_id, task.ballot)
        if key not in self.leaking:
            models = frozenset(self.store.draft_models() | leak_names(configured_providers()))
            self.leaking[key] = any(
                blindness_leaks(draft.content, task.code, models) for draft in task.drafts
            )
        return self.leaking[key]

    def record_vote(
        self, voter: str, task_id: str, choice: str, ballot: int | None = None
    ) -> tuple[str, bool]:
        """Record one vote on `ballot`, the one the page showed (None: a form from before
        ballots, the current one), its display order recomputed here. Returns what to tell
        the voter, and whether to show the task again: it was reopened and is on another
        ballot now. A task the page never shows (a draft names its author) takes no vote
        from it either."""
        task = self.store.voting_task(task_id)
        if task is not None and self.leaks(task):
            return f"Your vote was not recorded: task {task_id!r} is not open to votes here.", False
        if task is not None and ballot is not None and ballot != task.ballot:
            return _reopened(task), True
        labels = [draft.label for draft in task.drafts] if task is not None else []
        order = display_order(voter, task_id, labels)
        vote = VoteInput(
            uuid.uuid4().hex, task_id, voter, choice, display_order=order or None, ballot=ballot
        )
        try:
            self.store.record_votes([vote])
        except VotesRejected as rejected:
            now = self.store.voting_task(task_id)
            if now is not None and ballot is not None and ballot != now.ballot:
                return _reopened(now), True  # reopened while this vote was on its way
            reasons = "; ".join(reason for _, reason in rejected.problems)
            return f"Your vote was not recorded: {reasons}.", False
        return "Your vote was recorded.", False


def _reopened(task: VotingTask) -> str:
    return (
        f"Your vote was not recorded: task {task.task_id!r} was reopened after it was shown to "
        f"you, and its drafts are now those of ballot {task.ballot}. Here they are."
    )


def _csrf_token(request: Request) -> str:
    """The session's CSRF token, made on its first page."""
    token = request.session.get(CSRF_FIELD)
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        request.session[CSRF_FIELD] = token
    return token


def _csrf_ok(request: Request, form: FormData) -> bool:
    expected, sent = request.session.get(CSRF_FIELD), form.get(CSRF_FIELD)
    return (
        isinstance(expected, str)
        and isinstance(sent, str)
        and secrets.compare_digest(expected.encode(), sent.encode())
    )


def is_loopback(host: str) -> bool:
    """Whether serving on `host` keeps the page to this machine."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def loopback_hosts(host: str) -> list[str] | None:
    """The `Host` names a page served on `host` answers to: this machine's names when `host` is
    loopback (a web page elsewhere that rebinds its own name to 127.0.0.1 is refused); None,
    any name, otherwise."""
    if not is_loopback(host):
        return None
    bare = host.strip("[]").lower()
    own = f"[{bare}]" if ":" in bare else bare
    return sorted({"localhost", "127.0.0.1", "[::1]", own})


def voting_app(
    store: DraftStore,
    *,
    secret: str | None = None,
    allowed_hosts: Sequence[str] | None = None,
) -> Starlette:
    """The voting page over `store`. `secret` signs the session cookie (the voter's name and
    CSRF token); without one, a random key lives as long as the app. `allowed_hosts`: the only
    `Host` headers answered (a guard against DNS rebinding on loopback); None answers any."""
    page = VotingPage(store)
    middleware = [
        Middleware(SecurityHeaders),
        Middleware(
            SessionMiddleware,
            secret_key=secret or secrets.token_urlsafe(32),
            session_cookie=SESSION_COOKIE,
            max_age=SESSION_MAX_AGE_S,
            same_site="lax",
        ),
    ]
    if allowed_hosts is not None:
        middleware.insert(0, Middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts)))
    return Starlette(
        routes=page.routes(),
        middleware=middleware,
        exception_handlers={StoreUnavailable: page.store_unavailable},
    )
