"""How SW routing sums similarity-weighted win counts over stored exemplars, fast.

Two pieces, both plain numpy:

* ``OutcomeStore`` holds what each exemplar says about the models. Outcomes with few distinct
  score rows (binary scores, few models) are stored as distinct win-count *patterns* plus one
  index per exemplar, so a weighted sum is one ``bincount`` and a tiny matrix product. When
  patterns do not compress (continuous scores, many models) each exemplar keeps its own
  win-count matrix as ``M * M`` uint8 half-wins, summed per request by one matrix-vector
  product.
* ``ExemplarIndex`` finds the exemplar similarities. ``exact`` scores every exemplar (one
  matrix-vector product). ``clustered`` partitions the exemplars with spherical k-means at fit
  time; a request scores the centroids, re-weights the members of the ``n_probe`` most similar
  clusters exactly, and weights every other cluster's *pre-summed* win counts by the similarity
  to its mean vector (the mean of its members' similarities, exactly), corrected to second
  order for the spread of those similarities. RouteLLM's weights are flat
  (``gamma ** (1 + s / max s)`` spans 10..100 for gamma=10), so the far clusters matter in
  aggregate but not one by one; the error left is how a far cluster's outcomes vary with its
  members' similarity (measured in ``benchmarks/bench_latency.py``: max |dP| 5e-3 on MMLU).
"""

from __future__ import annotations

import math

import numpy as np

from ._kmeans import spherical_kmeans

__all__ = ["ExemplarIndex", "OutcomeStore", "default_n_clusters"]

#: Most points k-means iterates on; the rest are only assigned once at the end.
_MAX_SAMPLE = 65_536
#: k-means sample points per cluster, and Lloyd iterations on them. The clusters only group
#: exemplars for the ``clustered`` index, so a sample and a few iterations are enough: the
#: partition affects speed and approximation error, never which exemplars are stored.
_SAMPLE_PER_CLUSTER = 32
_KMEANS_ITERATIONS = 8
#: Elements per temporary block (about 16 MB of float32) in chunked computations.
_BLOCK_ELEMENTS = 1 << 22


class OutcomeStore:
    """Per-exemplar win counts of ``n_models`` models: distinct patterns, or half-counts.

    Use ``from_counts`` / ``from_scores``; ``counts(rows)`` gives flattened (r, M*M) win-count
    matrices for any rows, and the weighted-sum methods aggregate them.
    """

    def __init__(
        self,
        n_models: int,
        *,
        patterns: np.ndarray | None = None,
        pattern_index: np.ndarray | None = None,
        half_counts: np.ndarray | None = None,
    ) -> None:
        self.n_models = n_models
        self.patterns = patterns
        self.pattern_index = pattern_index
        self.half_counts = half_counts

    @property
    def kind(self) -> str:
        return "patterns" if self.patterns is not None else "counts"

    def __len__(self) -> int:
        if self.pattern_index is not None:
            return int(self.pattern_index.shape[0])
        assert self.half_counts is not None
        return int(self.half_counts.shape[0])

    @property
    def nbytes(self) -> int:
        arrays = (self.patterns, self.pattern_index, self.half_counts)
        return sum(a.nbytes for a in arrays if a is not None)

    @classmethod
    def from_counts(cls, counts: np.ndarray) -> OutcomeStore:
        """Patterns from win-count matrices (n, M, M) (pairwise battles, or compressible scores)."""
        n, m, _ = counts.shape
        flat = counts.reshape(n, m * m).astype(np.float32)
        patterns, inverse = np.unique(flat, axis=0, return_inverse=True)
        return cls(m, patterns=patterns, pattern_index=inverse.reshape(-1).astype(np.int32))

    @classmethod
    def from_scores(cls, scores: np.ndarray) -> OutcomeStore:
        """Patterns if the score rows compress (at most a quarter distinct), else half-counts.

        Higher score wins, equal scores tie (half a win each), NaN (unmeasured) plays no battle.
        Without compression each exemplar keeps its win-count matrix as uint8 half-wins
        (``M * M`` bytes): summing those per request is a type conversion and one matrix-vector
        product, about 70 times faster than rebuilding counts from stored score vectors.
        """
        s = np.asarray(scores, dtype=np.float32)
        n, m = s.shape
        keyed = np.where(np.isnan(s), np.float32(-1.0), s)  # scores lie in [0, 1]
        distinct, inverse = np.unique(keyed, axis=0, return_inverse=True)
        if distinct.shape[0] * 4 <= n:
            rows = np.where(distinct < 0, np.float32(np.nan), distinct)
            patterns = _counts_from_scores(rows).reshape(-1, m * m)
            return cls(m, patterns=patterns, pattern_index=inverse.reshape(-1).astype(np.int32))
        half = np.empty((n, m * m), dtype=np.uint8)
        step = max(1, _BLOCK_ELEMENTS // (m * m))
        for start in range(0, n, step):
            block = _counts_from_scores(s[start : start + step]).reshape(-1, m * m)
            half[start : start + step] = (2.0 * block).astype(np.uint8)
        return cls(m, half_counts=half)

    def take(self, order: np.ndarray) -> OutcomeStore:
        """The same store with exemplars reordered (or subset) by ``order``."""
        if self.patterns is not None:
            assert self.pattern_index is not None
            return OutcomeStore(
                self.n_models, patterns=self.patterns, pattern_index=self.pattern_index[order]
            )
        assert self.half_counts is not None
        half = np.ascontiguousarray(self.half_counts[order])
        return OutcomeStore(self.n_models, half_counts=half)

    # -- aggregation -------------------------------------------------------------------------------
    def counts(self, rows: np.ndarray | slice) -> np.ndarray:
        """Flattened win-count matrices of ``rows``, shape (r, M*M), float32."""
        if self.patterns is not None:
            assert self.pattern_index is not None
            return self.patterns[self.pattern_index[rows]]
        assert self.half_counts is not None
        return self.half_counts[rows].astype(np.float32) * np.float32(0.5)

    def _half_counts_sum(self, weights: np.ndarray, rows: np.ndarray | slice) -> np.ndarray:
        """Float32 product of weights (r,) or (b, r) with the rows' half-counts, as float64."""
        assert self.half_counts is not None
        block = self.half_counts[rows].astype(np.float32)
        return 0.5 * (weights.astype(np.float32) @ block).astype(np.float64)

    def weighted_sum(self, weights: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        """``sum_k weights[k] * counts[rows[k]]`` (all exemplars if ``rows`` is None), (M*M,).

        Exact (float64) for patterns; half-counts are summed in float32 blocks (relative error
        about 1e-6, far below anything that changes a routing decision).
        """
        if self.patterns is not None:
            assert self.pattern_index is not None
            index = self.pattern_index if rows is None else self.pattern_index[rows]
            n_patterns = self.patterns.shape[0]
            if n_patterns <= index.shape[0]:
                per_pattern = np.bincount(index, weights=weights, minlength=n_patterns)
                return per_pattern @ self.patterns.astype(np.float64)
            return weights @ self.patterns[index].astype(np.float64)
        m2 = self.n_models * self.n_models
        total = np.zeros(m2)
        n = len(self) if rows is None else rows.shape[0]
        step = max(1, _BLOCK_ELEMENTS // m2)
        for start in range(0, n, step):
            part = slice(start, min(n, start + step))
            total += self._half_counts_sum(weights[part], part if rows is None else rows[part])
        return total

    def weighted_sums(self, weights: np.ndarray) -> np.ndarray:
        """Batched ``weighted_sum`` over all exemplars: (b, n) weights -> (b, M*M)."""
        b, n = weights.shape
        m2 = self.n_models * self.n_models
        if self.patterns is not None:
            assert self.pattern_index is not None
            n_patterns = self.patterns.shape[0]
            per_pattern = np.empty((b, n_patterns))
            for row in range(b):
                per_pattern[row] = np.bincount(
                    self.pattern_index, weights=weights[row], minlength=n_patterns
                )
            return per_pattern @ self.patterns.astype(np.float64)
        total = np.zeros((b, m2))
        step = max(1, _BLOCK_ELEMENTS // m2)
        for start in range(0, n, step):
            part = slice(start, min(n, start + step))
            total += self._half_counts_sum(weights[:, part], part)
        return total

    def segment_sums(self, offsets: np.ndarray) -> np.ndarray:
        """Summed win counts of consecutive exemplar segments ``offsets[c]:offsets[c + 1]``."""
        n_segments = offsets.shape[0] - 1
        m2 = self.n_models * self.n_models
        sums = np.zeros((n_segments, m2))
        step = max(1, _BLOCK_ELEMENTS // m2)
        labels = np.repeat(np.arange(n_segments), np.diff(offsets))
        for start in range(0, len(self), step):
            stop = min(len(self), start + step)
            chunk_labels = labels[start:stop]
            bounds = np.flatnonzero(np.diff(chunk_labels)) + 1
            starts = np.concatenate([[0], bounds])
            sums[chunk_labels[starts]] += np.add.reduceat(
                self.counts(slice(start, stop)).astype(np.float64), starts, axis=0
            )
        return sums

    # -- persistence -------------------------------------------------------------------------------
    def to_arrays(self) -> dict[str, np.ndarray]:
        if self.patterns is not None:
            assert self.pattern_index is not None
            return {"patterns": self.patterns, "pattern_index": self.pattern_index}
        assert self.half_counts is not None
        return {"half_counts": self.half_counts}

    @classmethod
    def from_arrays(cls, n_models: int, arrays: dict[str, np.ndarray]) -> OutcomeStore:
        if "patterns" in arrays:
            patterns = np.ascontiguousarray(arrays["patterns"], dtype=np.float32)
            index = np.ascontiguousarray(arrays["pattern_index"], dtype=np.int32)
            if patterns.ndim != 2 or patterns.shape[1] != n_models * n_models or index.ndim != 1:
                raise ValueError("pattern arrays do not match the model list")
            if index.size and (index.min() < 0 or index.max() >= patterns.shape[0]):
                raise ValueError("pattern_index points outside patterns")
            return cls(n_models, patterns=patterns, pattern_index=index)
        half = np.ascontiguousarray(arrays["half_counts"])
        if half.dtype != np.uint8 or half.ndim != 2 or half.shape[1] != n_models * n_models:
            raise ValueError("half_counts do not match the model list")
        if half.size and half.max() > 2:
            raise ValueError("half_counts must be 0, 1 or 2 (half-wins of one battle)")
        return cls(n_models, half_counts=half)


def _counts_from_scores(scores: np.ndarray) -> np.ndarray:
    """Win counts (r, M, M) float32 from score rows (r, M): higher wins, equal ties, NaN none."""
    a = scores[:, :, None]
    b = scores[:, None, :]
    counts = (a > b).astype(np.float32)
    counts += np.float32(0.5) * (a == b)
    diag = np.arange(scores.shape[1])
    counts[:, diag, diag] = 0.0
    return counts


# -- search ----------------------------------------------------------------------------------------
class ExemplarIndex:
    """Exemplar embeddings, laid out for exact or clustered similarity weighting.

    For ``clustered``, exemplars are stored sorted by cluster (``offsets[c]:offsets[c + 1]`` is
    cluster ``c``), ``means[c]`` is the (unnormalised) mean of its members -- so
    ``q @ means[c]`` is exactly their mean similarity -- and ``cluster_counts[c]`` their summed
    win counts. ``order`` maps stored positions back to the caller's exemplar order.
    """

    def __init__(
        self,
        embeddings: np.ndarray,
        *,
        order: np.ndarray | None = None,
        offsets: np.ndarray | None = None,
        means: np.ndarray | None = None,
        cluster_counts: np.ndarray | None = None,
        residual_shape: np.ndarray | None = None,
    ) -> None:
        self.embeddings = embeddings
        self.order = order
        self.offsets = offsets
        self.means = means
        self.cluster_counts = cluster_counts
        self.residual_shape = residual_shape

    def spread(self, query: np.ndarray) -> np.ndarray:
        """Estimated variance of the members' similarities to ``query``, per cluster.

        Exactly ``q' S_c q`` for each cluster's covariance ``S_c`` if all clusters shared one
        shape; here the pooled within-cluster covariance, normalised to trace 1
        (``residual_shape``), gives the direction and each cluster's total variance
        ``1 - |mean|^2`` (exact for unit rows) the size.
        """
        assert self.means is not None and self.residual_shape is not None
        along = float(query @ self.residual_shape @ query)
        total = np.maximum(1.0 - np.einsum("kd,kd->k", self.means, self.means), 0.0)
        return along * total.astype(np.float64)

    @property
    def clustered(self) -> bool:
        return self.offsets is not None

    @property
    def nbytes(self) -> int:
        arrays = (self.embeddings, self.order, self.offsets, self.means, self.cluster_counts,
                  self.residual_shape)
        return sum(a.nbytes for a in arrays if a is not None)

    @classmethod
    def build_exact(cls, embeddings: np.ndarray) -> ExemplarIndex:
        return cls(np.ascontiguousarray(embeddings, dtype=np.float32))

    @classmethod
    def build_clustered(
        cls,
        embeddings: np.ndarray,
        store: OutcomeStore,
        n_clusters: int,
        rng: np.random.Generator,
    ) -> tuple[ExemplarIndex, OutcomeStore]:
        """The clustered index and the outcome store reordered to match it."""
        e = np.ascontiguousarray(embeddings, dtype=np.float32)
        sample_size = max(n_clusters, min(_MAX_SAMPLE, n_clusters * _SAMPLE_PER_CLUSTER))
        # Random seeding: k-means++ would cost n_clusters passes over the sample.
        _, labels, _ = spherical_kmeans(
            e, n_clusters, n_init=1, max_iter=_KMEANS_ITERATIONS, random_state=rng,
            sample_size=sample_size, init="random",
        )
        order = np.argsort(labels, kind="stable")
        sizes = np.bincount(labels, minlength=n_clusters)
        keep = sizes > 0  # drop clusters that ended empty after the final assignment
        offsets = np.concatenate([[0], np.cumsum(sizes[keep])]).astype(np.int64)
        sorted_embeddings = np.ascontiguousarray(e[order])
        sorted_store = store.take(order)
        sums = np.add.reduceat(sorted_embeddings.astype(np.float64), offsets[:-1], axis=0)
        means = (sums / sizes[keep][:, None]).astype(np.float32)
        cluster_counts = sorted_store.segment_sums(offsets)
        index = cls(
            sorted_embeddings,
            order=order.astype(np.int64),
            offsets=offsets,
            means=means,
            cluster_counts=cluster_counts,
            residual_shape=_pooled_residual_shape(sorted_embeddings, means, offsets),
        )
        return index, sorted_store

    def extend_clustered(self, embeddings: np.ndarray, store: OutcomeStore
                         ) -> tuple[ExemplarIndex, OutcomeStore]:
        """This clustered index with new exemplars, each put in the cluster whose mean points
        nearest to it: no k-means, so learning one exemplar costs a pass over the centroids
        and a copy, not a re-clustering of every exemplar.

        ``embeddings`` (r, dim) are the new unit rows; ``store`` holds this index's exemplars
        in stored order followed by the r new ones. The clusters' means and summed win counts
        take the new members in; the pooled residual shape (a normalised covariance, used
        for the second-order correction) is kept. Returns new arrays: this index and ``store``
        are left as they are (a router may be routing on them meanwhile).
        """
        assert self.clustered and self.means is not None and self.offsets is not None
        assert self.order is not None and self.cluster_counts is not None
        new = np.ascontiguousarray(embeddings, dtype=np.float32)
        n, r, k = self.embeddings.shape[0], new.shape[0], self.means.shape[0]
        norms = np.linalg.norm(self.means, axis=1)
        directions = self.means / np.where(norms > 0, norms, 1.0)[:, None]
        labels_new = np.argmax(new @ directions.T, axis=1)
        sizes = np.diff(self.offsets)
        added = np.bincount(labels_new, minlength=k)
        labels = np.concatenate([np.repeat(np.arange(k), sizes), labels_new])
        position = np.argsort(labels, kind="stable")  # in each cluster: old members, then new
        sums = self.means.astype(np.float64) * sizes[:, None]
        np.add.at(sums, labels_new, new.astype(np.float64))
        cluster_counts = self.cluster_counts.copy()
        np.add.at(cluster_counts, labels_new, store.counts(slice(n, n + r)).astype(np.float64))
        index = ExemplarIndex(
            np.ascontiguousarray(np.concatenate([self.embeddings, new])[position]),
            order=np.concatenate([self.order, np.arange(n, n + r)])[position],
            offsets=np.concatenate([[0], np.cumsum(sizes + added)]).astype(np.int64),
            means=(sums / (sizes + added)[:, None]).astype(np.float32),
            cluster_counts=cluster_counts,
            residual_shape=self.residual_shape,
        )
        return index, store.take(position)

    def probe(
        self, query: np.ndarray, n_probe: int, min_members: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Clusters to weigh exactly for one query, their members and similarities.

        The ``n_probe`` clusters with the highest mean similarity, extended (in that order)
        until they hold at least ``min_members`` exemplars. Returns ``(mean_sims, probed,
        members, sims)``: every cluster's mean similarity, the probed cluster ids, the stored
        positions of their members and the members' exact similarities (float64).
        """
        assert self.offsets is not None and self.means is not None
        mean_sims = (self.means @ query).astype(np.float64)
        k = self.means.shape[0]
        sizes = np.diff(self.offsets)
        take = min(n_probe, k)
        if take < k:
            probed = np.argpartition(-mean_sims, take - 1)[:take]
        else:
            probed = np.arange(k)
        if sizes[probed].sum() < min_members:
            ranked = np.argsort(-mean_sims, kind="stable")
            needed = int(np.searchsorted(np.cumsum(sizes[ranked]), min_members)) + 1
            probed = ranked[: min(k, max(take, needed))]
        probed = np.sort(probed)
        # Contiguous slices: no gather copy of the members' embeddings.
        sims = np.concatenate(
            [self.embeddings[self.offsets[c] : self.offsets[c + 1]] @ query for c in probed]
        ).astype(np.float64)
        starts = self.offsets[probed]
        lengths = sizes[probed]
        members = np.repeat(starts - np.cumsum(lengths) + lengths, lengths) + np.arange(
            lengths.sum()
        )
        return mean_sims, probed, members, sims

    # -- persistence -------------------------------------------------------------------------------
    def to_arrays(self) -> dict[str, np.ndarray]:
        arrays = {"embeddings": self.embeddings}
        if self.clustered:
            assert self.order is not None and self.offsets is not None
            assert self.means is not None and self.cluster_counts is not None
            assert self.residual_shape is not None
            arrays.update(
                order=self.order,
                offsets=self.offsets,
                means=self.means,
                cluster_counts=self.cluster_counts,
                residual_shape=self.residual_shape,
            )
        return arrays

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], n_models: int) -> ExemplarIndex:
        embeddings = np.ascontiguousarray(arrays["embeddings"], dtype=np.float32)
        if embeddings.ndim != 2:
            raise ValueError("embeddings must be 2-D")
        if "offsets" not in arrays:
            return cls(embeddings)
        n = embeddings.shape[0]
        offsets = np.ascontiguousarray(arrays["offsets"], dtype=np.int64)
        order = np.ascontiguousarray(arrays["order"], dtype=np.int64)
        means = np.ascontiguousarray(arrays["means"], dtype=np.float32)
        cluster_counts = np.ascontiguousarray(arrays["cluster_counts"], dtype=np.float64)
        residual_shape = np.ascontiguousarray(arrays["residual_shape"], dtype=np.float64)
        k = offsets.shape[0] - 1
        if (
            offsets.ndim != 1 or k < 1 or offsets[0] != 0 or offsets[-1] != n
            or np.any(np.diff(offsets) <= 0)
            or order.shape != (n,) or not np.array_equal(np.sort(order), np.arange(n))
            or means.shape != (k, embeddings.shape[1])
            or cluster_counts.shape != (k, n_models * n_models)
            or residual_shape.shape != (embeddings.shape[1],) * 2
        ):
            raise ValueError("clustered index arrays are inconsistent")
        return cls(embeddings, order=order, offsets=offsets, means=means,
                   cluster_counts=cluster_counts, residual_shape=residual_shape)


def _pooled_residual_shape(
    embeddings: np.ndarray, means: np.ndarray, offsets: np.ndarray
) -> np.ndarray:
    """Within-cluster covariance pooled over clusters, scaled to trace 1, (dim, dim) float64."""
    dim = embeddings.shape[1]
    scatter = np.zeros((dim, dim))
    labels = np.repeat(np.arange(means.shape[0]), np.diff(offsets))
    step = max(1, _BLOCK_ELEMENTS // dim)
    for start in range(0, embeddings.shape[0], step):
        block = embeddings[start : start + step] - means[labels[start : start + step]]
        scatter += (block.T @ block).astype(np.float64)
    trace = np.trace(scatter)
    return scatter / trace if trace > 0 else np.eye(dim) / dim


def default_n_clusters(n_exemplars: int) -> int:
    """2 sqrt(n) clusters: scoring the centroids and probing a few both cost O(sqrt(n) * dim)."""
    return max(1, min(n_exemplars, math.ceil(2.0 * math.sqrt(n_exemplars))))

