"""D8: a PerfDatabase built while an ingest commits reads one committed version only."""

from __future__ import annotations

from tests.pipelines.fixtures import write_dsa_context, write_dsa_generation
from warehouse.ingest import ingest_paths
from warehouse.read import snapshot


def test_database_built_during_a_commit_uses_one_version(tmp_path, monkeypatch):
    import estimator.derived.store as store
    from estimator.lookup.database import PerfDatabase

    home = tmp_path / "wh"
    ingest_paths([write_dsa_context(tmp_path / "a")], home)
    before = snapshot(home).version
    real = store.build_partition
    landed = []

    def build_while_a_commit_lands(points, on_op=None):
        if not landed:  # another writer commits to the same slice mid-build
            landed.append(ingest_paths([write_dsa_generation(tmp_path / "b")], home))
        return real(points, on_op)

    monkeypatch.setattr(store, "build_partition", build_while_a_commit_lands)
    db = PerfDatabase(home=home)
    assert landed and snapshot(home).version > before
    assert {k[3] for k in db.grids.groups} == {"dsa_context"}
    later = PerfDatabase(home=home)  # the next build sees the new commit
    assert {k[3] for k in later.grids.groups} == {"dsa_context", "dsa_generation"}
