"""Word vocabulary of the student models (BERM, BERM-O): tokenizer, word ids, JSON file.

Choices where the paper is silent:
- Tokens are lowercase runs of letters and digits, kept whole across `.`, `'` and `/` between two
  such runs, so "1/2", "3.5" and "men's" stay one token (sizes and fractions carry meaning in a
  hardware shop's titles): `re.findall(r"[a-z0-9]+(?:[.'/][a-z0-9]+)*", text.lower())`.
- Id 0 is padding and id 1 the unknown word; the known words follow from id 2, the most frequent
  first (ties broken alphabetically, so a build is deterministic).
- `max_size` counts every id, the two reserved ones included, so `len(vocab) <= max_size`.
- `encode` truncates to `max_len` and never pads: padding is the batch builder's job.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

log = logging.getLogger(__name__)

TOKEN_PATTERN = r"[a-z0-9]+(?:[.'/][a-z0-9]+)*"
_TOKEN_RE = re.compile(TOKEN_PATTERN)
PAD_ID = 0
UNK_ID = 1
FORMAT = "shopsearch-vocab-1"
# Token caps of the students' inputs, one definition for training (reranker/graph/context.py) and
# the serving artifact (reranker/serving/online.py), which records them in its manifest. Model
# shape, not a deployment knob, so constants rather than settings: serving must match training.
MAX_QUERY_TOKENS = 12
MAX_TITLE_TOKENS = 32


def tokenize(text: str) -> list[str]:
    """Lowercase word tokens: "DeWalt 1/2 in. Drill" -> ["dewalt", "1/2", "in", "drill"]."""
    return _TOKEN_RE.findall(text.lower())


class Vocab:
    """Word -> id map; ids 0 (padding) and 1 (unknown) are reserved."""

    def __init__(self, words: list[str]) -> None:
        """`words` are the known words in id order, the first getting id 2."""
        if len(set(words)) != len(words):
            raise ValueError("vocabulary words must be unique")
        self.words = list(words)
        self._ids = {word: index + 2 for index, word in enumerate(self.words)}

    @classmethod
    def build(cls, texts: Iterable[str], min_count: int = 2, max_size: int = 50000) -> "Vocab":
        """Words seen at least `min_count` times, the most frequent first, `max_size` ids in all."""
        if min_count < 1:
            raise ValueError(f"min_count must be >= 1, got {min_count}")
        if max_size < 2:
            raise ValueError(f"max_size must be >= 2 (padding and unknown), got {max_size}")
        counts: Counter[str] = Counter()
        for text in texts:
            counts.update(tokenize(text))
        kept = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
        vocab = cls(kept[: max_size - 2])
        log.info("vocabulary: %d words kept of %d seen (min_count=%d, max_size=%d)",
                 len(vocab.words), len(counts), min_count, max_size)
        return vocab

    def __len__(self) -> int:
        return len(self.words) + 2

    def __contains__(self, word: str) -> bool:
        return word in self._ids

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and self.words == other.words

    def id(self, word: str) -> int:
        """The id of one (already tokenized) word, 1 if unknown."""
        return self._ids.get(word, UNK_ID)

    def encode(self, text: str, max_len: int) -> list[int]:
        """Word ids of `text`, cut at `max_len` (no padding)."""
        if max_len < 1:
            raise ValueError(f"max_len must be >= 1, got {max_len}")
        return [self._ids.get(word, UNK_ID) for word in tokenize(text)[:max_len]]

    def save(self, path: Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"format": FORMAT, "token_pattern": TOKEN_PATTERN, "words": self.words}))

    @classmethod
    def load(cls, path: Path) -> "Vocab":
        data = json.loads(Path(path).read_text())
        if data.get("format") != FORMAT:
            raise ValueError(f"{path}: not a vocabulary file (format {data.get('format')!r}, expected {FORMAT!r})")
        if data.get("token_pattern") != TOKEN_PATTERN:
            raise ValueError(f"{path}: built with another tokenizer ({data.get('token_pattern')!r})")
        return cls(data["words"])
