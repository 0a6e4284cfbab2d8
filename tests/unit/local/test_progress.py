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
    assert "SUCCESS done" in lines[-1]  # followed by the time spent (issue 16)


def test_each_line_shows_the_time_spent_and_the_bytes_per_second() -> None:
    # Given a clock at 0, then 4 seconds later
    times = iter([0.0, 4.0])
    log = io.StringIO()
    bar = ProgressBar(log, clock=lambda: next(times))
    # When 8 MiB have been sent after 4 seconds
    bar.show(50, "uploading disk.qcow2", done_bytes=8 * 1024 * 1024)
    # Then the line says so
    assert log.getvalue().rstrip().endswith("4s  2.0 MiB/s")


def test_following_a_percentage_shows_its_pace_and_the_time_left() -> None:
    # Given a job at 10% at 60 s, then 40% at 120 s (30 points a minute)
    times = iter([0.0, 60.0, 120.0])
    screen = Terminal()
    bar = ProgressBar(screen, clock=lambda: next(times))
    bar.show(10, "RUNNING convert")
    bar.show(40, "RUNNING convert")
    # Then the bar shows the time spent, the pace and the two minutes left at that pace
    assert screen.getvalue().rstrip().endswith("2m00s  30.0%/min  ~2m00s left")
