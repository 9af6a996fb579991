"""`perfwh materialize` progress: a rich spinner with elapsed time over long phases on a terminal only."""

from __future__ import annotations

from perfwh.pipeline import PhaseProgress


def test_lines_pass_through_off_a_terminal(capsys):
    with PhaseProgress() as progress:
        assert not progress.tty  # pytest's captured stderr is no terminal
        progress("building perf_points ...")
        assert progress.live is None
        progress("derived tables rebuilt (1.0 s)")
    assert capsys.readouterr().err.splitlines() == ["building perf_points ...", "derived tables rebuilt (1.0 s)"]


def test_a_long_phase_shows_a_spinner_until_the_next_line(capsys):
    progress = PhaseProgress()
    progress.tty = True
    with progress:
        progress("ingesting 3 raw logs ...")
        live = progress.live
        assert live is not None and live.live.is_started
        [task] = live.tasks
        assert task.description == "ingesting 3 raw logs ..." and task.total is None
        progress("ingested 3 of 3 files")  # the next line ends the phase
        assert progress.live is None and not live.live.is_started
        progress("building perf_points ...")
    assert progress.live is None  # leaving the block (also on Ctrl-C) stops the spinner
    assert "ingested 3 of 3 files" in capsys.readouterr().err
