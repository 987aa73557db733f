"""The voting page: one task at a time under blind labels in a per-voter order, votes stored with
that order, CSRF tokens on every POST, and nothing served that names a provider or model.

Most tests drive the app through Starlette's TestClient; one votes in Debian's Chromium."""

import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import pytest
import uvicorn
from click.testing import CliRunner
from sqlalchemy import select, update
from starlette.testclient import TestClient

from drafts_pipeline.cli import main
from drafts_pipeline.drafting.validation import DocDraft, ParameterDoc, RaisesDoc, render_docstring
from drafts_pipeline.errors import ConfigurationError, StoreUnavailable
from drafts_pipeline.store import DraftStore
from drafts_pipeline.store.models import DocumentationTask, Vote
from drafts_pipeline.voting.docstrings import Entry, docstring_sections
from drafts_pipeline.voting.page import (
    SECURITY_HEADERS,
    display_order,
    is_loopback,
    loopback_hosts,
    voting_app,
)
from drafts_pipeline_tests.factories import in_voting, reopened_in_voting
from drafts_pipeline_tests.voting_page_driver import (
    SUMMARIES,
    ServedResponses,
    blind_drafts,
    csrf_token,
    forbidden_names,
    serving,
)

CHROMIUM = Path("/usr/bin/chromium")


def voting_task(store: DraftStore, task_id: str, seed: int = 0) -> dict[str, str]:
    """A task in voting whose drafts name nobody; returns label -> provider."""
    return in_voting(store, task_id, seed=seed, contents=blind_drafts())


def stored_votes(store: DraftStore, voter: str) -> dict[str, Vote]:
    """task id -> `voter`'s current vote, as the table holds it (labels)."""
    with store._session() as session:
        rows = session.scalars(select(Vote).where(Vote.voter == voter, Vote.replaced_at.is_(None)))
        return {row.task_id: row for row in rows}


def shown_labels(html: str) -> list[str]:
    return re.findall(r'<article class="draft" data-label="([A-Z])"', html)


def shown_task(html: str) -> str:
    found = re.search(r'name="task_id" value="([^"]+)"', html)
    assert found is not None, "the page shows no task"
    return found[1]


def shown_ballot(html: str) -> str:
    found = re.search(r'name="ballot" value="([^"]+)"', html)
    assert found is not None, "the page's form carries no ballot"
    return found[1]


def signed_in(client: TestClient, voter: str) -> str:
    """Enter `voter`'s name; returns the page that follows."""
    token = csrf_token(client.get("/").text)
    response = client.post("/name", data={"csrf_token": token, "voter": voter})
    assert response.status_code == 200, response.text
    return response.text


@pytest.fixture
def client(store: DraftStore) -> Iterator[TestClient]:
    with TestClient(voting_app(store)) as test_client:
        yield test_client


# Pure parts -------------------------------------------------------------------------------


def test_display_order_is_stable_per_voter_and_task_and_spread_over_voters() -> None:
    labels = ["C", "A", "B"]
    order = display_order("ann", "t.one", labels)
    assert sorted(order) == ["A", "B", "C"]
    assert display_order("ann", "t.one", reversed(labels)) == order
    orders = {display_order(f"voter {n}", "t.one", labels) for n in range(60)}
    assert len(orders) == 6, "every order of three labels appears over sixty voters"
    per_task = {display_order("ann", f"t.{n}", labels) for n in range(60)}
    assert len(per_task) == 6


def test_docstring_sections_read_back_what_drafting_wrote() -> None:
    draft = DocDraft(
        summary="Sum the order lines.",
        description="Lines are summed in order.\n\nShipping: added last.",
        parameters=[
            ParameterDoc(name="lines", description="Prices.\nEach one a Decimal: not a float."),
            ParameterDoc(name="*extra", description="More lines."),
        ],
        returns="The total.\nNever negative.",
        raises=[RaisesDoc(exception="shop.PriceError", when="a price is missing.")],
        example=">>> compute_total([1, 2])\n3\n\n>>> compute_total([])\n0",
    )
    sections = docstring_sections(render_docstring(draft))
    assert sections.summary == "Sum the order lines."
    assert sections.description == ("Lines are summed in order.", "Shipping: added last.")
    assert sections.parameters == (
        Entry("lines", "Prices.\nEach one a Decimal: not a float."),
        Entry("*extra", "More lines."),
    )
    assert sections.returns == "The total.\nNever negative."
    assert sections.raises == (Entry("shop.PriceError", "a price is missing."),)
    assert sections.example == ">>> compute_total([1, 2])\n3\n\n>>> compute_total([])\n0"


def test_docstring_sections_of_text_without_sections() -> None:
    sections = docstring_sections("Sum the lines\nof an order.\n\nA second paragraph.")
    assert sections.summary == "Sum the lines of an order."
    assert sections.description == ("A second paragraph.",)
    assert (sections.parameters, sections.returns, sections.raises, sections.example) == (
        (),
        "",
        (),
        "",
    )


def test_loopback_hosts() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.4")
    assert not is_loopback("voting.example")
    assert loopback_hosts("127.0.0.1") == ["127.0.0.1", "[::1]", "localhost"]
    assert loopback_hosts("127.0.0.2") == ["127.0.0.1", "127.0.0.2", "[::1]", "localhost"]
    assert loopback_hosts("0.0.0.0") is None


# The app through TestClient ---------------------------------------------------------------


def test_a_voter_gives_a_name_and_sees_the_task_with_fewest_votes(
    store: DraftStore, client: TestClient
) -> None:
    voting_task(store, "t.one", seed=1)
    labels = voting_task(store, "t.two", seed=2)
    first = client.get("/")
    assert 'name="voter"' in first.text and "task_id" not in first.text
    other = TestClient(voting_app(store))
    signed_in(other, "bob")
    token = csrf_token(other.get("/").text)
    other.post("/vote", data={"csrf_token": token, "task_id": "t.one", "choice": "A"})
    assert list(stored_votes(store, "bob")) == ["t.one"]

    page = signed_in(client, "ann")
    assert shown_task(page) == "t.two", "t.one has a vote already"
    assert "Voting as <strong>ann</strong>" in page
    order = display_order("ann", "t.two", labels)
    assert shown_labels(page) == list(order)
    for label, provider in labels.items():
        article = page.split(f'data-label="{label}"', 1)[1].split("</article>", 1)[0]
        assert SUMMARIES[provider] in article
        assert "<dt><code>lines</code></dt>" in article and "<h3>Example</h3>" in article
        assert "Lines are &lt;b&gt;summed&lt;/b&gt; first." in article
    for position, label in enumerate(order, start=1):
        assert re.search(rf'value="{label}" class="pick"\s+data-key="{position}"', page)
    assert client.get("/").text == page, "a reload shows the same task in the same order"


def test_a_vote_is_stored_with_the_order_the_server_showed(
    store: DraftStore, client: TestClient
) -> None:
    labels = voting_task(store, "t.one")
    page = signed_in(client, "ann")
    order = shown_labels(page)
    response = client.post(
        "/vote",
        data={
            "csrf_token": csrf_token(page),
            "task_id": "t.one",
            "choice": order[2],
            "display_order": "A,B,C",
        },
    )
    assert "Your vote was recorded." in response.text
    assert "No task is waiting for your vote" in response.text
    vote = stored_votes(store, "ann")["t.one"]
    assert vote.choice == order[2] and vote.kind == "winner"
    assert vote.display_order == order == list(display_order("ann", "t.one", labels))
    assert uuid.UUID(vote.vote_id)
    [outcome] = store.vote_outcomes()
    assert outcome.display_order == tuple(labels[label] for label in order)


@pytest.mark.parametrize("choice", ["tie", "all_bad"])
def test_a_tie_or_all_bad(store: DraftStore, client: TestClient, choice: str) -> None:
    voting_task(store, "t.one")
    page = signed_in(client, "ann")
    client.post(
        "/vote", data={"csrf_token": csrf_token(page), "task_id": "t.one", "choice": choice}
    )
    assert stored_votes(store, "ann")["t.one"].kind == choice


def test_every_post_without_the_right_csrf_token_is_refused(
    store: DraftStore, client: TestClient
) -> None:
    voting_task(store, "t.one")
    page = signed_in(client, "ann")
    token = csrf_token(page)
    stranger = TestClient(voting_app(store))
    foreign_token = csrf_token(stranger.get("/").text)
    for path, fields in [
        ("/vote", {"task_id": "t.one", "choice": "A"}),
        ("/name", {"voter": "mallory"}),
        ("/leave", {}),
    ]:
        for sent in ({}, {"csrf_token": ""}, {"csrf_token": foreign_token}):
            response = client.post(path, data={**fields, **sent})
            assert response.status_code == 403, (path, sent)
            assert "security token (CSRF token)" in response.text
            assert "Nothing was recorded" in response.text
    assert store.vote_outcomes() == []
    assert "Voting as <strong>ann</strong>" in client.get("/").text
    assert client.post("/leave", data={"csrf_token": token}).status_code == 200
    assert 'name="voter"' in client.get("/").text


def test_a_session_without_a_name_cannot_vote(store: DraftStore, client: TestClient) -> None:
    voting_task(store, "t.one")
    token = csrf_token(client.get("/").text)
    response = client.post("/vote", data={"csrf_token": token, "task_id": "t.one", "choice": "A"})
    assert "Enter your name first; your vote was not recorded." in response.text
    assert store.vote_outcomes() == []


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("   ", "Enter a name"),
        ("x" * 129, "That name is 129 characters long; use at most 128."),
        ("ann\x07", "without line breaks or other control characters"),
    ],
)
def test_the_name_form_refuses_unusable_names(
    store: DraftStore, client: TestClient, name: str, problem: str
) -> None:
    token = csrf_token(client.get("/").text)
    response = client.post("/name", data={"csrf_token": token, "voter": name})
    assert response.status_code == 400
    assert problem in response.text
    assert "Voting as" not in client.get("/").text


def test_a_rejected_vote_shows_the_reason_and_the_next_task(
    store: DraftStore, client: TestClient
) -> None:
    voting_task(store, "t.one", seed=1)
    voting_task(store, "t.two", seed=2)
    page = signed_in(client, "ann")
    assert shown_task(page) == "t.one"
    with store._session() as session, session.begin():
        session.execute(
            update(DocumentationTask).where(DocumentationTask.id == "t.one").values(status="failed")
        )
    token = csrf_token(page)
    response = client.post("/vote", data={"csrf_token": token, "task_id": "t.one", "choice": "A"})
    assert (
        "Your vote was not recorded: task &#39;t.one&#39; is in failed, not voting: "
        "it takes no votes." in response.text
    )
    assert shown_task(response.text) == "t.two"
    response = client.post("/vote", data={"csrf_token": token, "task_id": "t.two", "choice": "D"})
    assert "label(s) D not on the ballot (it has A, B, C)" in response.text
    assert shown_task(response.text) == "t.two"
    assert store.vote_outcomes() == []


def test_a_vote_on_a_ballot_reopened_since_it_was_shown_is_refused(
    store: DraftStore, client: TestClient
) -> None:
    voting_task(store, "t.one", seed=1)
    voting_task(store, "t.two", seed=2)
    page = signed_in(client, "ann")
    assert (shown_task(page), shown_ballot(page)) == ("t.one", "1")
    # Reopened and balloted again while ann looks at ballot 1: its labels are other drafts now.
    reopened_in_voting(store, "t.one", seed=5, contents=blind_drafts())
    vote = {"csrf_token": csrf_token(page), "task_id": "t.one", "ballot": "1", "choice": "A"}
    response = client.post("/vote", data=vote)
    assert (
        "Your vote was not recorded: task &#39;t.one&#39; was reopened after it was shown to "
        "you, and its drafts are now those of ballot 2. Here they are." in response.text
    )
    assert store.vote_outcomes() == []
    # The page shows that task again, on its current ballot, rather than the next one.
    assert (shown_task(response.text), shown_ballot(response.text)) == ("t.one", "2")
    response = client.post("/vote", data={**vote, "ballot": "2"})
    assert "Your vote was recorded." in response.text
    assert [(o.task_id, o.ballot) for o in store.vote_outcomes()] == [("t.one", 2)]
    # A form with no ballot (a page served before the field) votes on the current one; a
    # ballot that is no number is refused.
    response = client.post("/vote", data={**vote, "task_id": "t.two", "ballot": "x"})
    assert "Your vote was not recorded: the form&#39;s ballot &#39;x&#39; is not a number." in (
        response.text
    )
    del vote["ballot"]
    client.post("/vote", data={**vote, "task_id": "t.two"})
    assert sorted((o.task_id, o.ballot) for o in store.vote_outcomes()) == [
        ("t.one", 2), ("t.two", 1)
    ]  # fmt: skip


def test_no_task_left(store: DraftStore, client: TestClient) -> None:
    page = signed_in(client, "ann")
    assert "No task is waiting for your vote" in page and "task_id" not in page


def test_a_task_whose_drafts_name_their_providers_is_never_shown(
    store: DraftStore, client: TestClient
) -> None:
    in_voting(store, "t.leaky", seed=1)  # drafts that read "Draft by claude."
    voting_task(store, "t.blind", seed=2)
    page = signed_in(client, "ann")
    assert shown_task(page) == "t.blind"
    response = client.post(
        "/vote", data={"csrf_token": csrf_token(page), "task_id": "t.blind", "choice": "tie"}
    )
    assert "No task is waiting for your vote" in response.text
    assert "t.leaky" not in response.text and "t.leaky" not in page
    # A hand-made POST on the hidden task is refused too.
    forged = client.post(
        "/vote", data={"csrf_token": csrf_token(page), "task_id": "t.leaky", "choice": "A"}
    )
    assert "is not open to votes here" in forged.text
    assert [vote.task_id for vote in store.vote_outcomes()] == ["t.blind"]


def test_a_reopened_task_is_judged_again_on_its_new_ballot(
    store: DraftStore, client: TestClient
) -> None:
    """The page keeps its verdict per ballot: a leaking ballot replaced by a clean one is shown
    (and takes votes), a clean ballot replaced by a leaking one is not."""
    in_voting(store, "t.fixed", seed=1)  # drafts that read "Draft by claude."
    voting_task(store, "t.spoilt", seed=2)
    assert shown_task(signed_in(client, "ann")) == "t.spoilt"  # t.fixed judged: it leaks
    reopened_in_voting(store, "t.fixed", contents=blind_drafts())
    reopened_in_voting(store, "t.spoilt")  # its new drafts name their providers

    page = signed_in(client, "bob")
    assert shown_task(page) == "t.fixed"
    response = client.post(
        "/vote", data={"csrf_token": csrf_token(page), "task_id": "t.fixed", "choice": "A"}
    )
    assert "No task is waiting for your vote" in response.text
    assert [(o.task_id, o.ballot) for o in store.vote_outcomes()] == [("t.fixed", 2)]


def test_security_headers_on_every_response(store: DraftStore, client: TestClient) -> None:
    voting_task(store, "t.one")
    page = client.get("/")
    refused = client.post("/vote", data={"task_id": "t.one", "choice": "A"})
    for response in (page, refused, client.get("/static/keys.js"), client.get("/missing")):
        for name, value in SECURITY_HEADERS.items():
            assert response.headers[name] == value, (response.url, name)
    assert "'unsafe-inline'" not in SECURITY_HEADERS["Content-Security-Policy"]
    assert "<script>" not in page.text and "style=" not in page.text
    cookie = page.headers["set-cookie"]
    assert "httponly" in cookie.lower() and "samesite=lax" in cookie.lower()


def test_on_loopback_only_loopback_names_are_answered(store: DraftStore) -> None:
    app = voting_app(store, allowed_hosts=loopback_hosts("127.0.0.1"))
    assert TestClient(app, base_url="http://127.0.0.1:8642").get("/").status_code == 200
    assert TestClient(app, base_url="http://localhost:8642").get("/").status_code == 200
    assert TestClient(app, base_url="http://rebound.example").get("/").status_code == 400


def test_the_store_out_of_reach_is_a_503(
    store: DraftStore, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    signed_in(client, "ann")

    def unreachable(*args: object, **kwargs: object) -> None:
        raise StoreUnavailable("cannot reach the draft store (PostgreSQL at db:5432)")

    monkeypatch.setattr(DraftStore, "voting_task_for", unreachable)
    response = client.get("/")
    assert response.status_code == 503
    assert "The draft store is out of reach just now" in response.text
    assert "db:5432" not in response.text


def test_a_cookie_signed_with_the_same_secret_outlives_a_restart(store: DraftStore) -> None:
    secret = "k" * 40
    first = TestClient(voting_app(store, secret=secret))
    signed_in(first, "ann")
    again = TestClient(voting_app(store, secret=secret), cookies=first.cookies)
    assert "Voting as <strong>ann</strong>" in again.get("/").text
    fresh = TestClient(voting_app(store), cookies=first.cookies)
    assert 'name="voter"' in fresh.get("/").text


# The command ------------------------------------------------------------------------------


@pytest.mark.usefixtures("data_dir")
def test_serve_listens_on_loopback_unless_told_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    served: list[tuple[str, int]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, host, port, **_: served.append((host, port)))
    monkeypatch.delenv("DRAFTS_VOTING_SECRET", raising=False)
    quiet = CliRunner().invoke(main, ["serve"])
    assert quiet.exit_code == 0, quiet.output
    assert served == [("127.0.0.1", 8642)]
    assert "warning" not in quiet.output
    assert "voters give their name again after a restart" in quiet.output

    loud = CliRunner().invoke(main, ["serve", "--host", "0.0.0.0", "--port", "9000"])
    assert served[-1] == ("0.0.0.0", 9000)
    assert "warning: listening on 0.0.0.0, not loopback" in loud.output


@pytest.mark.usefixtures("data_dir")
def test_serve_refuses_a_short_secret_without_showing_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRAFTS_VOTING_SECRET", "hunter2")
    result = CliRunner().invoke(main, ["serve"], standalone_mode=False)
    assert isinstance(result.exception, ConfigurationError)
    assert "DRAFTS_VOTING_SECRET" in str(result.exception)
    assert "hunter2" not in str(result.exception) + result.output


# A real browser ---------------------------------------------------------------------------


def chromium_or_skip() -> Path:
    """Debian's Chromium, which `.ci/run` installs: missing in CI is a failure, elsewhere a skip."""
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: .ci/run installs it with apt-get")
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    return CHROMIUM


@pytest.mark.slow
def test_voting_in_a_real_browser(sqlite_url: str) -> None:
    from playwright.sync_api import Page, Response, sync_playwright

    executable = chromium_or_skip()
    store = DraftStore(database_url=sqlite_url)
    store.upgrade()
    labels = {task_id: voting_task(store, task_id, seed=n) for n, task_id in enumerate(
        ["shop.orders.subtotal", "shop.orders.total", "shop.orders.tax", "shop.orders.refund"]
    )}  # fmt: skip
    in_voting(store, "shop.orders.leaky", seed=9)  # its drafts name their providers
    served = ServedResponses()

    def record(response: Response) -> None:
        redirect = 300 <= response.status < 400
        headers = [(header["name"], header["value"]) for header in response.headers_array()]
        served.add(response.url, response.status, headers, b"" if redirect else response.body())

    def on_screen(page: Page) -> tuple[str, list[str]]:
        task_id = page.locator('input[name="task_id"]').get_attribute("value")
        order = page.locator("article.draft").evaluate_all("all => all.map(a => a.dataset.label)")
        assert task_id is not None
        for position, label in enumerate(order, start=1):
            draft = page.locator("article.draft").nth(position - 1)
            assert SUMMARIES[labels[task_id][label]] in draft.inner_text()
        return task_id, order

    app = voting_app(store, allowed_hosts=loopback_hosts("127.0.0.1"))
    with serving(app) as base, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(executable))
        context = browser.new_context()
        page = context.new_page()
        page.on("response", record)
        page.goto(base)
        page.fill("#voter", "ann")
        with page.expect_navigation():
            page.keyboard.press("Enter")
        assert page.locator("p.hint").is_visible(), "the script shows the keys"

        expected: dict[str, tuple[str, list[str]]] = {}
        task_id, order = on_screen(page)
        page.reload()
        assert on_screen(page) == (task_id, order), "a reload shows the same order"
        with page.expect_navigation():
            page.keyboard.press("2")
        expected[task_id] = (order[1], order)

        assert page.locator(".notice").inner_text() == "Your vote was recorded."
        task_id, order = on_screen(page)
        with page.expect_navigation():
            page.keyboard.press("t")
        expected[task_id] = ("tie", order)

        task_id, order = on_screen(page)
        with page.expect_navigation():
            page.get_by_role("button", name=f"{order[2]} is best").click()
        expected[task_id] = (order[2], order)
        last_task, _ = on_screen(page)

        votes = stored_votes(store, "ann")
        assert {task: (vote.choice, vote.display_order) for task, vote in votes.items()} == expected
        outcomes = {o.task_id: o for o in store.vote_outcomes() if o.voter == "ann"}
        for task, (_, order) in expected.items():
            assert outcomes[task].display_order == tuple(labels[task][lb] for lb in order)

        # A POST from the voter's own browser session, without the page's token.
        forged = context.request.post(
            f"{base}/vote", form={"task_id": last_task, "choice": "A"}, max_redirects=0
        )
        assert forged.status == 403 and "security token (CSRF token)" in forged.text()
        served.add(forged.url, forged.status, list(forged.headers.items()), forged.body())
        assert last_task not in stored_votes(store, "ann")

        # JavaScript off: plain forms, a click on a form button.
        plain = browser.new_context(java_script_enabled=False).new_page()
        plain.on("response", record)
        plain.goto(base)
        plain.fill("#voter", "bea")
        with plain.expect_navigation():
            plain.get_by_role("button", name="Start voting").click()
        assert not plain.locator("p.hint").is_visible(), "no keys without the script"
        task_id, order = on_screen(plain)
        with plain.expect_navigation():
            plain.locator("article.draft button.pick").first.click()
        vote = stored_votes(store, "bea")[task_id]
        assert (vote.choice, vote.display_order) == (order[0], order)
        assert order == list(display_order("bea", task_id, labels[task_id]))
        browser.close()

        # The same app asked directly, the way a script would.
        with httpx.Client(base_url=base) as direct:
            for response in (
                direct.get("/"),
                direct.post("/name", data={"csrf_token": csrf_token(direct.get("/").text),
                                           "voter": "cy"}, follow_redirects=True),
                direct.post("/vote", data={"task_id": last_task, "choice": "tie"}),
                direct.get("/static/keys.js"),
                direct.get("/static/page.css"),
                direct.get("/favicon.ico"),
            ):  # fmt: skip
                served.add(
                    str(response.url),
                    response.status_code,
                    list(response.headers.multi_items()),
                    response.content,
                )
                if response.url.path == "/vote":
                    assert response.status_code == 403

    task_pages = [text for text in served.texts if 'class="draft"' in text]
    assert len(task_pages) >= 6 and any(SUMMARIES["claude"] in text for text in task_pages)
    assert any("drafts_voting=" in text for text in served.texts), "cookies were scanned"
    assert served.names_found(forbidden_names(store)) == []
    assert not any("shop.orders.leaky" in text for text in served.texts)
