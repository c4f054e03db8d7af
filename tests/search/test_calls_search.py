"""GET /v1/calls?q=: the right call and second for a phrase, only the tenant's calls, escaped snippets, odd input."""

from __future__ import annotations

import httpx
import hypothesis
import hypothesis.strategies as st
import pytest

from callplane.core.search.query import MAX_QUERY_CHARS
from callplane.core.transcripts.schemas import Speaker
from callplane.testing.factories import Admin, Network
from tests.search.conftest import Calls, Said, search

CALLER, AGENT = Speaker.CALLER, Speaker.AGENT


def ids(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [call["id"] for call in response.json()["calls"]]


def test_a_phrase_finds_the_call_and_the_second_it_was_said(
    client: httpx.Client, network: Network, calls: Calls
) -> None:
    opening = Said(AGENT, 1.0, "Thanks for calling Acme, how can I help?")
    wanted = calls.with_transcript(
        network,
        opening,
        Said(CALLER, 4.0, "Hi, I would like to cancel my subscription today."),
        Said(AGENT, 9.0, "Sorry to hear that. Can I ask why you want to cancel?"),
    )
    # The same words, not in a row: a phrase does not match it.
    calls.with_transcript(network, opening, Said(CALLER, 4.0, "My subscription is fine, do not cancel anything."))

    response = search(client, network, '"cancel my subscription"')
    assert ids(response) == [wanted]
    found = response.json()["calls"][0]["search"]
    assert found["match_count"] == 1
    (match,) = found["matches"]
    said = Said(CALLER, 4.0, "Hi, I would like to cancel my subscription today.")
    assert match["source"] == "transcript"
    assert match["speaker"] == "caller"
    assert match["start_s"] == pytest.approx(said.word_start(5))  # "cancel" is the sixth word of the turn
    assert match["end_s"] == pytest.approx(said.word_start(7) + 0.4)  # "subscription." ends the phrase
    assert "<mark>cancel my subscription</mark>" in match["snippet"]

    # Words (in any order, any case) find both calls, newest first; each says where its first word was said.
    both = search(client, network, "SUBSCRIPTION Cancel")
    assert len(ids(both)) == 2 and ids(both)[0] != wanted
    assert all(call["search"]["match_count"] >= 2 for call in both.json()["calls"])


def test_words_prefixes_and_details(client: httpx.Client, network: Network, calls: Calls) -> None:
    refund = calls.with_transcript(
        network, Said(CALLER, 2.0, "I was charged twice, I need a refund."), external_call_unique_id="order-7731"
    )
    other = calls.with_transcript(network, Said(CALLER, 2.0, "What are your opening hours?"))

    assert ids(search(client, network, "refund")) == [refund]
    assert ids(search(client, network, "refund hours")) == []  # every word must appear
    assert ids(search(client, network, "refu*")) == [refund]
    assert ids(search(client, network, "open*")) == [other]
    # The call's details are searched too: its external id, here; a details match has no time.
    by_id = search(client, network, "order-7731")
    assert ids(by_id) == [refund]
    (match,) = by_id.json()["calls"][0]["search"]["matches"]
    assert match["source"] == "details" and match["start_s"] is None
    assert "<mark>order-7731</mark>" in match["snippet"]


def test_search_combines_with_the_filters_and_pages(client: httpx.Client, network: Network, calls: Calls) -> None:
    made = [
        calls.with_transcript(network, Said(CALLER, 1.0, f"Question number {n} about the warranty.")) for n in range(3)
    ]
    calls.with_transcript(network, Said(CALLER, 1.0, "Nothing about that here."))
    first = search(client, network, "warranty", limit=2)
    assert ids(first) == [made[2], made[1]]
    cursor = first.json()["next_cursor"]
    assert cursor
    second = search(client, network, "warranty", limit=2, cursor=cursor)
    assert ids(second) == [made[0]] and second.json()["next_cursor"] is None

    external_id = client.get(f"/v1/calls/{made[1]}", headers={"Authorization": f"Bearer {network.token}"}).json()[
        "external_id"
    ]
    assert ids(search(client, network, "warranty", external_id=external_id)) == [made[1]]
    assert ids(search(client, network, "warranty", status="completed")) == []  # none is processed yet


def test_a_tenant_finds_only_its_own_calls(client: httpx.Client, admin: Admin, calls: Calls) -> None:
    first, second = admin.network(), admin.network()
    words = Said(CALLER, 3.0, "The secret password is pineapple.")
    mine = calls.with_transcript(first, words)
    theirs = calls.with_transcript(second, words)
    assert ids(search(client, first, '"password is pineapple"')) == [mine]
    assert ids(search(client, second, '"password is pineapple"')) == [theirs]
    # Not by the other tenant's external id either.
    external_id = client.get(f"/v1/calls/{theirs}", headers={"Authorization": f"Bearer {second.token}"}).json()[
        "external_id"
    ]
    assert ids(search(client, first, external_id)) == []


def test_an_advertiser_scoped_token_searches_only_its_organization(
    client: httpx.Client, admin: Admin, network: Network, calls: Calls
) -> None:
    other = admin.post(f"/accounts/{network.account_id}/organizations", {"kind": "advertiser", "external_id": "two"})
    admin.post(f"/accounts/{network.account_id}/campaigns", {"organization_id": other["id"], "external_id": "99"})
    words = Said(AGENT, 1.0, "Your parcel ships tomorrow.")
    mine = calls.with_transcript(network, words)
    calls.with_transcript(network, words, advertiser_campaign_id_from_network=99)
    scoped = admin.post(f"/accounts/{network.account_id}/tokens", {"organization_id": network.advertiser_id})
    assert len(ids(search(client, network, "parcel"))) == 2
    assert ids(search(client, scoped["token"], "parcel")) == [mine]


def test_snippets_escape_what_was_said(client: httpx.Client, network: Network, calls: Calls) -> None:
    call = calls.with_transcript(
        network, Said(CALLER, 1.0, 'Type <script>alert("owned")</script> & <b>bold</b> into the form.')
    )
    response = search(client, network, "script alert")
    assert ids(response) == [call]
    snippet = response.json()["calls"][0]["search"]["matches"][0]["snippet"]
    assert "<script" not in snippet and "<b>" not in snippet
    assert "&lt;<mark>script</mark>&gt;<mark>alert</mark>(&quot;owned&quot;)&lt;/<mark>script</mark>&gt;" in snippet
    assert "&amp; &lt;b&gt;bold&lt;/b&gt;" in snippet
    # Only our own tags are left once the escaped text is taken out.
    assert snippet.replace("<mark>", "").replace("</mark>", "").count("<") == 0


def test_without_q_the_list_is_unchanged(client: httpx.Client, network: Network, calls: Calls) -> None:
    call = calls.with_transcript(network, Said(CALLER, 1.0, "Plain list."))
    headers = {"Authorization": f"Bearer {network.token}"}
    plain = client.get("/v1/calls", headers=headers).json()
    assert [listed["id"] for listed in plain["calls"]] == [call]
    assert "search" not in plain["calls"][0]
    # An empty search box is no search.
    assert client.get("/v1/calls", params={"q": "  "}, headers=headers).json() == plain


@pytest.mark.parametrize(
    ("q", "reason"),
    [
        ("x" * (MAX_QUERY_CHARS + 1), "at most"),
        ('"" * - ( ) & | ! : <-> ^', "no word"),
        ('"  "', "no word"),
        (" ".join(f"w{n}" for n in range(17)), "at most 16 words"),
    ],
)
def test_bad_queries_are_a_422(client: httpx.Client, network: Network, q: str, reason: str) -> None:
    response = search(client, network, q)
    assert response.status_code == 422, response.text
    assert reason in response.text


def test_nul_in_q_is_refused_before_the_database(client: httpx.Client, network: Network) -> None:
    response = client.get("/v1/calls?q=a%00b", headers={"Authorization": f"Bearer {network.token}"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "q"]


ODD_QUERIES = [
    '"',
    '"unclosed phrase',
    "'",
    "a'b",
    "\\",
    "*",
    "abc*",
    "NEAR(a b)",
    "a OR b",
    "a AND NOT b",
    "-minus",
    "x:*",
    "'a':* & !b",
    "title:hello",
    "é",
    "ǅungla STRASSE straße",
    "💥 emoji",
    "ﬁnance",
    "١٢٣",
    "a\tb\nc",
    "%_%",
    "''''",
    "\u202eright-to-left",
    "x" * MAX_QUERY_CHARS,
]


@pytest.mark.parametrize("q", ODD_QUERIES)
def test_odd_queries_never_fail(client: httpx.Client, network: Network, calls: Calls, q: str) -> None:
    response = search(client, network, q)
    assert response.status_code in (200, 422), response.text
    if response.status_code == 200:
        assert response.json()["calls"] == []


def test_odd_words_are_found_as_they_were_said(client: httpx.Client, network: Network, calls: Calls) -> None:
    call = calls.with_transcript(network, Said(AGENT, 0.5, "Olá, café? That's 3.5% off, e-mail me: zoë@example.com"))
    for q in ("café", "OLÁ", '"3.5"', "e-mail", "zoë@example.com", "that's", '"that s 3 5"'):
        assert ids(search(client, network, q)) == [call], q
    assert ids(search(client, network, "cafe")) == []  # accents are kept, as said


@hypothesis.settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[hypothesis.HealthCheck.function_scoped_fixture],
)
@hypothesis.given(q=st.text(st.characters(exclude_characters="\x00"), max_size=MAX_QUERY_CHARS + 20))
def test_any_text_is_searched_or_refused(client: httpx.Client, network: Network, q: str) -> None:
    """Whatever the box holds: a page (empty: this tenant has no calls) or the native 422, never a 500."""
    response = search(client, network, q)
    assert response.status_code in (200, 422), response.text
    if response.status_code == 200:
        assert response.json()["calls"] == []
