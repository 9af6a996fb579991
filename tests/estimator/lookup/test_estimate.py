"""Estimate (estimator.lookup.estimate): neighbours, the JSON form and the repr a person reads."""

import json
import math

from estimator.common import Source
from estimator.lookup.estimate import Estimate, Neighbour
from estimator.lookup.interpolate import lookup_one
from tests.estimator.conftest import two_by_two_group


def _estimate(**kw) -> Estimate:
    log2_ratio, _, cells = lookup_one(two_by_two_group(), 64, 0, 3, 64)  # halfway between batch 2 and 4
    base = dict(latency_ms=2.0 * 2**log2_ratio, source=Source.interpolated, op="dsa_context", system="h200_sxm",
                framework="trtllm", version="1.0", sol_ms=2.0, raw_sol_ms=1.5, log2_ratio=log2_ratio,
                neighbour_cells=cells, low_ms=2.5, high_ms=3.1)
    return Estimate(**{**base, **kw})


def test_neighbours_are_the_cells_used_with_weights():
    est = _estimate()
    assert est.log2_ratio == 0.5
    cells = sorted((n.batch_size, n.seq_len, n.weight) for n in est.neighbours)
    assert cells == [(2, 64, 0.5), (4, 64, 0.5)]
    assert all(isinstance(n, Neighbour) and n.num_heads == 64 and n.source is Source.measured
               for n in est.neighbours)


def test_as_dict_is_plain_json():
    d = json.loads(json.dumps(_estimate(transferred_from="h100_sxm").as_dict()))
    assert d["latency_ms"] == 2.0 * 2**0.5 and d["source"] == "interpolated" and d["version"] == "1.0"
    assert d["low_ms"] == 2.5 and d["high_ms"] == 3.1 and d["transferred_from"] == "h100_sxm"
    assert [(n["batch_size"], n["weight"]) for n in sorted(d["neighbours"], key=lambda n: n["batch_size"])] \
        == [(2, 0.5), (4, 0.5)]


def test_repr_names_what_a_person_wants():
    text = repr(_estimate())
    assert "latency_ms=2.82843" in text and "source=interpolated" in text and "neighbours=2" in text
    assert "transferred_from" not in text
    assert "transferred_from='h100_sxm'" in repr(_estimate(transferred_from="h100_sxm"))


def test_defaults_say_no_interval():
    est = Estimate(1.0, Source.sol, "mla_generation", "h200_sxm", "trtllm", "1.0", 1.0, 1.0, 0.0)
    assert math.isnan(est.low_ms) and math.isnan(est.high_ms) and est.neighbours == ()
    assert est._replace(latency_ms=2.0).latency_ms == 2.0 and est.latency_ms == 1.0
