import polars as pl

from jobpred.taxonomy import Taxonomy, read_table


def test_packaged_tables_have_the_onet_sizes():
    tax = Taxonomy.load()
    assert len(tax) == 1016
    assert len(tax.data_level_codes) == 923
    related = read_table("related")
    per_code = related.group_by("code").agg(pl.len(), pl.col("index").sort())
    assert per_code.height == 923 and set(per_code["len"]) == {20}
    assert all(list(ix) == list(range(1, 21)) for ix in per_code["index"])
    assert read_table("career_changers").height == 7221
    assert read_table("esco_crosswalk")["code"].is_in(list(tax.occupations)).all()
    assert {z for c in tax.data_level_codes if (z := tax.job_zone(c))} == {1, 2, 3, 4, 5}


def test_to_code_is_strict_about_titles():
    tax = Taxonomy.load()
    assert tax.to_code("Registered Nurses") == "29-1141.00"
    assert tax.to_code("  registered   NURSES ") == "29-1141.00"
    assert tax.to_code("29-1141.00") == "29-1141.00"
    assert tax.to_code("15-1132.00") is None  # an O*NET-SOC 2010 code
    assert tax.to_code("Nurse") is None  # an alternate title is not an O*NET-SOC 2019 title
    assert tax.to_code("") is None and tax.to_code(None) is None


def test_related_index_matches_the_onet_file():
    tax = Taxonomy.load()
    # Registered Nurses: Index 1 in O*NET 29.3 is Acute Care Nurses
    assert tax.related("29-1141.00")[0] == ("29-1141.04", 1)
    assert tax.related_index("29-1141.00", "29-1141.04") == 1
    assert tax.related_index("29-1141.00", "15-1252.00") is None
    assert tax.related("11-9199.00") == []  # "All Other" codes have no related list
