"""Chinese-CLIP's tokenizer without torch: the same BERT vocab (``clip_vocab.txt``, copied from the cn_clip 1.6.0
wheel, so a serving install needs neither cn_clip nor torch) through the Rust ``tokenizers`` library, producing
the ids ``cn_clip.clip.tokenize`` produces (tested on varied text)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tokenizers import BertWordPieceTokenizer

CONTEXT_LENGTH = 52


VOCAB = Path(__file__).with_name("clip_vocab.txt")


class ClipTokenizer:
    def __init__(self, vocab: Path | None = None, context_length: int = CONTEXT_LENGTH) -> None:
        self._tokenizer = BertWordPieceTokenizer(
            str(vocab or VOCAB), clean_text=True, handle_chinese_chars=True, lowercase=True
        )
        self.context_length = context_length
        self.cls_id = self._tokenizer.token_to_id("[CLS]")
        self.sep_id = self._tokenizer.token_to_id("[SEP]")
        self.pad_id = self._tokenizer.token_to_id("[PAD]")

    def __call__(self, texts: Sequence[str], trim: bool = False) -> np.ndarray:
        """(len(texts), context_length) int64: [CLS] ids… [SEP] then padding; over-long texts are cut.

        ``trim`` drops the padding columns that no text of the batch reaches. The text encoder masks padding out
        of attention and reads the [CLS] position, so the vectors stay the same (to float rounding, tested) while
        a short query costs a fraction of the full 52-token pass."""
        rows = [
            [self.cls_id, *encoding.ids[: self.context_length - 2], self.sep_id]
            for encoding in self._tokenizer.encode_batch(list(texts), add_special_tokens=False)
        ]
        width = max((len(ids) for ids in rows), default=2) if trim else self.context_length
        out = np.full((len(texts), width), self.pad_id, dtype=np.int64)
        for row, ids in enumerate(rows):
            out[row, : len(ids)] = ids
        return out

    @property
    def max_text_tokens(self) -> int:
        """Tokens of text the model reads: the context less [CLS] and [SEP]."""
        return self.context_length - 2

    def token_count(self, text: str) -> int:
        return len(self._tokenizer.encode(text, add_special_tokens=False).ids)

    def truncated(self, text: str) -> bool:
        """Whether Chinese-CLIP reads only part of this text."""
        return self.token_count(text) > self.max_text_tokens
