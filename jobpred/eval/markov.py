"""First-order Markov baseline over O*NET-SOC codes, smoothed with O*NET's own transition knowledge.

    model = MarkovModel.fit(pl.scan_parquet("RUN_DIR/examples/train.parquet"), alpha=10.0)
    ranked = model.rank(last_codes, top_k=10)     # list[str] per row, best first

Counts come from every pair of consecutive jobs in the train split (history -> history and the last
history job -> target), both codes known. For a state ``a`` with ``N_a`` observed transitions:

    P(b | a) = (count(a, b) + alpha * prior(b | a)) / (N_a + alpha)

``prior(. | a)`` puts the train split's overall "same occupation again" rate on ``a`` itself and spreads
the rest over O*NET Related Occupations (weight 1/Index) and the Career Changers Matrix (weight 1/Index),
mixed ``1 - changers_weight : changers_weight``. An unseen state (N_a = 0) is ranked by the prior alone;
every list is topped up with the most popular targets, and a row without a known last code gets them
all. Training is a handful of polars expressions (explode + group_by): 1M persons take seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from jobpred.taxonomy import read_table


def transition_pairs(examples: pl.LazyFrame) -> pl.LazyFrame:
    """(src, dst) for each consecutive pair of jobs with both codes known, target included."""
    seq = examples.select(
        pl.concat_list(
            pl.col("history").list.eval(pl.element().struct.field("onet_code")),
            pl.col("target_code").cast(pl.String),
        ).alias("seq")
    )
    seq = seq.filter(pl.col("seq").list.len() >= 2)
    pairs = seq.select(
        pl.col("seq").list.slice(0, pl.col("seq").list.len() - 1).alias("src"),
        pl.col("seq").list.slice(1).alias("dst"),
    )
    return pairs.explode("src", "dst").drop_nulls()


def popular_targets(examples: pl.LazyFrame, top_k: int) -> list[str]:
    """The ``top_k`` most frequent target codes (ties: by code)."""
    counts = examples.group_by("target_code").len().drop_nulls()
    return counts.sort(["len", "target_code"], descending=[True, False]).head(top_k).collect()[
        "target_code"
    ].to_list()


def onet_prior(stay_rate: float, changers_weight: float) -> pl.DataFrame:
    """(src, dst, p): the smoothing distribution of each O*NET state (see the module docstring)."""
    parts = []
    for name, weight in (("related", 1.0 - changers_weight), ("career_changers", changers_weight)):
        t = read_table(name).select(pl.col("code").alias("src"), pl.col("related_code").alias("dst"),
                                    (1.0 / pl.col("index").cast(pl.Float64)).alias("w"))
        parts.append(t.with_columns(pl.lit(name).alias("kind"), pl.lit(weight).alias("mix")))
    rel = pl.concat(parts).with_columns(pl.col("w") / pl.col("w").sum().over("src", "kind"))
    # A state with only one of the two tables gives that table the whole non-stay mass.
    present = rel.select("src", "kind", "mix").unique().with_columns(
        pl.when(pl.col("mix").sum().over("src") > 0)
        .then(pl.col("mix") / pl.col("mix").sum().over("src")).otherwise(0.0).alias("mix")
    )
    rel = rel.drop("mix").join(present, on=["src", "kind"])
    moves = rel.group_by("src", "dst").agg(((1.0 - stay_rate) * pl.col("w") * pl.col("mix")).sum().alias("p"))
    codes = read_table("occupations").select(pl.col("code").alias("src"))
    has_moves = moves.select("src").unique()
    stay = codes.join(has_moves.with_columns(pl.lit(True).alias("_m")), on="src", how="left").select(
        "src", pl.col("src").alias("dst"),
        pl.when(pl.col("_m")).then(pl.lit(stay_rate)).otherwise(pl.lit(1.0)).alias("p"),
    )
    return pl.concat([moves, stay]).group_by("src", "dst").agg(pl.col("p").sum())


@dataclass
class MarkovModel:
    counts: pl.DataFrame  # (src, dst, n)
    prior: pl.DataFrame  # (src, dst, p), sums to 1 per src
    popular: list[str]
    alpha: float
    stay_rate: float

    @classmethod
    def fit(cls, examples: pl.LazyFrame | pl.DataFrame, alpha: float = 10.0, changers_weight: float = 0.5,
            top_k: int = 10) -> MarkovModel:
        examples = examples.lazy()
        counts = transition_pairs(examples).group_by("src", "dst").agg(pl.len().cast(pl.Float64).alias("n"))
        counts = counts.collect()
        total = counts["n"].sum()
        stay = counts.filter(pl.col("src") == pl.col("dst"))["n"].sum()
        stay_rate = float(stay / total) if total else 0.0
        return cls(counts=counts, prior=onet_prior(stay_rate, changers_weight),
                   popular=popular_targets(examples, top_k), alpha=alpha, stay_rate=stay_rate)

    def rank(self, last_codes: pl.Series, top_k: int = 10) -> pl.Series:
        """Ranked next codes (list[str], best first, ``top_k`` long) for each state in ``last_codes``."""
        states = last_codes.cast(pl.String).drop_nulls().unique()
        keep = pl.col("src").is_in(states.implode())
        observed = self.counts.filter(keep)
        totals = observed.group_by("src").agg(pl.col("n").sum().alias("N"))
        scores = (
            observed.join(self.prior.filter(keep), on=["src", "dst"], how="full", coalesce=True)
            .join(totals, on="src", how="left")
            .with_columns(
                ((pl.col("n").fill_null(0.0) + self.alpha * pl.col("p").fill_null(0.0))
                 / (pl.col("N").fill_null(0.0) + self.alpha)).alias("score")
            )
        )
        best = (
            scores.sort(["src", "score", "dst"], descending=[False, True, False])
            .group_by("src", maintain_order=True).agg(pl.col("dst").head(top_k).alias("ranked"))
        )
        popular = pl.lit(pl.Series([self.popular], dtype=pl.List(pl.String)))
        frame = pl.DataFrame({"src": last_codes.cast(pl.String)}).join(
            best, on="src", how="left", maintain_order="left"
        )
        return frame.select(
            pl.concat_list(pl.col("ranked").fill_null(pl.lit([], dtype=pl.List(pl.String))), popular)
            .list.unique(maintain_order=True).list.head(top_k).alias("ranked")
        )["ranked"]
