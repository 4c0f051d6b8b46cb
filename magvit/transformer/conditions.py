"""Condition tokens: a task's condition video tokenized by the 3D-VQ.

From pixels (sampling: the user's clip) the condition video is built and encoded. From tokens
(training on pre-tokenized clips, which carry no pixels) the clip is first decoded by the
tokenizer, then treated the same way. Every task's condition is a deterministic function of the
clip, so results are cached per (task, clip id); records that carry a precomputed
`condition/<task>` grid skip all of this.
"""
import collections

import numpy as np

from magvit.transformer.tasks import Task


class ConditionTokens:
    def __init__(self, tokenizer, cache_size: int = 100_000, chunk: int = 8):
        self.tokenizer = tokenizer
        self.cache_size = cache_size
        self.chunk = chunk
        self._cache: collections.OrderedDict = collections.OrderedDict()

    def from_pixels(self, task: Task, video: np.ndarray) -> np.ndarray:
        """uint8 [B, T, H, W, 3] -> int32 [B, t, h, w] tokens of the task's condition video."""
        return np.asarray(self.tokenizer.encode(task.condition_video(video)), np.int32)

    def from_tokens(self, task: Task, tokens: np.ndarray, clip_ids) -> np.ndarray:
        """int [B, t, h, w] clip tokens -> int32 [B, t, h, w] condition tokens (cached per clip)."""
        if not task.has_condition:
            return np.zeros_like(tokens, np.int32)
        keys = [(task.name, bytes(c) if not isinstance(c, str) else c.encode()) for c in clip_ids]
        missing = [i for i, k in enumerate(keys) if k not in self._cache]
        found = {k: self._cache[k] for k in keys if k in self._cache}
        for start in range(0, len(missing), self.chunk):
            rows = missing[start:start + self.chunk]
            padded = np.asarray(tokens)[rows + [rows[-1]] * (self.chunk - len(rows))]
            video = np.asarray(self.tokenizer.decode(padded))
            for i, ids in zip(rows, self.from_pixels(task, video)):
                found[keys[i]] = self._cache[keys[i]] = ids
                if len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
        return np.stack([found[k] for k in keys])
