"""The article loader: lenient with foreign and broken files, precise in what it reports."""

from __future__ import annotations

from pathlib import Path

from bot.kb.loader import CATEGORIES, load_dir

REPO = Path(__file__).resolve().parents[2]

GOOD = """---
id: vpn-wont-connect
title: VPN will not connect
summary: Fixes for the VPN.
tags: [vpn]
category: vpn
audience: employee
updated: 2025-06-01
---

# VPN will not connect

1. Restart the client.
"""


def write(root: Path, name: str, content: str | bytes) -> Path:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def test_malformed_front_matter_is_skipped_with_its_line_and_others_load(tmp_path: Path) -> None:
    write(tmp_path, "good.md", GOOD)
    write(tmp_path, "bad.md", "---\nid: bad\ntitle: Broken: colon here: again\n---\nbody\n")
    result = load_dir(tmp_path)
    assert [a.id for a in result.articles] == ["vpn-wont-connect"]
    (error,) = result.errors
    assert error.path.name == "bad.md"
    assert error.line == 3
    assert "not valid YAML" in error.message


def test_unclosed_front_matter_and_non_mapping_are_errors(tmp_path: Path) -> None:
    write(tmp_path, "open.md", "---\ntitle: never closed\n\nbody")
    write(tmp_path, "list.md", "---\n- a\n- b\n---\nbody\n")
    result = load_dir(tmp_path)
    assert result.articles == ()
    messages = sorted(p.message for p in result.errors)
    assert any("never closed" in m for m in messages)
    assert any("must be a mapping" in m for m in messages)


def test_empty_files_are_reported_not_fatal(tmp_path: Path) -> None:
    write(tmp_path, "empty.md", "")
    write(tmp_path, "blank.md", "   \n\n")
    write(tmp_path, "good.md", GOOD)
    result = load_dir(tmp_path)
    assert len(result.articles) == 1
    assert {p.path.name for p in result.errors} == {"empty.md", "blank.md"}


def test_huge_file_is_cut_and_still_loads(tmp_path: Path) -> None:
    body = "# Huge\n\n" + ("A line of a pasted log file that goes on and on.\n" * 40_000)
    write(tmp_path, "huge.md", body)
    result = load_dir(tmp_path, max_bytes=64 * 1024)
    (article,) = result.articles
    assert article.title == "Huge"
    assert len(article.body) <= 64 * 1024
    assert any("only the beginning" in p.message for p in result.problems)


def test_non_utf8_bytes_are_read_and_reported_with_line(tmp_path: Path) -> None:
    write(tmp_path, "latin.md", b"---\ntitle: Caf\xe9 printer\n---\n\nThe caf\xe9 printer jams.\n")
    result = load_dir(tmp_path)
    (article,) = result.articles
    assert article.title == "Café printer"
    (warning,) = [p for p in result.problems if "UTF-8" in p.message]
    assert warning.line == 2 and warning.severity == "warning"


def test_article_without_front_matter_gets_title_from_heading_or_file_name(tmp_path: Path) -> None:
    write(tmp_path, "faq/q-17.md", "Some text first.\n\n# How do I reset my password?\n\nUse the portal.\n")
    write(tmp_path, "faq/printer_jams_often.md", "Open tray 2 and remove the paper.\n")
    result = load_dir(tmp_path)
    by_id = {a.id: a for a in result.articles}
    assert by_id["faq/q-17"].title == "How do I reset my password?"
    assert by_id["faq/printer_jams_often"].title == "Printer jams often"
    assert by_id["faq/printer_jams_often"].summary == "Open tray 2 and remove the paper."
    assert result.errors == ()


def test_foreign_keys_description_and_date(tmp_path: Path) -> None:
    write(
        tmp_path,
        "Outlook/crash.md",
        "---\ntitle: Outlook crashes\ndescription: Fixes a crash.\nms.date: 02/21/2024\n---\n"
        "# Outlook crashes\n",
    )
    (article,) = load_dir(tmp_path).articles
    assert article.id == "Outlook/crash"
    assert article.summary == "Fixes a crash."
    assert article.updated is not None and article.updated.isoformat() == "2024-02-21"


def test_duplicate_ids_keep_the_first(tmp_path: Path) -> None:
    write(tmp_path, "a.md", GOOD)
    write(tmp_path, "b.md", GOOD)
    result = load_dir(tmp_path)
    assert [a.path.name for a in result.articles if a.path] == ["a.md"]
    assert "duplicate id" in result.errors[0].message


def test_missing_folder_is_one_problem(tmp_path: Path) -> None:
    result = load_dir(tmp_path / "nope")
    assert result.articles == () and len(result.errors) == 1


def test_starter_articles_are_clean_and_cover_the_it_labels() -> None:
    result = load_dir(REPO / "kb_articles")
    assert result.problems == (), "\n".join(map(str, result.problems))
    assert len(result.articles) >= 40
    it_labels = CATEGORIES - {"human", "smalltalk", "out_of_scope"}
    assert {a.category for a in result.articles} >= it_labels
    for article in result.articles:
        assert article.audience == "employee"
        assert article.flows and article.category in article.flows, article.id
        assert article.summary and article.tags and article.updated


def test_faq_pages_without_front_matter_take_their_question_as_title(tmp_path: Path) -> None:
    from bot.kb.loader import load_dir

    (tmp_path / "wifi.txt").write_text("How can I connect to the guest Wi-Fi?\n\nPick the network Guest.\n",
                                       encoding="utf-8")
    (tmp_path / "pin.md").write_text("How do I reset my voicemail PIN?\n\nCall the voicemail system.\n",
                                     encoding="utf-8")
    (tmp_path / "plain.md").write_text("Printers are on every floor.\n", encoding="utf-8")
    titles = {a.id: a.title for a in load_dir(tmp_path).articles}
    assert titles == {"wifi": "How can I connect to the guest Wi-Fi?", "pin": "How do I reset my voicemail PIN?",
                      "plain": "Plain"}
