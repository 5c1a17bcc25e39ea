"""The console's progress: plain lines when the output is not a terminal, and the lines for the minutes outside the
steps (caching, a stage's set-up, the quality report)."""

import io

from hypersd.distill.progress_bar import ProgressBar, format_seconds, phase_line, plain_line


def test_plain_line_and_seconds():
    assert format_seconds(59.6) == "1:00" and format_seconds(3725) == "1:02:05" and format_seconds(-3) == "0:00"
    assert plain_line(5, 10, "k=4", 0.012345, 0.5, 10.0) == (
        "Hyper-SD: step 5/10, stage k=4, loss 0.01235, 0.50 steps/s, ETA 0:10"
    )
    assert plain_line(1, 10, "dmd", 1.0, None, None) == "Hyper-SD: step 1/10, stage dmd, loss 1"


def test_a_bar_that_is_not_on_a_terminal_prints_every_nth_step_and_the_last():
    stream = io.StringIO()
    bar = ProgressBar(6, 0, stream=stream, every=4)
    for n in range(1, 7):
        bar.update({"step": n, "loss": 0.5}, "k=2")
    lines = stream.getvalue().splitlines()
    assert [line.split(",")[0] for line in lines] == ["Hyper-SD: step 4/6", "Hyper-SD: step 6/6"]
    bar.write("Hyper-SD: quality report: measuring the teacher (1/3)")
    assert stream.getvalue().splitlines()[-1] == "Hyper-SD: quality report: measuring the teacher (1/3)"


def test_a_bar_that_is_off_prints_nothing():
    stream = io.StringIO()
    bar = ProgressBar(2, 0, enabled=False, stream=stream)
    bar.update({"step": 2, "loss": 0.5}, "k=2")
    bar.write("a line")
    assert stream.getvalue() == ""


def test_phase_lines():
    assert phase_line({"event": "cache", "what": "teacher latents", "done": 2, "of": 8}) == (
        "Hyper-SD: caching teacher latents (2/8)"
    )
    what = "the teacher's 25-step results for the regression pairs"
    assert phase_line({"event": "prepare", "stage": "dmd", "what": what, "done": 16, "of": 64}) == (
        f"Hyper-SD: stage dmd: preparing {what} (16/64)"
    )
    assert phase_line({"event": "report_progress", "what": "the k=2 LoRA", "done": 1, "of": 4}) == (
        "Hyper-SD: quality report: measuring the k=2 LoRA (2/4)"
    )
    assert phase_line({"event": "cache", "what": "captions"}) == "Hyper-SD: caching captions"
    for quiet in ({"event": "step", "loss": 1.0}, {"event": "export", "path": "x"}, {}):
        assert phase_line(quiet) is None
