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


def test_per_op_views_counted_from_one_grouping_of_perf_points():
    con = duckdb.connect()
    con.sql("CREATE TABLE m AS SELECT * FROM (VALUES ('dsa_context', 1), ('dsa_context', 2), ('mla_context', 3), "
            "(NULL, 4)) v(op, x)")
    con.sql("CREATE VIEW perf_points AS SELECT * FROM m")
    for op in ("dsa_context", "dsa_generation"):  # as warehouse.views defines them; dsa_generation has no rows
        con.sql(f"CREATE VIEW {op} AS SELECT * FROM perf_points WHERE op = '{op}'")
    # same name pattern, another definition: counted by itself
    con.sql("CREATE VIEW mla_context AS SELECT * FROM perf_points WHERE op = 'dsa_context' AND x > 1")
    got = view_row_counts(con)
    assert got.rows() == [("dsa_context", 2), ("dsa_generation", 0), ("mla_context", 1), ("perf_points", 4)]
