"""The semantic fall-back of title normalisation, for titles with no lexical match.

LSA word and occupation vectors (``data/semantic_words.parquet``, ``data/semantic_occupations.parquet``,
built by ``tools/build_taxonomy.py`` from O*NET titles and descriptions; shipped in the package): a query
is the idf-weighted mean of its words' vectors, the head noun counted twice, and occupations whose own
titles share the query's head noun are offered first.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from jobpred.taxonomy.onet import read_table


class Semantic:
    """Word and occupation vectors, loaded once."""

    def __init__(self) -> None:
        words = read_table("semantic_words")
        occ = read_table("semantic_occupations")
        self.index = {w: i for i, w in enumerate(words["word"].to_list())}
        self.words = _dequantise(words)  # (V, d) unit rows
        self.codes = occ["code"].to_list()
        self.occ = _dequantise(occ)  # (O, d) unit rows

    def nearest(self, query: str, heads: set[str], idf: dict[str, float], heads_of: dict[str, set[str]],
                top_k: int) -> list[tuple[str, float, float]]:
        """(code, cosine, share of the offered cosines) of the occupations nearest to ``query`` (canonical)."""
        rows, weights = [], []
        for w in query.split():
            i = self.index.get(w)
            if i is not None:
                rows.append(i)
                weights.append(idf.get(w, 1.0) * (2.0 if w in heads else 1.0))
        if not rows:
            return []
        q = np.asarray(weights) @ self.words[rows]
        q /= np.linalg.norm(q) or 1.0
        sims = self.occ @ q  # (O,)
        order = np.argsort(-sims)
        agree = [i for i in order if heads & heads_of.get(self.codes[i], set())]
        # occupations whose own titles share the head noun first ("Uber Driver": drivers), then two others
        top = agree[:top_k] + [i for i in order[:3] if i not in agree[:top_k]][:2]
        total = float(np.clip(sims[top], 0, None).sum()) or 1.0
        return [(self.codes[i], float(sims[i]), max(float(sims[i]), 0.0) / total) for i in top]


def _dequantise(df: pl.DataFrame) -> np.ndarray:
    """int8 rows times a per-row scale -> float32 (N, d)."""
    vecs = np.asarray(df["vec"].to_list(), dtype=np.float32)
    return vecs * df["scale"].to_numpy().astype(np.float32)[:, None]
