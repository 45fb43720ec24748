"""Text handling shared by the loader, the index and the feedback reports.

One tokenizer for articles and queries alike: whatever is done to a document must be done to a
query, or "wi-fi" in an article will never meet "wifi" in a question.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from functools import lru_cache

import Stemmer
from bm25s.stopwords import STOPWORDS_EN

# Words that carry no topic in a help desk question, beyond the usual English stop words.
# "help", "please", "issue" appear in nearly every message and would only add noise.
CHAT_FILLER = frozenset(
    {
        "hi",
        "hello",
        "hey",
        "thanks",
        "thank",
        "please",
        "pls",
        "plz",
        "help",
        "need",
        "want",
        "would",
        "like",
        "get",
        "getting",
        "got",
        "im",
        "ive",
        "cant",
        "dont",
        "doesnt",
        "wont",
        "isnt",
        "didnt",
        "anyone",
        "someone",
        "know",
        "tell",
        "trying",
        "tried",
        "try",
        "could",
        "also",
        "still",
        "really",
        "hmm",
        "ok",
        "okay",
        "keep",
        "keeps",
        "since",
        "today",
        "yesterday",
        "morning",
        "via",
        "ask",
        "asking",
        "wondering",
        "regards",
        "kind",
        "dear",
        "team",
        "guys",
    }
)
# The usual English function words (bm25s ships only Lucene's 33): questions are full of
# "how do I", "what", "my", which say nothing about the topic. "down", "out" and "off" stay
# searchable: "is email down", "locked out", "turned off" hinge on them.
ENGLISH_FUNCTION_WORDS = frozenset(
    """
    i me my myself we our ours ourselves you your yours yourself yourselves he him his himself she
    her hers herself it its itself they them their theirs themselves what which who whom this that
    these those am is are was were be been being have has had having do does did doing a an the and
    but if or because as until while of at by for with about against between into through during
    before after above below to from up in on over under again further then once here
    there when where why how all any both each few more most other some such no nor not only own
    same so than too very s t can will just don should now d ll m o re ve y ain aren couldn didn
    doesn hadn hasn haven isn ma mightn mustn needn shan shouldn wasn weren won wouldn shall may
    might must us also etc eg ie
    """.split()  # noqa: SIM905 - a word list reads better as text
)
STOPWORDS = frozenset(STOPWORDS_EN) | ENGLISH_FUNCTION_WORDS | CHAT_FILLER

# Joined spellings people use interchangeably with the hyphenated or spaced ones.
_HYPHEN_WORD = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)+")
_TOKEN = re.compile(r"[a-z0-9]+")
_MARKDOWN_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_HTML_TAG = re.compile(r"<[^>]{1,300}>")
_INCLUDE = re.compile(r"\[!INCLUDE[^\]]*\](?:\([^)]*\))?", re.IGNORECASE)
_CALLOUT = re.compile(r"\[!(?:NOTE|TIP|IMPORTANT|WARNING|CAUTION)\]", re.IGNORECASE)
_DIRECTIVE = re.compile(r":::[^\n]*?:::|^\s*:::.*$", re.MULTILINE)
_MARKUP = re.compile(r"[*_`#>|~]+")

_stemmer = Stemmer.Stemmer("english")
_stemmer.maxCacheSize = 200_000


def normalise(text: str) -> str:
    """Case-folded, compatibility-normalised text with typographic quotes made plain."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return text.replace("\u2019", "'").replace("\u2018", "'")


def words(text: str) -> list[str]:
    """Surface words of `text`, in order, with stop words kept (used for display and fuzzy matching).

    Apostrophes are dropped inside words ("can't" -> "cant") and a hyphenated word yields its
    parts and the joined form ("wi-fi" -> "wi", "fi", "wifi"), so every spelling meets the others.
    """
    text = normalise(text).replace("'", "")
    out: list[str] = []
    last = 0
    for match in _HYPHEN_WORD.finditer(text):
        out.extend(_TOKEN.findall(text[last : match.start()]))
        parts = match.group().split("-")
        out.extend(parts)
        out.append("".join(parts))
        last = match.end()
    out.extend(_TOKEN.findall(text[last:]))
    return out


# Words that say something is wrong but not what: "it's not working", "broken again". A query made
# only of these has no topic, and any article it "matches" would be a random one.
NO_TOPIC = frozenset(
    {"work", "works", "working", "worked", "broken", "broke", "problem", "problems", "issue", "issues",
     "wrong", "thing", "things", "stuff", "again", "still", "anymore", "fix", "fixed", "urgent", "asap"}
)


def has_topic(text: str) -> bool:
    """Whether `text` names anything beyond "something is wrong"."""
    return any(w not in NO_TOPIC for w in content_words(text))


def content_words(text: str) -> list[str]:
    """Surface words without stop words or chat filler."""
    return [w for w in words(text) if w not in STOPWORDS]


def stem(word: str) -> str:
    return str(_stemmer.stemWord(word))


def stems(surface: Iterable[str]) -> list[str]:
    return [str(s) for s in _stemmer.stemWords(list(surface))]


def analyse(text: str) -> list[str]:
    """Index terms for `text`: content words, stemmed."""
    return stems(content_words(text))


def markdown_to_plain(markdown: str) -> str:
    """Readable plain text of a Markdown body for indexing: link text kept, markup and includes gone."""
    text = _INCLUDE.sub(" ", markdown)
    text = _CALLOUT.sub(" ", text)
    text = _DIRECTIVE.sub(" ", text)
    text = _MARKDOWN_LINK.sub(r"\1", text)
    text = _HTML_TAG.sub(" ", text)
    text = _MARKUP.sub(" ", text)
    return re.sub(r"[ \t]+", " ", text)


@lru_cache(maxsize=4096)
def normalise_query(text: str) -> str:
    """The key under which similar questions are counted together (knowledge-base gaps).

    Lower case, no punctuation, no stop words or chat filler, each word once, in the order asked:
    "Hi, my VPN won't connect!!" and "vpn wont connect" count as one question.
    """
    seen: dict[str, None] = {}
    for word in content_words(text):
        seen.setdefault(word, None)
    return " ".join(seen)
