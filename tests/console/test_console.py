"""The console in a real browser against a real server with real processed calls, on SQLite and PostgreSQL."""

from __future__ import annotations

import re
import shutil

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.console.conftest import SPOKEN, TESTSET, Console, sign_in, wait_until

pytestmark = pytest.mark.xdist_group("asr")  # the worker that already holds the speech model


def test_sign_in_filter_and_sign_out(console: Console, page: Page) -> None:
    page.goto(f"{console.base_url}/console/calls")
    expect(page).to_have_url(re.compile(r"/console/login\?next="))
    page.get_by_label("API token").fill("not-a-token")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("That token is not valid.")

    sign_in(page, console, console.network.token)
    cookie = next(c for c in page.context.cookies() if c["name"] == "callplane_console")
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict" and cookie["path"] == "/console"
    assert console.network.token not in cookie["value"]
    page.context.add_cookies([cookie | {"value": cookie["value"][:-4] + "AAAA"}])  # altered: signed out
    page.goto(f"{console.base_url}/console/calls")
    expect(page).to_have_url(re.compile(r"/console/login\?next="))
    page.context.add_cookies([cookie])
    page.goto(f"{console.base_url}/console/calls")
    rows = page.locator("tr[data-call-id]")
    expect(rows).to_have_count(2)  # this tenant's two calls, not the other tenant's
    console.screenshot(page, "calls")

    page.get_by_label("Status").select_option("failed")
    page.get_by_role("button", name="Apply filters").click()
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-call-id", console.failed_call_id)

    page.get_by_role("link", name="Clear").click()
    page.get_by_label("Signal").select_option("Cancellation")
    page.get_by_label("Number").fill("(800) 555-0101")
    page.get_by_role("button", name="Apply filters").click()
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-call-id", console.spoken_call_id)
    page.get_by_label("Number").fill("+18005550199")
    page.get_by_role("button", name="Apply filters").click()
    expect(rows).to_have_count(0)

    with page.expect_download() as download:
        page.goto(f"{console.base_url}/console/calls")
        page.get_by_role("link", name="Export CSV").click()
    csv_text = download.value.path().read_text(encoding="utf-8")
    assert console.spoken_call_id in csv_text and console.failed_call_id in csv_text
    assert console.other_call_id not in csv_text

    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/console/login$"))
    page.goto(f"{console.base_url}/console/calls")
    expect(page).to_have_url(re.compile(r"/console/login\?next="))


def test_search_a_phrase_lands_on_the_call_and_second(console: Console, page: Page) -> None:
    sign_in(page, console, console.network.token)
    page.get_by_label("Search transcripts").fill('"account number"')
    page.get_by_role("button", name="Search").click()
    rows = page.locator("tr[data-call-id]")
    expect(rows).to_have_count(1)  # the other tenant's copy of the same call is not found
    expect(rows.first).to_have_attribute("data-call-id", console.spoken_call_id)
    expect(page.locator("tr.hit mark").first).to_have_text(re.compile("account", re.I))
    console.screenshot(page, "search")
    page.locator("a.hit-link").first.click()
    expect(page).to_have_url(re.compile(f"/console/calls/{console.spoken_call_id}"))
    agent_turn = next(turn for turn in SPOKEN.turns if "account number" in turn.text)
    expect(page.locator("#player")).to_have_attribute("data-ready", "true")
    seconds = float(page.locator("#clock").get_attribute("data-time") or "nan")
    assert agent_turn.start_s - 0.5 <= seconds <= agent_turn.end_s, seconds
    expect(page.locator(".word.current")).to_have_text(re.compile("account", re.I))
    expect(page.locator(".word.found")).to_have_count(2)  # "account" and "number", marked in the transcript

    page.goto(f"{console.base_url}/console/calls?q=" + "x" * 300)
    expect(page.get_by_role("alert")).to_contain_text("at most 256 characters")


def test_play_highlights_words_and_a_click_seeks(console: Console, page: Page) -> None:
    sign_in(page, console, console.network.token)
    page.goto(f"{console.base_url}/console/calls/{console.spoken_call_id}")
    expect(page.locator("#player")).to_have_attribute("data-ready", "true")
    expect(page.locator("#waveform")).to_be_visible()
    # The custom data and every transcript word are text, never markup.
    expect(page.get_by_text("<b>premium</b><script>window.pwned=1</script>")).to_be_visible()
    assert page.evaluate("window.pwned") is None
    expect(page.locator(".word.evidence").first).to_be_visible()  # signal evidence is marked in the transcript
    console.screenshot(page, "call")

    page.get_by_role("button", name="Play", exact=True).click()
    current = page.locator(".word.current")
    expect(current).to_have_count(1, timeout=15_000)
    first = float(current.get_attribute("data-start") or "nan")
    wait_until(lambda: float(page.locator(".word.current").get_attribute("data-start") or "nan") > first, 20)
    assert float(page.locator("#clock").get_attribute("data-time") or "0") > first
    page.get_by_role("button", name="Pause", exact=True).click()

    late = page.locator(".word").nth(-3)
    target = float(late.get_attribute("data-start") or "nan")
    late.click()
    expect(late).to_have_class(re.compile(r"\bcurrent\b"))
    assert abs(float(page.locator("#clock").get_attribute("data-time") or "nan") - target) < 0.1
    expect(page.locator("#player")).to_have_attribute("data-lanes", "2")  # caller and agent, one lane each

    page.locator("#main").focus()  # keyboard: the left arrow steps 5 seconds back
    page.keyboard.press("ArrowLeft")
    after = float(page.locator("#clock").get_attribute("data-time") or "nan")
    assert abs(after - (target - 5)) < 0.1, (after, target)

    page.set_viewport_size({"width": 390, "height": 844})
    page.wait_for_timeout(500)  # wavesurfer redraws its lanes for the new width (debounced)
    console.screenshot(page, "call-narrow")


def test_retry_a_failed_call_and_see_it_complete(console: Console, page: Page) -> None:
    sign_in(page, console, console.network.token)
    page.goto(f"{console.base_url}/console/calls/{console.failed_call_id}")
    expect(page.get_by_test_id("call-status")).to_have_text("failed")
    expect(page.locator(".job .error")).to_contain_text("404")
    shutil.copy(TESTSET / SPOKEN.audio, console.files.root / console.late_file)
    page.get_by_role("button", name="Retry processing").click()

    def completed() -> bool:
        page.reload()
        return page.get_by_test_id("call-status").inner_text() == "completed"

    wait_until(completed, timeout=300, every=1.0)
    expect(page.get_by_role("button", name="Retry processing")).to_have_count(0)
    csrf = page.locator("input[name=csrf]").first.get_attribute("value") or ""
    again = page.context.request.post(
        f"{console.base_url}/console/calls/{console.failed_call_id}/retry",
        form={"csrf": csrf},
        headers={"Origin": console.base_url},
    )
    assert again.status == 409 and "only a failed call can be retried" in again.text()
    expect(page.locator("#player")).to_have_attribute("data-ready", "true")
    assert page.locator(".word").count() > 5


def test_create_and_revoke_a_token(console: Console, page: Page, browser: Browser) -> None:
    sign_in(page, console, console.network.token)
    page.get_by_role("link", name="Tokens").click()
    page.get_by_label("Name").fill("from the console")
    page.get_by_role("button", name="Create token").click()
    token = page.get_by_test_id("new-token").inner_text().strip()
    with console.api(token) as api:
        assert api.get("/v1/calls").status_code == 200
    console.screenshot(page, "tokens")
    elsewhere = browser.new_context()  # someone signed in with the new token
    other_page = elsewhere.new_page()
    sign_in(other_page, console, token)
    page.goto(f"{console.base_url}/console/tokens")
    expect(page.get_by_test_id("new-token")).to_have_count(0)  # shown once
    page.get_by_role("button", name="Revoke token from the console").click()
    expect(page.get_by_role("button", name="Revoke token from the console")).to_have_count(0)
    with console.api(token) as api:
        assert api.get("/v1/calls").status_code == 401
    other_page.reload()  # a revoked token's console sessions end at once
    expect(other_page).to_have_url(re.compile(r"/console/login\?next="))
    elsewhere.close()


def test_redeliver_a_failed_webhook(console: Console, page: Page) -> None:
    sign_in(page, console, console.network.token)
    page.goto(f"{console.base_url}/console/webhooks?status=failed")

    def failed_listed() -> bool:
        page.reload()
        return page.locator("tr[data-delivery-id]").count() > 0

    wait_until(failed_listed, timeout=60, every=0.5)
    row = page.locator("tr[data-delivery-id]").first
    delivery_id = row.get_attribute("data-delivery-id")
    console.receiver.accepting = True
    before = len(console.receiver.received)
    row.get_by_role("button", name="Redeliver").click()
    page.goto(f"{console.base_url}/console/webhooks")
    delivered = page.locator(f"tr[data-delivery-id='{delivery_id}'] [data-testid=delivery-status]")

    def is_delivered() -> bool:
        page.reload()
        return delivered.inner_text() == "delivered"

    wait_until(is_delivered, timeout=60, every=0.5)
    assert len(console.receiver.received) > before
    console.screenshot(page, "webhooks")


def test_another_tenant_never_sees_the_call(console: Console, page: Page) -> None:
    sign_in(page, console, console.other.token)
    rows = page.locator("tr[data-call-id]")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-call-id", console.other_call_id)
    response = page.goto(f"{console.base_url}/console/calls/{console.spoken_call_id}")
    assert response is not None and response.status == 404
    assert "account number" not in page.content().lower()
    request = page.context.request
    for path in ("recording", "transcript.json", "transcript.txt"):
        assert request.get(f"{console.base_url}/console/calls/{console.spoken_call_id}/{path}").status == 404
    listed = request.get(f"{console.base_url}/console/api/calls").json()
    assert [call["id"] for call in listed["calls"]] == [console.other_call_id]
    csrf = page.locator("input[name=csrf]").first.get_attribute("value") or ""
    retried = request.post(
        f"{console.base_url}/console/calls/{console.failed_call_id}/retry",
        form={"csrf": csrf},
        headers={"Origin": console.base_url},
    )
    assert retried.status == 404
    # Without the session's CSRF token, or from another origin, a form post is refused.
    assert request.post(f"{console.base_url}/console/tokens", form={"name": "x"}).status == 403
    assert (
        request.post(
            f"{console.base_url}/console/tokens", form={"name": "x", "csrf": csrf}, headers={"Origin": "https://evil"}
        ).status
        == 403
    )
    # Signed out, the data API answers 401.
    page.get_by_role("button", name="Sign out").click()
    assert request.get(f"{console.base_url}/console/api/calls").status == 401


def test_admin_sees_every_account_and_the_main_pages(console: Console, page: Page) -> None:
    sign_in(page, console, "test-admin-token")
    ids = page.locator("tr[data-call-id]").evaluate_all("rows => rows.map(row => row.dataset.callId)")
    assert {console.spoken_call_id, console.failed_call_id, console.other_call_id} <= set(ids)
    for name, path in (
        ("dashboard", "/console/dashboard"),
        ("live", "/console/live"),
        ("contact-center", "/console/contact-center"),
        ("calls-admin", "/console/calls"),
    ):
        response = page.goto(f"{console.base_url}{path}")
        assert response is not None and response.status == 200, path
        console.screenshot(page, name)
    page.goto(f"{console.base_url}/console/dashboard")
    assert int(page.get_by_test_id("total-calls").inner_text()) >= 3
    expect(page.locator("canvas#per-day")).to_be_visible()
    page.goto(f"{console.base_url}/console/live")
    expect(page.locator("body")).to_have_attribute("data-live-updates", re.compile(r"[1-9]"))


def test_transcript_text_is_never_markup(console: Console, page: Page) -> None:
    """A transcript that says <script> shows it as text, in the call page and in search snippets."""
    said = "<script>window.pwned=1</script><img src=x onerror=window.pwned=2>"
    console.rewrite_first_word(console.other_call_id, said)
    sign_in(page, console, console.other.token)
    page.goto(f"{console.base_url}/console/calls/{console.other_call_id}")
    expect(page.locator("#transcript .word").first).to_have_text(said)
    page.get_by_label("Search transcripts").count()  # the page rendered fully
    page.goto(f"{console.base_url}/console/calls?q=pwned")
    expect(page.locator("tr.hit")).to_contain_text("<script>")
    assert page.evaluate("window.pwned") is None
    assert page.locator("#transcript script, tr.hit script, tr.hit img").count() == 0


def test_configuration_and_testing_a_signal_on_a_call(console: Console, page: Page) -> None:
    sign_in(page, console, console.network.token)
    page.get_by_role("link", name="Configuration").click()
    expect(page.get_by_role("table", name="Campaigns")).to_contain_text("86")
    expect(page.get_by_role("table", name="Custom data fields")).to_contain_text("account_type")
    page.get_by_label("Signal", exact=True).select_option(label="Cancellation")
    page.get_by_label("Call id").fill(console.spoken_call_id)
    page.get_by_role("button", name="Test this signal on the call").click()
    expect(page.get_by_test_id("trial-result")).to_have_text("detected")
    expect(page.locator("#signal-trial")).to_contain_text("want to cancel")
    console.screenshot(page, "configuration")
    # Another tenant's call is not found, whatever signal is picked.
    page.get_by_label("Call id").fill(console.other_call_id)
    page.get_by_role("button", name="Test this signal on the call").click()
    expect(page.get_by_role("alert")).to_have_text("The call does not exist.")


def test_paging_through_the_calls(console: Console, page: Page) -> None:
    partner = console.admin.partner()
    items = [
        {
            "call": {
                "id": f"page-{index:02d}",
                "recording_url": console.files.url(f"missing-{index}.wav"),
                "start_time": f"2023-01-01T10:{index:02d}:00Z",
                "end_time": f"2023-01-01T10:{index:02d}:30Z",
                "contact_number": "+12025550100",
            }
        }
        for index in range(30)
    ]
    with console.api(partner.token) as api:
        sent = api.post("/partner/ingest/batch-call", headers=partner.headers, json={"data": items})
        assert sent.status_code == 200, sent.text
    sign_in(page, console, partner.token)
    page.get_by_label("Rows per page").select_option("25")
    page.get_by_role("button", name="Apply filters").click()
    rows = page.locator("tr[data-call-id]")
    expect(rows).to_have_count(25)
    first = set(rows.evaluate_all("rows => rows.map(row => row.dataset.callId)"))
    page.get_by_role("link", name="Next page").click()
    expect(rows).to_have_count(5)
    second = set(rows.evaluate_all("rows => rows.map(row => row.dataset.callId)"))
    assert not first & second
    expect(page.get_by_role("link", name="Next page")).to_have_count(0)
    page.get_by_role("link", name="First page").click()
    expect(rows).to_have_count(25)


def test_agents_and_queues(console: Console, page: Page) -> None:
    base = f"/accounts/{console.network.account_id}/contact-center"
    agent = console.admin.post(
        f"{base}/agents",
        {"email": "ada@example.com", "first_name": "Ada", "sip_uri": "sip:ada@127.0.0.1:5099", "status": "available"},
    )
    console.admin.post(f"{base}/menus", {"name": "Billing", "agent_ids": [agent["id"]]})
    sign_in(page, console, console.network.token)
    page.get_by_role("link", name="Agents & queues").click()
    expect(page.get_by_role("table", name="Agents")).to_contain_text("ada@example.com")
    expect(page.get_by_role("table", name="Agents")).to_contain_text("available")
    expect(page.get_by_role("table", name="Queues")).to_contain_text("Billing")
    console.screenshot(page, "contact-center")
    sign_in(page, console, console.other.token)
    page.get_by_role("link", name="Agents & queues").click()
    expect(page.get_by_role("table", name="Agents")).not_to_contain_text("ada@example.com")


def test_add_and_delete_a_webhook_endpoint(console: Console, page: Page) -> None:
    sign_in(page, console, console.other.token)
    page.get_by_role("link", name="Webhooks").click()
    page.get_by_label("URL").fill("http://hooks.example.com/in")  # plain http to a host not allow-listed
    page.get_by_role("button", name="Add endpoint").click()
    expect(page.get_by_role("alert")).to_contain_text("must use https://")
    page.goto(f"{console.base_url}/console/webhooks")
    page.get_by_label("URL").fill(console.receiver.url)  # loopback is allow-listed in these tests
    page.get_by_label("Event types").fill("call.processed")
    page.get_by_role("button", name="Add endpoint").click()
    expect(page.get_by_test_id("endpoint-secret")).to_have_text(re.compile(r"^whsec_"))
    endpoint = page.locator("tr[data-endpoint-id]")
    expect(endpoint).to_have_count(1)
    with console.api(console.other.token) as api:
        listed = api.get("/v1/webhook-endpoints").json()["webhook_endpoints"]
    assert [(e["url"], e["event_types"]) for e in listed] == [(console.receiver.url, ["call.processed"])]
    page.get_by_role("button", name=f"Delete endpoint {console.receiver.url}").click()
    expect(endpoint).to_have_count(0)
