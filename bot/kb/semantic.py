"""Sentence vectors for paraphrase-tolerant ranking, computed on the CPU with no download.

Lexical search cannot see that "can't get into my account" and "reset your password" are about
the same thing. A semantic signal can: each text becomes the average of static token vectors, and
two texts about the same thing point the same way.

The vectors are WordLlama's (https://github.com/dleemiller/WordLlama, MIT licence, © Lee Miller):
static token embeddings taken from a large language model's input layer and trained on paraphrase
and retrieval pairs, 256 dimensions for a 32,000-token vocabulary, 16 MB. They ship inside the
`wordllama` wheel on PyPI, so installing the bot installs them and nothing is fetched at run time
(CI and production hosts often have no route to a model hub).

We read the two files (tokenizer, weights) with `tokenizers` and `safetensors` instead of importing
`wordllama`: its import configures the root logger (which would put INFO lines into our JSON logs
and `kb search --jsonl` sessions) and its loader looks in the wrong folder for the bundled tokenizer
and then tries the network. What we need from it is one line of arithmetic: the mean of the
vectors of a text's tokens, normalised.

If the package is missing or its files cannot be read, `load_embedder()` returns None and search
is lexical only; the reason is logged once.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

log = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float32]

_WEIGHTS = ("weights", "l2_supercat_256.safetensors")
_TOKENIZER = ("tokenizers", "l2_supercat_tokenizer_config.json")
_TENSOR = "embedding.weight"
# Texts are cut to this many characters before tokenising: a page's opening says what it is about,
# and the cost of a long body is all tokenising.
MAX_CHARS = 2000
_BATCH = 256


class StaticEmbedder:
    """Texts to unit vectors: mean of static token vectors. Thread-safe (read-only after init)."""

    def __init__(self, vectors: FloatArray, tokenizer: Any, name: str) -> None:
        self.vectors = vectors
        self.dim = int(vectors.shape[1])
        self._tokenizer = tokenizer
        self.name = name

    def embed(self, texts: Sequence[str]) -> FloatArray:
        """One unit vector per text (a row of zeros for a text with no tokens)."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        last = len(self.vectors) - 1
        for start in range(0, len(texts), _BATCH):
            chunk = [text[:MAX_CHARS] for text in texts[start : start + _BATCH]]
            encodings = self._tokenizer.encode_batch(chunk, add_special_tokens=False)
            for row, encoding in enumerate(encodings, start):
                ids = encoding.ids
                if ids:
                    out[row] = self.vectors[np.clip(np.asarray(ids, dtype=np.int64), 0, last)].mean(axis=0)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        norms[norms == 0] = 1.0
        out /= norms
        return out

    def embed_one(self, text: str) -> FloatArray:
        vector: FloatArray = self.embed([text])[0]
        return vector

    def is_word(self, word: str) -> bool:
        """Whether the vocabulary holds `word` as one token: a common English word, not a typo
        (misspellings fall apart into pieces: "calender" -> "cal" + "ender")."""
        return len(self._tokenizer.encode(word, add_special_tokens=False).ids) == 1


def _package_dir() -> Path | None:
    # find_spec on a top-level name locates the package without running its __init__.
    spec = importlib.util.find_spec("wordllama")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


@lru_cache(maxsize=1)
def load_embedder() -> StaticEmbedder | None:
    """The bundled embedder, loaded once per process; None (search stays lexical) if unavailable."""
    try:
        from safetensors import safe_open
        from tokenizers import Tokenizer

        root = _package_dir()
        if root is None:
            raise FileNotFoundError("the wordllama package is not installed")
        weights, tokenizer_file = root.joinpath(*_WEIGHTS), root.joinpath(*_TOKENIZER)
        with safe_open(str(weights), framework="np") as handle:
            vectors = np.ascontiguousarray(handle.get_tensor(_TENSOR), dtype=np.float32)
        tokenizer = Tokenizer.from_file(str(tokenizer_file))
        if vectors.ndim != 2 or vectors.shape[0] < 1000:
            raise ValueError(f"unexpected embedding shape {vectors.shape}")
    except Exception as exc:  # any failure means "no semantic signal", never a crash
        log.warning("knowledge-base search is lexical only: no sentence vectors (%s: %s)", type(exc).__name__, exc)
        return None
    return StaticEmbedder(vectors, tokenizer, name=weights.stem)
