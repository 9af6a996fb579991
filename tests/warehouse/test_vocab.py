import pytest

from warehouse.schema import OPS as SCHEMA_OPS
from warehouse.vocab import OPS, Op


def test_every_schema_op_parses_and_round_trips():
    assert [o.name for o in OPS] == list(SCHEMA_OPS)
    for name, phase in SCHEMA_OPS.items():
        op = Op.parse(name)
        assert op.name == name and op.phase == phase and str(op) == name


def test_fields_and_aliases():
    assert Op.parse("mla_generation_kernel") == Op("mla", "generation", True)
    assert Op.parse("context_dsa") == Op("dsa", "context", False)
    assert Op.parse("dsa_context").seq_column == "isl" and Op.parse("mla_generation").seq_column == "kv_len"
    assert Op.parse(Op("mla", "context")) == Op("mla", "context")


@pytest.mark.parametrize("bad", ["dsa", "dsa_context_kernel", "context_mla_kernel", "", None, "DSA_CONTEXT"])
def test_unknown_op_is_a_one_line_value_error(bad):
    with pytest.raises(ValueError, match="unknown op"):
        Op.parse(bad)
