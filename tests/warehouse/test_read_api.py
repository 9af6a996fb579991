"""warehouse.read.view_row_counts: every user view counted, whatever its name."""

import duckdb

from warehouse.read import view_row_counts


def test_counts_every_view_by_name():
    con = duckdb.connect()
    con.sql("CREATE TABLE t AS SELECT * FROM range(5) r(x)")
    con.sql("CREATE VIEW b AS SELECT * FROM t WHERE x < 2")
    con.sql("CREATE VIEW \"it's \"\"odd\"\"\" AS SELECT * FROM t")
    con.sql("CREATE VIEW a AS SELECT * FROM t WHERE x > 10")
    got = view_row_counts(con)
    assert got.rows() == [("a", 0), ("b", 2), ("it's \"odd\"", 5)]


def test_no_views_is_an_empty_frame():
    got = view_row_counts(duckdb.connect())
    assert got.height == 0 and got.columns == ["view", "rows"]
