"""O*NET-SOC 2019 taxonomy (packaged tables) and raw-title normalisation."""

from jobpred.taxonomy.onet import EDUCATION_LEVELS, Occupation, Taxonomy, read_table

__all__ = ["EDUCATION_LEVELS", "Occupation", "Taxonomy", "TitleNormalizer", "read_table"]


def __getattr__(name: str):
    # The normaliser builds a ~60k-key index; import it only when asked for.
    if name == "TitleNormalizer":
        from jobpred.taxonomy.normalize import TitleNormalizer

        return TitleNormalizer
    raise AttributeError(name)
