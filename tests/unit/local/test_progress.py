"""The CLI's progress bar redraws one line on a terminal, and writes few plain lines anywhere else."""

from __future__ import annotations

import io

from diskport_local.progress import ProgressBar


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_one_line_is_redrawn_and_ended_with_a_newline() -> None:
    screen = Terminal()
    bar = ProgressBar(screen)
    bar.show(10, "RUNNING convert")
    bar.show(55.5, "RUNNING convert")
    bar.finish()
    drawn = screen.getvalue()
    assert drawn.count("\r") == 2
    assert drawn.endswith("\n") and drawn.count("\n") == 1
    assert " 55.5%  RUNNING convert" in drawn


def test_in_a_log_only_each_stage_and_quarter_gets_a_line() -> None:
    log = io.StringIO()
    bar = ProgressBar(log)
    for done in range(1, 101):
        bar.show(done, "exporting", f"block {done} of 100")
    bar.show(100, "SUCCESS done")
    lines = log.getvalue().splitlines()
    assert [line.split("%")[0].split()[-1] for line in lines] == ["1.0", "25.0", "50.0", "75.0", "100.0", "100.0"]
    assert lines[-1].endswith("SUCCESS done")
