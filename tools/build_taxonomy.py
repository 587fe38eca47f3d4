"""Build the compact O*NET / ESCO tables that ship inside the package.

The source files (O*NET 29.3 text release, the Career Changers Matrix, the official ESCO -> O*NET-SOC 2019
crosswalk, ESCO 1.2.0 occupations) are not part of a user's checkout; this script turns them into a few
zstd-compressed Parquet files under ``jobpred/taxonomy/data/`` that *are* committed. Run it only when the
O*NET release changes:

    python tools/build_taxonomy.py --source DIR   # DIR: the O*NET 29.3 / CCM / ESCO tables (see NOTICE)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import polars as pl

OUT = Path(__file__).resolve().parents[1] / "jobpred" / "taxonomy" / "data"


def _tsv(path: Path) -> pl.DataFrame:
    return pl.read_csv(path, separator="\t", infer_schema_length=0, quote_char=None, encoding="utf8-lossy")


def build(source: Path) -> dict[str, int]:
    onet = source / "onet_29_3"
    occ = _tsv(onet / "Occupation Data.txt").rename(
        {"O*NET-SOC Code": "code", "Title": "title", "Description": "description"}
    )
    zones = _tsv(onet / "Job Zones.txt").select(
        pl.col("O*NET-SOC Code").alias("code"), pl.col("Job Zone").cast(pl.Int8).alias("job_zone")
    )
    occ = occ.join(zones, on="code", how="left").with_columns(
        pl.col("job_zone").is_not_null().alias("data_level"),
        pl.col("code").str.slice(0, 2).alias("major_group"),
    )

    related = _tsv(onet / "Related Occupations.txt").select(
        pl.col("O*NET-SOC Code").alias("code"),
        pl.col("Related O*NET-SOC Code").alias("related_code"),
        pl.col("Relatedness Tier").alias("tier"),
        pl.col("Index").cast(pl.Int8).alias("index"),
    )

    alt = _tsv(onet / "Alternate Titles.tsv").select(
        pl.col("O*NET-SOC Code").alias("code"),
        pl.col("Alternate Title").alias("title"),
        pl.col("Short Title").alias("short_title"),
    )
    reported = _tsv(onet / "Sample of Reported Titles.txt").select(
        pl.col("O*NET-SOC Code").alias("code"), pl.col("Reported Job Title").alias("title")
    )
    short = alt.filter(pl.col("short_title").is_not_null() & (pl.col("short_title") != "")).select(
        "code", pl.col("short_title").alias("title")
    )
    titles = pl.concat(
        [
            occ.select("code", "title").with_columns(pl.lit("official").alias("source")),
            alt.select("code", "title").with_columns(pl.lit("alternate").alias("source")),
            short.with_columns(pl.lit("short").alias("source")),
            reported.with_columns(pl.lit("reported").alias("source")),
        ]
    ).unique(subset=["code", "title"], keep="first", maintain_order=True)

    ete = _tsv(onet / "Education, Training, and Experience.tsv")
    ete = ete.filter(pl.col("Scale ID").is_in(["RL", "RW"])).select(
        pl.col("O*NET-SOC Code").alias("code"),
        pl.col("Scale ID").alias("scale"),
        pl.col("Category").cast(pl.Int8).alias("category"),
        pl.col("Data Value").cast(pl.Float32).alias("percent"),
    )

    ccm = _tsv(source / "onet_career_changers_matrix" / "Career Changers Matrix.tsv").select(
        pl.col("O*NET-SOC Code").alias("code"),
        pl.col("Related O*NET-SOC Code").alias("related_code"),
        pl.col("Index").cast(pl.Int8).alias("index"),
    )

    esco_x = _tsv(source / "onet_esco_crosswalk" / "ESCO_to_ONET-SOC.tsv").select(
        pl.col("ESCO/ISCO Code").alias("esco_code"),
        pl.col("ESCO/ISCO Title").alias("esco_title"),
        pl.col("O*NET-SOC 2019 Code").alias("code"),
    )
    esco_occ = pl.read_csv(source / "esco_1_2_0" / "occupations_en.csv", infer_schema_length=0).select(
        pl.col("conceptUri").alias("concept_uri"),
        pl.col("code").alias("esco_code"),
        pl.col("preferredLabel").alias("label"),
    )

    tables = {
        "occupations": occ,
        "related": related,
        "titles": titles,
        "education": ete,
        "career_changers": ccm,
        "esco_crosswalk": esco_x,
        "esco_occupations": esco_occ,
    }
    OUT.mkdir(parents=True, exist_ok=True)
    counts = {}
    for name, df in tables.items():
        df.write_parquet(OUT / f"{name}.parquet", compression="zstd", compression_level=19)
        counts[name] = df.height
    (OUT / "VERSION.json").write_text(
        json.dumps(
            {
                "onet": "29.3 (May 2025), O*NET-SOC 2019",
                "career_changers_matrix": "O*NET 25.x, O*NET-SOC 2019",
                "esco_crosswalk": "O*NET ESCO v1.1.0 -> O*NET-SOC 2019",
                "esco": "1.2.0",
                "rows": counts,
            },
            indent=2,
        )
        + "\n"
    )
    return counts


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, required=True, help="folder holding onet_29_3/ etc.")
    print(build(parser.parse_args().source))
