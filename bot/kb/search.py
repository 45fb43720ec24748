"""Typo- and paraphrase-tolerant article search.

How a query is answered:

1. **Terms.** The query's content words are stemmed. A word the knowledge base has never seen is
   corrected against the knowledge base's own vocabulary with rapidfuzz (optimal string alignment
   distance, so a swapped pair of letters counts as one edit), and IT synonyms are added at a lower
   weight ("pwd" also searches "password").
2. **Lexical score.** One bm25s index per field (title, keywords = tags + synonyms + category,
   summary, body), combined with field weights: a word in the title says more than the same word
   deep in the body. bm25s keeps the precomputed per-term scores in a sparse matrix; we read it
   directly so each query term can carry its own weight (corrections and synonyms count less).
3. **Re-rank.** The best candidates, plus titles that fuzzily match the whole question
   (when there are few enough titles to scan), are re-scored with rapidfuzz against the title,
   tags and synonyms, which rescues word-order paraphrases and typos the corrector left alone,
   and by coverage (how much of the question the title, tags and summary hold, synonyms included).
4. **Meaning.** Each article also has a sentence vector (bot/kb/semantic.py: title, and title with
   summary and the start of the body); the question's vector, typos corrected, adds its cosine
   similarity to the re-rank score. It sees that "can't get into my account" is about signing in
   when no word is shared. With few enough articles the nearest few by meaning also join the
   candidates.
5. **Confidence.** How much of the question's information the best article covers, how well its
   title matches and how far it leads the runner-up give `high`, `medium` or `none`. The cut-offs
   were calibrated on the Microsoft 365 corpus (bench/kb_search.py) and on CLINC150 out-of-scope
   questions.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import bm25s
import numpy as np
import numpy.typing as npt
from rapidfuzz import fuzz, process
from rapidfuzz.distance import OSA

from bot.core.ports import KbHit, KbResult
from bot.kb.loader import Article, LoadProblem, load_dir
from bot.kb.semantic import StaticEmbedder, load_embedder
from bot.kb.synonyms import build_synonym_map
from bot.kb.text import STOPWORDS, content_words, has_topic, stem, stems
from bot.kb.text import words as surface_words

FloatArray = npt.NDArray[np.float32]

# How much a query word found in each part of an article counts towards confidence: a word in the
# title or tags says the article is about it; the same word deep in the body may be incidental.
_HEAD_EVIDENCE = 1.0
_SUMMARY_EVIDENCE = 0.85
_BODY_EVIDENCE = 0.6


@dataclass(frozen=True, slots=True)
class SearchTuning:
    """Knobs of the ranking. Defaults were tuned on the Microsoft 365 corpus; see docs/kb.md."""

    title_repeat: int = 2
    keywords_repeat: int = 2
    summary_repeat: int = 1
    body_repeat: int = 1
    # Exact words and stems are two indexes: exact wording is the stronger signal, stems catch
    # "printing" for "printer".
    exact_weight: float = 1.0
    stem_weight: float = 0.5
    k1: float = 1.2
    b: float = 0.75
    # Weight of a corrected word and of a synonym relative to a word typed as-is.
    correction_weight: float = 0.85
    synonym_weight: float = 0.4
    # Weight of two adjacent query words joined into one word the articles use.
    joined_weight: float = 0.5
    # How many lexical candidates the fuzzy re-rank looks at, and how much it counts.
    rerank_depth: int = 40
    fuzzy_weight: float = 0.5
    # Weight of coverage (the idf-weighted share of the question's words, or their synonyms, that a
    # candidate has in its title, tags or summary) in the re-rank: a coordination factor, so an
    # article about every word of a short question beats one with many repeats of a single word.
    coverage_weight: float = 0.3
    # Weight of the cosine similarity between the question's sentence vector and an article's
    # title vector, and its title + summary + body vector (0 turns the semantic signal off).
    semantic_title_weight: float = 1.5
    semantic_body_weight: float = 0.5
    # The articles nearest the question by meaning that join the candidates even with no word in
    # common, found by scanning every article's vector, which is done below semantic_scan_limit
    # articles (a help desk's own knowledge base; at 50,000 documents the scan would cost ~6 ms).
    semantic_candidates: int = 10
    semantic_scan_limit: int = 20_000
    # A long question (a pasted error, a paragraph) carries enough words for the lexical score, and
    # its averaged vector blurs: past this many content words the semantic weight shrinks in
    # proportion (6 words: full weight; 12 words: half).
    semantic_full_weight_words: int = 6
    # Scan every title with rapidfuzz only below this many titles (keeps p99 flat at 50k documents).
    title_scan_limit: int = 20_000
    # Confidence cut-offs on the 0..1 match score of the best hit (see `_confidence`).
    high_threshold: float = 0.60
    medium_threshold: float = 0.45
    # A hit scoring under this share of the best hit's score is noise next to it ("computer running
    # slow" at 1.4 with "Wi-Fi slow" at 0.5): it is left out of the list shown to the person.
    relative_floor: float = 0.5
    # Above this many correction targets, buckets are also split by letter (fast at 50k documents,
    # at the cost of missing a typo in both of the first two letters).
    letter_bucket_above: int = 5_000
    # Index only the beginning of very long bodies: answers are near the top, logs are not.
    max_body_terms: int = 4000


@dataclass(slots=True)
class _FieldIndex:
    weight: float
    exact: bool
    vocab: dict[str, int]
    data: FloatArray
    indices: npt.NDArray[np.int32]
    indptr: npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class QueryTerms:
    """What a query was turned into: words with weights (as typed, corrected or synonyms), the
    same by stem, and the question as corrected."""

    weights: Mapping[str, float]
    stem_weights: Mapping[str, float]
    evidence: tuple[tuple[float, Mapping[str, float]], ...]
    corrected_words: tuple[str, ...]
    corrections: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RankedHit:
    index: int
    score: float
    match: float
    # The score from words alone (without the sentence vectors): what the relative floor compares,
    # since the vectors add a similar amount to every candidate and would let noise through.
    words_score: float = 0.0


class KbIndex:
    """An immutable, searchable snapshot of a knowledge base. Implements `KnowledgeBase`.

    Build it once (`from_dir`, `from_articles`) and share it between threads: searching never
    mutates anything but caches of pure functions.
    """

    def __init__(
        self,
        articles: Sequence[Article],
        problems: Sequence[LoadProblem] = (),
        *,
        tuning: SearchTuning | None = None,
        source: Path | None = None,
        semantic: bool = True,
    ) -> None:
        self.tuning = tuning or SearchTuning()
        self.articles: tuple[Article, ...] = tuple(articles)
        self.problems: tuple[LoadProblem, ...] = tuple(problems)
        self.source = source
        self._by_id = {a.id: i for i, a in enumerate(self.articles)}
        self._synonyms = build_synonym_map()
        uses_vectors = self.tuning.semantic_title_weight > 0 or self.tuning.semantic_body_weight > 0
        self._embedder: StaticEmbedder | None = load_embedder() if semantic and uses_vectors else None
        self._build()

    # ----- construction ----------------------------------------------------------------------

    @classmethod
    def from_dir(cls, path: Path | str, *, tuning: SearchTuning | None = None, semantic: bool = True) -> KbIndex:
        loaded = load_dir(Path(path))
        return cls(loaded.articles, loaded.problems, tuning=tuning, source=Path(path), semantic=semantic)

    @classmethod
    def from_articles(
        cls, articles: Sequence[Article], *, tuning: SearchTuning | None = None, semantic: bool = True
    ) -> KbIndex:
        return cls(articles, tuning=tuning, semantic=semantic)

    @property
    def semantic(self) -> bool:
        """Whether ranking uses sentence vectors (False: lexical only)."""
        return self._vectors is not None

    def _build(self) -> None:
        t = self.tuning
        title_words = [content_words(a.title) for a in self.articles]
        keyword_words = [
            content_words(" ".join((*a.tags, *a.synonyms, (a.category or "").replace("_", " "))))
            for a in self.articles
        ]
        summary_words = [content_words(a.summary) for a in self.articles]
        body_words = [content_words(a.plain_body)[: t.max_body_terms] for a in self.articles]

        surface_df: Counter[str] = Counter()
        trusted: set[str] = set()  # words from titles and keywords: curated, so safe correction targets
        term_df: Counter[str] = Counter()
        # Field weights as token repetition (the usual BM25F approximation): a title word counts as
        # several body words, with one saturation and one idf per document.
        repeats = (t.title_repeat, t.keywords_repeat, t.summary_repeat, t.body_repeat)
        exact_corpus: list[list[str]] = []
        stem_corpus: list[list[str]] = []
        head_strength: dict[str, dict[int, float]] = {}
        for i in range(len(self.articles)):
            doc_fields = (title_words[i], keyword_words[i], summary_words[i], body_words[i])
            surface_df.update(set().union(*doc_fields))
            trusted.update(title_words[i])
            trusted.update(keyword_words[i])
            exact: list[str] = []
            stemmed: list[str] = []
            for f, (words, repeat) in enumerate(zip(doc_fields, repeats, strict=True)):
                field_stems = stems(words)
                if f < 3:  # title, keywords, summary: where a match is strong evidence
                    strength = _HEAD_EVIDENCE if f < 2 else _SUMMARY_EVIDENCE
                    for term in set(field_stems):
                        if head_strength.setdefault(term, {}).get(i, 0.0) < strength:
                            head_strength[term][i] = strength
                for _ in range(repeat):
                    exact.extend(words)
                    stemmed.extend(field_stems)
            exact_corpus.append(exact)
            stem_corpus.append(stemmed)
            term_df.update(set(stemmed))

        # bm25s cannot index a corpus without a single token (an empty or unreadable folder):
        # such a knowledge base simply finds nothing.
        self._fields = [
            self._field_index(exact_corpus, t.exact_weight, exact=True),
            self._field_index(stem_corpus, t.stem_weight, exact=False),
        ] if any(exact_corpus) else []
        n_docs = max(len(self.articles), 1)
        self._idf = {term: math.log(1 + (n_docs - df + 0.5) / (df + 0.5)) for term, df in term_df.items()}
        self._max_idf = math.log(1 + (n_docs + 0.5) / 0.5)
        self._head_evidence = {
            term: (np.fromiter(docs.keys(), dtype=np.int64), np.fromiter(docs.values(), dtype=np.float32))
            for term, docs in head_strength.items()  # keys were inserted in document order: sorted
        }
        self._surface_df = surface_df

        # Correction targets: words seen in two documents (a word seen once is as likely a typo in
        # the corpus itself) or in a curated field, plus the synonym words.
        targets = {
            word
            for word, df in surface_df.items()
            if len(word) >= 3 and not word.isdigit() and (df >= 2 or word in trusted)
        }
        targets.update(key for key in self._synonyms if " " not in key)
        # Buckets so a lookup scans a slice: by length; for a large vocabulary also by first letter
        # and by second letter. One edit leaves the intended word starting with the typed first
        # or second letter, or having the typed first letter second (when the first was dropped).
        self._split_by_letter = len(targets) > t.letter_bucket_above
        buckets: dict[tuple[int, str, int], list[str]] = {}
        for word in targets:
            if self._split_by_letter:
                buckets.setdefault((len(word), word[0], 0), []).append(word)
                buckets.setdefault((len(word), word[1], 1), []).append(word)
            else:
                buckets.setdefault((len(word), "", 0), []).append(word)
        self._buckets = {key: sorted(words) for key, words in buckets.items()}

        # What the fuzzy re-rank compares a question with: title, tags and synonyms.
        self._match_text = [
            " ".join(dict.fromkeys([*title_words[i], *keyword_words[i]])) for i in range(len(self.articles))
        ]
        titled = [(i, " ".join(title_words[i])) for i in range(len(self.articles)) if title_words[i]]
        self._title_scan = titled if len(titled) <= t.title_scan_limit else []
        # token_sort_ratio is ratio() of the words sorted: sort the titles once, not per query.
        self._title_texts = [" ".join(sorted(text.split())) for _, text in self._title_scan]
        self._correct = lru_cache(maxsize=20_000)(self._correct_uncached)
        self._vectors = self._article_vectors()

    def _article_vectors(self) -> FloatArray | npt.NDArray[np.float16] | None:
        """One vector per article: the weighted sum of its title's and its text's unit vectors, so one
        dot product gives the weighted sum of both similarities. Kept in float32 when every article
        is scanned per query, in float16 (half the memory) when only re-ranked candidates are."""
        t = self.tuning
        if self._embedder is None or not self.articles:
            return None
        titles = self._embedder.embed([a.title for a in self.articles])
        texts = self._embedder.embed(
            [f"{a.title}\n{a.summary}\n{a.plain_body[:1000]}" for a in self.articles]
        )
        combined = t.semantic_title_weight * titles + t.semantic_body_weight * texts
        return combined if self._semantic_scan else combined.astype(np.float16)

    @property
    def _semantic_scan(self) -> bool:
        return self.tuning.semantic_candidates > 0 and len(self.articles) <= self.tuning.semantic_scan_limit

    def _field_index(self, corpus: list[list[str]], weight: float, *, exact: bool) -> _FieldIndex:
        retriever = bm25s.BM25(k1=self.tuning.k1, b=self.tuning.b)
        retriever.index(corpus, show_progress=False)
        scores = retriever.scores
        indices = np.asarray(scores["indices"], dtype=np.int32)
        indptr = np.asarray(scores["indptr"], dtype=np.int64)
        # Coverage binary-searches postings, so they must be sorted by document (bm25s builds them
        # so today; check rather than trust, and sort only rows that are not).
        descending = np.flatnonzero(np.diff(indices) <= 0) + 1
        descending = descending[~np.isin(descending, indptr)]  # a new row may start lower
        for row in sorted({int(r) for r in np.searchsorted(indptr, descending, side="right") - 1}):
            segment = indices[indptr[row] : indptr[row + 1]]
            if len(segment) > 1 and not np.all(segment[1:] > segment[:-1]):
                order = np.argsort(segment, kind="stable") + indptr[row]
                indices[indptr[row] : indptr[row + 1]] = indices[order]
                scores["data"][indptr[row] : indptr[row + 1]] = scores["data"][order]
        return _FieldIndex(
            weight=weight,
            exact=exact,
            vocab={str(k): int(v) for k, v in retriever.vocab_dict.items() if k != ""},
            data=np.asarray(scores["data"], dtype=np.float32),
            indices=indices,
            indptr=indptr,
        )

    # ----- KnowledgeBase protocol ------------------------------------------------------------

    def article_ids(self) -> frozenset[str]:
        return frozenset(self._by_id)

    def article(self, article_id: str) -> Article | None:
        index = self._by_id.get(article_id)
        return self.articles[index] if index is not None else None

    def render_article(self, article_id: str, max_chars: int | None = None) -> Mapping[str, Any] | None:
        from bot.kb.render import DEFAULT_MAX_CHARS, article_to_dict

        article = self.article(article_id)
        if article is None:
            return None
        return article_to_dict(article, max_chars=max_chars or DEFAULT_MAX_CHARS)

    def search(self, query: str, limit: int = 3, category: str | None = None) -> KbResult:
        if not has_topic(query):
            # "it's not working": nothing to search for; the caller offers a person instead.
            return KbResult(query=query, hits=(), confidence="none")
        ranked = self.rank(query, limit=limit, category=category)
        hits = tuple(
            KbHit(
                article_id=self.articles[r.index].id,
                title=self.articles[r.index].title,
                summary=self.articles[r.index].summary,
                score=round(r.score, 4),
                url=self.articles[r.index].url,
            )
            for r in ranked
        )
        if ranked and self.tuning.relative_floor > 0:
            floor = ranked[0].words_score * self.tuning.relative_floor
            keep = [i for i, r in enumerate(ranked) if i == 0 or r.words_score >= floor]
            ranked, hits = [ranked[i] for i in keep], tuple(hits[i] for i in keep)
        confidence = self._confidence(ranked, words=len(content_words(query)))
        if confidence == "none":
            # Still offer what was found (a "maybe" list is better than a dead end), but only
            # hits that match at least a little.
            hits = tuple(
                h for h, r in zip(hits, ranked, strict=True) if r.match >= self.tuning.medium_threshold / 2
            )
        return KbResult(query=query, hits=hits, confidence=confidence)

    # ----- ranking ---------------------------------------------------------------------------

    def query_terms(self, query: str) -> QueryTerms:
        t = self.tuning
        surface = list(dict.fromkeys(content_words(query)))
        weights: dict[str, float] = {}
        corrected: list[str] = []
        corrections: dict[str, str] = {}
        # Per word typed: how informative it is, and the stems that count as evidence for it.
        evidence: list[tuple[float, dict[str, float]]] = []

        def add(word: str, weight: float, group: dict[str, float]) -> None:
            weights[word] = max(weight, weights.get(word, 0.0))
            term = stem(word)
            group[term] = max(weight, group.get(term, 0.0))

        for position, word in enumerate(surface):
            group: dict[str, float] = {}
            known = word in self._surface_df or stem(word) in self._idf
            if known:
                add(word, 1.0, group)
                corrected.append(word)
            elif word not in self._synonyms:
                for candidate, weight in self._correct(word):
                    add(candidate, weight * t.correction_weight, group)
                    corrections.setdefault(word, candidate)
                corrected.append(corrections.get(word, word))
            else:
                corrected.append(word)
            # Synonyms of this word, and of this word joined with the next ("sign in" -> signin).
            # A word the articles never use ("pwd") leans on its synonyms almost fully.
            # A corrected word's synonyms count as little as a typed word's (times the correction):
            # a guess's synonyms must not outweigh the guess.
            synonym_weight = t.synonym_weight if known or word in corrections else 0.9
            if word in corrections:
                synonym_weight *= t.correction_weight
            keys = [corrected[-1]]
            if position + 1 < len(surface):
                keys.append(f"{surface[position]} {surface[position + 1]}")
            for key in keys:
                for synonym in self._synonyms.get(key, ()):
                    if synonym not in STOPWORDS and synonym not in surface:
                        add(synonym, synonym_weight, group)
            # Two words the articles write as one ("domain controller" -> DomainController,
            # "share point" -> SharePoint): the joined word too, almost as strongly.
            if position + 1 < len(surface):
                joined = word + surface[position + 1]
                if joined in self._surface_df and joined not in surface:
                    add(joined, t.joined_weight, group)
            # An unknown word is as informative as the rarest word: a question about something the
            # knowledge base never mentions must not look answered.
            importance = self._idf.get(stem(word), self._max_idf) if known else self._max_idf
            evidence.append((importance, group))
        stem_weights: dict[str, float] = {}
        for word, weight in weights.items():
            term = stem(word)
            stem_weights[term] = max(weight, stem_weights.get(term, 0.0))
        return QueryTerms(weights, stem_weights, tuple(evidence), tuple(corrected), corrections)

    def _correct_uncached(self, word: str) -> tuple[tuple[str, float], ...]:
        """Vocabulary words within one edit (two for long words) of `word`, best first, weighted.

        Closest distance wins; among equally close words the more common one gets more weight,
        because a typo is likelier to come from a common word than a rare one.
        """
        if len(word) < 4 or word.isdigit():
            return ()
        max_distance = 1 if len(word) < 8 else 2
        found: list[tuple[int, int, str]] = []
        keys = [(word[0], 0), (word[1], 0), (word[0], 1)] if self._split_by_letter else [("", 0)]
        seen: set[str] = set()
        for length in range(len(word) - max_distance, len(word) + max_distance + 1):
            for letter, position in keys:
                bucket = self._buckets.get((length, letter, position))
                if not bucket:
                    continue
                for candidate, distance, _ in process.extract(
                    word, bucket, scorer=OSA.distance, score_cutoff=max_distance, limit=8
                ):
                    if candidate not in seen:
                        seen.add(candidate)
                        found.append((int(distance), -self._surface_df.get(candidate, 1), candidate))
        if not found:
            return ()
        found.sort()
        best_distance, best_df = found[0][0], -found[0][1]
        out: list[tuple[str, float]] = []
        for distance, neg_df, candidate in found[:3]:
            if distance > best_distance:
                break
            share = min(1.0, (-neg_df) / max(best_df, 1))
            if share >= 0.2:
                out.append((candidate, max(share, 0.5)))
        return tuple(out)

    def _lexical(self, terms: QueryTerms) -> FloatArray:
        """Weighted BM25 score of every document: all postings gathered, then one bincount
        (one pass in C instead of a scatter-add per term)."""
        doc_parts: list[npt.NDArray[np.int32]] = []
        score_parts: list[FloatArray] = []
        for fi in self._fields:
            for term, weight in (terms.weights if fi.exact else terms.stem_weights).items():
                tid = fi.vocab.get(term)
                if tid is None:
                    continue
                start, end = fi.indptr[tid], fi.indptr[tid + 1]
                doc_parts.append(fi.indices[start:end])
                score_parts.append(fi.data[start:end] * np.float32(fi.weight * weight))
        n = len(self.articles)
        if not doc_parts:
            return np.zeros(n, dtype=np.float32)
        summed = np.bincount(np.concatenate(doc_parts), weights=np.concatenate(score_parts), minlength=n)
        return summed.astype(np.float32, copy=False)

    def _coverage(self, terms: QueryTerms, cand: npt.NDArray[np.int64]) -> FloatArray:
        """For each candidate, the share of the question's information it contains: each typed
        word's importance times the best evidence for it (the word itself counts fully, a
        correction or synonym as much as its weight; a title match more than a body match)."""
        stem_index = self._fields[-1]
        covered = np.zeros(len(cand), dtype=np.float32)
        total = 0.0
        for importance, group in terms.evidence:
            total += importance
            best = np.zeros(len(cand), dtype=np.float32)
            for term, weight in group.items():
                tid = stem_index.vocab.get(term)
                if tid is not None:
                    # Posting lists are sorted by document: a binary search per candidate beats
                    # touching every posting of a common word.
                    postings = stem_index.indices[stem_index.indptr[tid] : stem_index.indptr[tid + 1]]
                    found = _contains(postings, cand)
                    best[found] = np.maximum(best[found], weight * _BODY_EVIDENCE)
                head = self._head_evidence.get(term)
                if head is not None:
                    at = np.searchsorted(head[0], cand).clip(max=len(head[0]) - 1)
                    found = head[0][at] == cand
                    best[found] = np.maximum(best[found], weight * head[1][at[found]])
            covered += importance * best
        return covered / total if total > 0 else covered

    def rank(self, query: str, limit: int = 5, category: str | None = None) -> list[RankedHit]:
        """The best `limit` articles for `query`, best first."""
        if not self.articles or not self._fields or limit <= 0:
            return []
        t = self.tuning
        terms = self.query_terms(query)
        scores = self._lexical(terms)

        depth = min(t.rerank_depth, len(self.articles))
        if terms.weights and depth:
            top = np.argpartition(scores, len(scores) - depth)[len(scores) - depth :]
            candidates = set(top[scores[top] > 0].tolist())
        else:
            candidates = set()
        question = " ".join(w for w in terms.corrected_words)
        if question and self._title_scan:
            for _, similarity, pos in process.extract(
                " ".join(sorted(question.split())),
                self._title_texts,
                scorer=fuzz.ratio,
                limit=5,
                score_cutoff=70,
            ):
                del similarity
                candidates.add(self._title_scan[pos][0])
        question_vector = self._question_vector(query, terms)
        if question_vector is not None and self._semantic_scan:
            assert self._vectors is not None
            nearness = self._vectors @ question_vector
            k = min(t.semantic_candidates, len(nearness))
            candidates.update(np.argpartition(-nearness, k - 1)[:k].tolist())
        if not candidates:
            return []

        ordered = sorted(candidates)
        cand = np.asarray(ordered, dtype=np.int64)
        lexical = scores[cand]
        best_lexical = float(lexical.max()) if len(lexical) else 0.0
        relative = lexical / best_lexical if best_lexical > 0 else np.zeros_like(lexical)
        fuzzy = np.asarray(
            [
                _title_similarity(question, self._match_text[i]) if question and self._match_text[i] else 0.0
                for i in ordered
            ],
            dtype=np.float32,
        )
        coverage = self._coverage(terms, cand)
        final = relative + t.fuzzy_weight * fuzzy + t.coverage_weight * coverage
        words_only = final
        if question_vector is not None:
            assert self._vectors is not None
            asked = max(len(terms.evidence), 1)
            scale = min(1.0, t.semantic_full_weight_words / asked) if t.semantic_full_weight_words > 0 else 1.0
            final = final + scale * (self._vectors[cand].astype(np.float32) @ question_vector)
        if category is not None:
            boost = np.asarray(
                [1.15 if self.articles[i].category == category else 1.0 for i in ordered], dtype=np.float32
            )
            final, words_only = final * boost, words_only * boost
        match = np.clip(0.65 * coverage + 0.35 * fuzzy, 0.0, 1.0)
        order = np.argsort(-final, kind="stable")[:limit]
        return [RankedHit(int(cand[j]), float(final[j]), float(match[j]), float(words_only[j])) for j in order]

    def _question_vector(self, query: str, terms: QueryTerms) -> FloatArray | None:
        """The question's sentence vector, typed words replaced by their corrections (a typo's
        word pieces would point nowhere)."""
        if self._embedder is None or self._vectors is None or not terms.evidence:
            return None
        embedder = self._embedder
        # A word the articles never use but the vectors know as a word ("pointer", which the
        # corrector would read as "printer") keeps its own meaning.
        fixes = terms.corrections
        text = " ".join(w if w not in fixes or embedder.is_word(w) else fixes[w] for w in surface_words(query))
        return embedder.embed_one(text) if text else None

    def _confidence(self, ranked: Sequence[RankedHit], words: int = 2) -> str:
        if not ranked:
            return "none"
        best = ranked[0].match
        # One word ("printer") rarely says which of several articles is the answer: offer a choice.
        if best >= self.tuning.high_threshold and words >= 2:
            return "high"
        if best >= self.tuning.medium_threshold:
            return "medium"
        return "none"


def _contains(sorted_values: npt.NDArray[np.int32], probes: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
    at = np.searchsorted(sorted_values, probes).clip(max=len(sorted_values) - 1)
    return np.asarray(sorted_values[at] == probes)


def _title_similarity(question: str, title: str) -> float:
    """0..1: how well the question matches the title's words, whatever their order."""
    sorted_ratio = fuzz.token_sort_ratio(question, title)
    if " " not in question:
        # token_set_ratio calls any one-word question a perfect match of every title containing it.
        return sorted_ratio / 100.0
    return max(sorted_ratio, 0.9 * fuzz.token_set_ratio(question, title)) / 100.0
