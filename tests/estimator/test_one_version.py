"""D8: a PerfDatabase built while an ingest commits reads one committed version only."""

from __future__ import annotations

from tests.pipelines.fixtures import write_dsa_context, write_dsa_generation
from warehouse.derived import derived_version
from warehouse.ingest import ingest_paths
from warehouse.read import snapshot


def test_database_built_during_a_commit_uses_one_version(tmp_path, monkeypatch):
    import estimator.store as store
    from estimator.database import PerfDatabase

    home = tmp_path / "wh"
    ingest_paths([write_dsa_context(tmp_path / "a")], home)
    before = snapshot(home)
    real = store.calibrate

    def calibrate_while_a_commit_lands(points):
        ingest_paths([write_dsa_generation(tmp_path / "b")], home)  # another writer commits meanwhile
        return real(points)

    monkeypatch.setattr(store, "calibrate", calibrate_while_a_commit_lands)
    db = PerfDatabase(home=home)
    assert {k[3] for k in db.grids.groups} == {"dsa_context"}
    assert derived_version(home, "grids") == derived_version(home, "sol_calibration") == before.version
    assert snapshot(home).version > before.version
    monkeypatch.setattr(store, "calibrate", real)
    later = PerfDatabase(home=home)  # the next build sees the new commit
    assert {k[3] for k in later.grids.groups} == {"dsa_context", "dsa_generation"}
