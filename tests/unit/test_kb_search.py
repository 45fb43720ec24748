"""Ranking on the starter knowledge base: typos, synonyms, paraphrases and honest confidence."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.core.ports import KnowledgeBase
from bot.kb.loader import Article
from bot.kb.render import article_to_dict, article_to_text
from bot.kb.search import KbIndex

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def kb() -> KbIndex:
    return KbIndex.from_dir(REPO / "kb_articles")


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("forgot my pasword", "reset-forgotten-password"),
        ("vpn wont conect", "vpn-wont-connect"),
        ("outlok keeps crashing", "outlook-not-opening"),
        ("how do i share my calender", "share-calendar"),
        ("pwd expired", "reset-forgotten-password"),
        ("wi-fi keeps droping", "wifi-slow-or-dropping"),
        ("my account is lokced", "account-locked-out"),
        ("people can't hear me in teams", "teams-audio-video-problems"),
        ("set my out of office", "set-up-automatic-replies"),
        ("second screen not detected", "dock-or-monitor-not-detected"),
        ("someone stole my laptop", "lost-or-stolen-device"),
        ("got a phishing mail", "report-phishing"),
        ("my screen keeps flickering", "screen-flickering-or-lines"),
        ("paper stuck in the copier", "printer-paper-jam-or-toner"),
        ("the wireless keeps disconnecting", "wifi-slow-or-dropping"),
    ],
)
def test_typos_synonyms_and_paraphrases_find_the_article(kb: KbIndex, query: str, expected: str) -> None:
    result = kb.search(query, limit=3)
    assert result.hits and result.hits[0].article_id == expected, [h.article_id for h in result.hits]
    assert result.confidence in ("high", "medium")


def test_new_phone_for_mfa_is_in_the_top_two(kb: KbIndex) -> None:
    ids = [h.article_id for h in kb.search("mfa on my new phone", limit=2).hits]
    assert "new-phone-authenticator" in ids


@pytest.mark.parametrize(
    "query", ["what's the weather in Paris", "recipe for lasagna", "how much is an overdraft fee", "", "???"]
)
def test_questions_the_kb_does_not_answer_have_no_good_match(kb: KbIndex, query: str) -> None:
    assert kb.search(query).confidence == "none"


def test_a_clear_question_is_high_confidence_and_a_single_word_at_most_medium(kb: KbIndex) -> None:
    assert kb.search("printer not printing anything").confidence == "high"
    assert kb.search("printer").confidence == "medium"


def test_hits_are_best_first_and_limited(kb: KbIndex) -> None:
    hits = kb.search("outlook email problems", limit=3).hits
    assert len(hits) == 3
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert all(h.title and h.summary for h in hits)


def test_category_boosts_without_excluding(kb: KbIndex) -> None:
    plain = kb.rank("install app", limit=10)
    boosted = kb.rank("install app", limit=10, category="vpn")
    assert {r.index for r in plain} & {r.index for r in boosted}
    vpn_rank = next(i for i, r in enumerate(boosted) if kb.articles[r.index].id == "install-vpn-client")
    plain_rank = next(i for i, r in enumerate(plain) if kb.articles[r.index].id == "install-vpn-client")
    assert vpn_rank <= plain_rank


def test_implements_the_knowledge_base_port(kb: KbIndex) -> None:
    port: KnowledgeBase = kb
    assert "vpn-wont-connect" in port.article_ids()
    assert port.render_article("missing") is None


def test_render_article_gives_typed_blocks(kb: KbIndex) -> None:
    article = kb.render_article("vpn-connected-no-access")
    assert article is not None
    assert article["title"] and article["summary"] and article["truncated"] is False
    blocks = [b for s in article["sections"] for b in s["blocks"]]
    steps = next(b for b in blocks if b["type"] == "steps")
    assert any("ipconfig /flushdns" in item for item in steps["items"])
    assert any("`sudo dscacheutil" in item for item in steps["items"])


def test_long_articles_are_cut_at_a_boundary_with_a_pointer() -> None:
    body = "# Long\n\n" + "\n\n".join(
        f"## Part {n}\n\nParagraph {n} explains things in detail. It has two sentences." for n in range(60)
    )
    body += "\n\nSee [the portal](https://portal.example.com).\n\n```\ncode here\n```\n\n1. one\n2. two\n"
    article = Article(
        id="long", title="Long", summary="Very long.", body=body, url="https://kb.example.com/long"
    )
    data = article_to_dict(article, max_chars=600)
    assert data["truncated"] is True
    text = article_to_text(data, max_chars=600)
    assert text.endswith("(continued in the full article: https://kb.example.com/long)")
    assert len(text) <= 600
    full = article_to_text(article, max_chars=100_000)
    assert "the portal (https://portal.example.com)" in full
    assert "```\ncode here\n```" in full
    assert "1. one\n2. two" in full


def test_an_empty_knowledge_base_finds_nothing(tmp_path: Path) -> None:
    from bot.kb.search import KbIndex

    (tmp_path / "empty.md").write_text("", encoding="utf-8")
    for folder in (tmp_path / "none", tmp_path):
        folder.mkdir(exist_ok=True)
        index = KbIndex.from_dir(folder)
        result = index.search("vpn wont connect")
        assert result.hits == () and result.confidence == "none"
