"""Sentence vectors in knowledge-base ranking: bundled, used, and optional."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from bot.kb import search as search_module
from bot.kb import semantic
from bot.kb.search import KbIndex

REPO = Path(__file__).resolve().parents[2]

PAGES = {
    "password.md": "# Reset a forgotten password\n\nUse the self-service portal to choose a new password.\n",
    "toner.md": "# Printer is out of toner\n\nOrder a cartridge from the supplies page.\n",
    "room.md": "# Book a meeting room\n\nPick a room in the Outlook room finder.\n",
    "wifi.md": "# Wi-Fi keeps dropping\n\nForget the network and join again.\n",
}


@pytest.fixture()
def tiny_kb(tmp_path: Path) -> Path:
    for name, text in PAGES.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    return tmp_path


def top(index: KbIndex, query: str) -> str | None:
    ranked = index.rank(query, limit=3)
    return index.articles[ranked[0].index].id if ranked else None


def test_the_vectors_ship_with_the_package_and_give_unit_vectors() -> None:
    embedder = semantic.load_embedder()
    assert embedder is not None, "wordllama's bundled vectors should load with no network"
    vectors = embedder.embed(["reset my password", "", "printer out of toner"])
    assert vectors.shape == (3, embedder.dim)
    assert np.allclose(np.linalg.norm(vectors[[0, 2]], axis=1), 1.0, atol=1e-5)
    assert not vectors[1].any()  # no tokens, no direction
    similar = float(embedder.embed_one("I forgot my password") @ vectors[0])
    unrelated = float(embedder.embed_one("the printer needs toner") @ vectors[0])
    assert similar > unrelated


def test_a_paraphrase_with_no_word_in_common_finds_its_page(tiny_kb: Path) -> None:
    with_vectors = KbIndex.from_dir(tiny_kb)
    assert with_vectors.semantic
    # Lexically, "ink" is nowhere and "cutting" looks like "cartridge"; by meaning they are clear.
    assert top(with_vectors, "where do I get ink") == "toner"
    assert top(with_vectors, "the wireless connection keeps cutting out") == "wifi"
    assert top(with_vectors, "reserve a space for a call with my team") == "room"
    # The same index without vectors gets the first two wrong: the vectors are what this tests.
    lexical = KbIndex.from_dir(tiny_kb, semantic=False)
    assert not lexical.semantic
    assert top(lexical, "where do I get ink") is None
    assert top(lexical, "the wireless connection keeps cutting out") == "toner"


def test_on_the_starter_articles_meaning_breaks_a_lexical_tie() -> None:
    kb = KbIndex.from_dir(REPO / "kb_articles")
    result = kb.search("the wireless keeps disconnecting", limit=3)
    assert result.hits[0].article_id == "wifi-slow-or-dropping"


def test_typos_are_corrected_before_the_question_becomes_a_vector() -> None:
    kb = KbIndex.from_dir(REPO / "kb_articles")
    embedder = semantic.load_embedder()
    assert embedder is not None
    typed = kb._question_vector("outlok keeps crashing", kb.query_terms("outlok keeps crashing"))
    assert typed is not None
    assert float(typed @ embedder.embed_one("outlook keeps crashing")) > 0.99
    # A real word the articles never use keeps its own meaning instead of its look-alike.
    pointer = kb._question_vector("mouse pointer", kb.query_terms("mouse pointer"))
    assert pointer is not None
    assert float(pointer @ embedder.embed_one("mouse pointer")) > 0.99


def test_a_long_question_leans_on_words_more_than_on_meaning(tiny_kb: Path) -> None:
    kb = KbIndex.from_dir(tiny_kb)
    short = kb.query_terms("printer toner")
    assert len(short.evidence) <= kb.tuning.semantic_full_weight_words
    long_question = "printer toner " + " ".join(f"word{i}" for i in range(20))
    assert len(kb.query_terms(long_question).evidence) > kb.tuning.semantic_full_weight_words
    assert top(kb, long_question) == "toner"


def test_without_the_vectors_search_is_lexical_and_says_why(
    tiny_kb: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    empty_package = tmp_path_factory.mktemp("wordllama")
    semantic.load_embedder.cache_clear()
    monkeypatch.setattr(semantic, "_package_dir", lambda: empty_package)
    try:
        with caplog.at_level(logging.WARNING, logger="bot.kb.semantic"):
            assert semantic.load_embedder() is None
        assert "lexical only" in caplog.text
        monkeypatch.setattr(search_module, "load_embedder", semantic.load_embedder)
        kb = KbIndex.from_dir(tiny_kb)
        assert not kb.semantic
        assert top(kb, "printer out of toner") == "toner"
        assert kb.search("forgot my password").hits[0].article_id == "password"
    finally:
        monkeypatch.undo()
        semantic.load_embedder.cache_clear()
    assert semantic.load_embedder() is not None


def test_vectors_are_half_precision_when_only_candidates_are_scored(tiny_kb: Path) -> None:
    scanned = KbIndex.from_dir(tiny_kb)
    assert scanned._vectors is not None and scanned._vectors.dtype == np.float32
    tuning = search_module.SearchTuning(semantic_scan_limit=2)
    candidates_only = KbIndex.from_dir(tiny_kb, tuning=tuning)
    assert candidates_only._vectors is not None and candidates_only._vectors.dtype == np.float16
    assert top(candidates_only, "printer out of toner") == "toner"
