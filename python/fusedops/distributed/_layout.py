"""Where a wrapped optimizer's arrays live: runs of arrays laid end to end in one buffer (one
collective each), and the contiguous shard of a run that each rank owns under ZeRO-1."""
from __future__ import annotations

import numpy as np

from .._arrays import array_info
from .._flat import span

__all__ = ["runs", "shard_counts", "Segment"]


def runs(arrays, name="params"):
    """[(i, j, flat)]: arrays[i:j] lie end to end in one buffer and `flat` is a 1-D view over
    them; maximal runs, in order. Every array must be C-contiguous."""
    out, i = [], 0
    while i < len(arrays):
        flat = span([arrays[i]])
        if flat is None:
            raise ValueError(f"{name}[{i}] must be C-contiguous to be communicated in place")
        j = i + 1
        while j < len(arrays):
            longer = span([flat, arrays[j]])
            if longer is None:
                break
            flat, j = longer, j + 1
        out.append((i, j, flat))
        i = j
    return out


def shard_counts(n: int, parts: int) -> tuple[np.ndarray, np.ndarray]:
    """(counts, displs) of n elements split into `parts` contiguous shards, the first n % parts
    one element longer (the split MPI's Reduce_scatter / Allgatherv take)."""
    counts = np.full(parts, n // parts, np.int64)
    counts[: n % parts] += 1
    displs = np.zeros(parts, np.int64)
    displs[1:] = np.cumsum(counts)[:-1]
    return counts, displs


class Segment:
    """One run of parameters (a flat buffer) and its shards: `groups` lists, per optimizer
    group with elements in the run, (group index, first element, end element) in run
    coordinates; `pieces(rank)` the part of each group inside the rank's shard."""

    def __init__(self, first, end, flat, sizes, group_of, parts):
        self.first, self.end, self.flat = first, end, flat  # parameter indices [first, end)
        self.size = int(array_info("segment", flat).shape[0])
        self.dtype = array_info("segment", flat).dtype
        self.counts, self.displs = shard_counts(self.size, parts)
        self.groups, pos = [], 0
        for k in range(first, end):
            if self.groups and self.groups[-1][0] == group_of[k]:
                g, lo, _ = self.groups[-1]
                self.groups[-1] = (g, lo, pos + sizes[k])
            else:
                self.groups.append((group_of[k], pos, pos + sizes[k]))
            pos += sizes[k]

    def shard(self, rank) -> tuple[int, int]:
        lo = int(self.displs[rank])
        return lo, lo + int(self.counts[rank])

    def pieces(self, rank):
        """[(group, lo, hi)] in run coordinates: each group's elements in `rank`'s shard
        (empty pieces included, so every rank lists the same groups)."""
        a, b = self.shard(rank)
        return [(g, max(lo, a), max(max(lo, a), min(hi, b))) for g, lo, hi in self.groups]

    def piece_counts(self, index, parts):
        """(counts, displs) of group entry `index` over the ranks, relative to the group's start:
        what Gatherv / Scatterv of that group's state move."""
        g, lo, _ = self.groups[index]
        counts = np.array([self.pieces(r)[index][2] - self.pieces(r)[index][1]
                           for r in range(parts)], np.int64)
        displs = np.array([self.pieces(r)[index][1] - lo for r in range(parts)], np.int64)
        return counts, displs
