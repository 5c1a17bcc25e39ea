"""hypersd.train.progress: the engine's JSON-lines log → progress, ETA and the status line."""

import json
import math
import os

import pytest

from hypersd.train.progress import (
    ETA_WINDOW,
    LogFollower,
    TrainProgress,
    format_duration,
    format_progress,
    progress_from_records,
)

# records shaped like hypersd.distill.engine.run_distillation writes them (every record gets "time" first)


def start(t, stages=(8, 4, 2, 1), steps=3, base="sd15"):
    config = {"stages": list(stages), "steps_per_stage": steps, "rank": 16, "out": "x"}
    return {"time": t, "event": "start", "config": config, "base": base, "samples": 12, "processes": 1}


def cached(t):
    return {"time": t, "event": "cached", "latents": 12, "captions": 12, "buckets": {"512x512": 12}}


def step(t, n, loss, k, sps=2.0, steps=3):
    return {
        "time": t, "event": "step", "loss": loss, "loss_mse": loss, "loss_adv": 0.0, "loss_disc": 0.0, "stage": k,
        "step": n, "step_in_stage": (n - 1) % steps + 1, "lr": 1e-4, "samples_per_s": sps,
    }  # fmt: skip


def checkpoint(t, n, reason="periodic"):
    return {"time": t, "event": "checkpoint", "reason": reason, "global_step": n, "path": f"/run/checkpoint-{n}"}


def stage_end(t, k, n):
    return {"time": t, "event": "stage_end", "stage": k, "global_step": n}


def export(t, path, stages):
    return {"time": t, "event": "export", "path": path, "stages": stages}


def resume(t, n):
    return {"time": t, "event": "resume", "from": f"/run/checkpoint-{n}", "global_step": n}


def whole_run():
    """Two stages (k=2, k=1) of 3 steps: caching, steps, a stage end with its export and checkpoint, done."""
    return [
        start(0, stages=(2, 1)),
        {"time": 1, "event": "cache", "what": "VAE latents", "done": 1, "of": 12},
        cached(5),
        step(10, 1, 0.5, 2), step(12, 2, 0.4, 2), step(14, 3, 0.3, 2),
        export(15, "/L/x-2step.safetensors", [2]), stage_end(15, 2, 3), checkpoint(16, 3, "stage k=2 done"),
        step(20, 4, 0.2, 1), step(22, 5, 0.15, 1), step(24, 6, 0.1, 1),
        export(25, "/L/x-1step.safetensors", [2, 1]), stage_end(25, 1, 6), checkpoint(26, 6, "stage k=1 done"),
        export(27, "/L/x.safetensors", [2, 1]), {"time": 28, "event": "done", "global_step": 6, "final": "/L/x.safetensors"},
    ]  # fmt: skip


# ------------------------------------------------------------------------------------------------ records


def test_no_records_is_starting():
    p = progress_from_records([])
    assert (p.phase, p.step, p.total_steps, p.stage, p.eta_seconds, p.updated) == ("starting", 0, 0, None, None, None)
    assert format_progress(p) == "Starting: loading the model…"


def test_caching_phase_and_its_counter():
    records = whole_run()
    p = progress_from_records(records[:1])
    assert (p.phase, p.base, p.stages, p.steps_per_stage, p.total_steps) == ("caching", "sd15", (2, 1), 3, 6)
    assert format_progress(p) == "Caching latents and captions…"
    p = progress_from_records(records[:2])
    assert p.cache == ("VAE latents", 1, 12)
    assert format_progress(p) == "Caching latents and captions… (VAE latents 1 / 12)"


def test_training_before_the_first_step_shows_the_first_stage():
    p = progress_from_records(whole_run()[:3])
    assert (p.phase, p.step, p.stage, p.stage_index, p.loss, p.eta_seconds) == ("training", 0, 2, 1, None, None)
    assert format_progress(p) == "Stage k=2 (1 of 2) · step 0 / 6 (0%)"


def test_a_stage_preparing_before_its_first_step_says_what_it_prepares():
    what = "the teacher's 25-step results for the regression pairs"
    records = [start(0, stages=(1, "dmd"), steps=2), cached(1), step(2, 1, 0.5, 1), step(3, 2, 0.4, 1),
               {"time": 4, "event": "prepare", "stage": "dmd", "what": what, "done": 16, "of": 64}]  # fmt: skip
    p = progress_from_records(records)
    assert (p.phase, p.stage, p.stage_index, p.cache, p.eta_seconds) == ("preparing", "dmd", 2, (what, 16, 64), None)
    assert format_progress(p) == f"Stage dmd: preparing {what}… (16 / 64)"
    p = progress_from_records([*records, step(5, 3, 0.9, "dmd")])
    assert (p.phase, p.cache) == ("training", None)
    assert format_progress(p).startswith("Stage dmd (2 of 2) · step 3 / 4 (75%) · loss 0.9")


def test_the_report_says_what_it_measures_and_its_eta_from_the_loras_measured():
    records = [start(0, stages=(2, 1), steps=1), cached(1), step(2, 1, 0.5, 2), step(3, 2, 0.4, 1),
               {"time": 4, "event": "report_start", "loras": 2, "level": "quick"}]  # fmt: skip
    p = progress_from_records(records)
    assert (p.phase, p.eta_seconds) == ("reporting", None)
    assert format_progress(p) == "Measuring the LoRAs for the quality report (after 2 steps)…"

    def measuring(t, done, what):
        return {"time": t, "event": "report_progress", "what": what, "done": done, "of": 4}

    records += [measuring(5, 0, "the teacher"), measuring(65, 1, "the k=2 LoRA")]
    p = progress_from_records(records)
    # the teacher's minute is not a LoRA's: no ETA until one LoRA has been measured
    assert (p.cache, p.eta_seconds) == (("the k=2 LoRA", 1, 4), None)
    assert format_progress(p) == "Measuring the LoRAs for the quality report (after 2 steps)… (the k=2 LoRA: 2 of 4)"
    p = progress_from_records([*records, measuring(95, 2, "the k=1 LoRA")])
    assert p.eta_seconds == 60.0  # 30 s per LoRA, this one and one more
    assert format_progress(p).endswith(f"(the k=1 LoRA: 3 of 4, ETA {format_duration(60.0)})")
    p = progress_from_records([*records, {"time": 200, "event": "done", "global_step": 2, "final": "x.safetensors"}])
    assert format_progress(p) == "Done after 2 steps: x.safetensors"


def test_every_field_through_a_whole_run():
    records = whole_run()
    mid = progress_from_records(records[:10])  # up to step 4, the first of stage k=1
    assert (mid.phase, mid.step, mid.stage, mid.stage_index, mid.loss) == ("training", 4, 1, 2, 0.2)
    assert mid.losses == [(1, 0.5, 2), (2, 0.4, 2), (3, 0.3, 2), (4, 0.2, 1)]
    assert mid.stage_ends == [(2, 3)]
    assert mid.last_checkpoint == (3, "/run/checkpoint-3")
    assert mid.exports == ["/L/x-2step.safetensors"]
    assert mid.samples_per_s == 2.0 and mid.updated == 20
    # steps 1..4 between t=10 and t=20: 0.3 steps/s, 2 steps left
    assert mid.eta_seconds == pytest.approx(2 / (3 / 10))

    done = progress_from_records(records)
    assert (done.phase, done.step, done.final, done.eta_seconds, done.updated) == (
        "done",
        6,
        "/L/x.safetensors",
        None,
        28,
    )
    assert [s for s, _, _ in done.losses] == [1, 2, 3, 4, 5, 6]
    assert done.stage_ends == [(2, 3), (1, 6)]
    assert done.exports == ["/L/x-2step.safetensors", "/L/x-1step.safetensors", "/L/x.safetensors"]
    assert format_progress(done) == "Done after 6 steps: /L/x.safetensors"


def test_interrupted_and_error_texts():
    base = whole_run()[:6]  # steps 1..3
    saved = progress_from_records(
        [*base, checkpoint(15, 3, "interrupted"), {"time": 15, "event": "interrupted", "global_step": 3}]
    )
    assert saved.phase == "interrupted" and saved.eta_seconds is None
    assert format_progress(saved) == "Stopped at step 3; a checkpoint was saved — press Resume"
    older = progress_from_records(
        [*base[:5], checkpoint(13, 2), base[5], {"time": 15, "event": "interrupted", "global_step": 3}]
    )
    assert format_progress(older) == "Stopped at step 3; the last checkpoint is at step 2 — press Resume"
    none = progress_from_records([*base, {"time": 15, "event": "interrupted", "global_step": 3}])
    assert format_progress(none) == "Stopped at step 3 before the first checkpoint — press Train to start again"
    failed = progress_from_records([*base, {"time": 16, "event": "error", "message": "Hyper-SD: out of memory"}])
    assert (failed.phase, failed.error, failed.step) == ("error", "Hyper-SD: out of memory", 3)
    assert format_progress(failed) == "Failed: Hyper-SD: out of memory"
    assert format_progress(progress_from_records([*base, {"time": 16, "event": "error"}])) == "Failed: unknown error"  # fmt: skip


def test_resume_replaces_the_steps_after_its_checkpoint_and_restarts_the_eta():
    # session 1: steps 1..4, checkpoint at 2, killed (no "interrupted"): steps 3, 4 and the stage end at 3 are redone
    first = [start(0, stages=(2, 1)), cached(1), step(10, 1, 0.9, 2), step(11, 2, 0.8, 2), checkpoint(11, 2)]
    first += [step(12, 3, 0.7, 2), stage_end(12, 2, 3), step(13, 4, 0.6, 1)]
    second = [start(500, stages=(2, 1)), cached(505), resume(506, 2)]
    p = progress_from_records(first + second)
    assert (p.phase, p.step, p.stage, p.stage_index) == ("training", 2, 2, 1)  # k of the step after the checkpoint
    assert p.losses == [(1, 0.9, 2), (2, 0.8, 2)]
    assert p.stage_ends == [] and p.last_checkpoint == (2, "/run/checkpoint-2")
    p = progress_from_records([*first, *second, step(600, 3, 0.65, 2)])
    assert p.losses == [(1, 0.9, 2), (2, 0.8, 2), (3, 0.65, 2)]
    assert p.eta_seconds is None  # one step of this session; the pause from t=13 to t=600 is not a rate
    p = progress_from_records([*first, *second, step(600, 3, 0.65, 2), step(604, 4, 0.55, 1)])
    assert p.eta_seconds == pytest.approx((6 - 4) / (1 / 4))
    assert p.losses[-1] == (4, 0.55, 1)


def test_a_new_session_without_resume_starts_the_curve_again():
    old = [start(0), cached(1), step(10, 1, 0.9, 8), step(11, 2, 0.8, 8), export(12, "/L/old.safetensors", [8])]
    new = [start(100, stages=(4, 1), steps=5), cached(101)]
    p = progress_from_records(old + new)
    assert (p.stages, p.total_steps, p.phase) == ((4, 1), 10, "training")
    p = progress_from_records([*old, *new, step(110, 1, 0.3, 4)])
    assert p.losses == [(1, 0.3, 4)] and p.exports == [] and p.step == 1


def test_eta_uses_the_last_window_of_steps_only():
    n = ETA_WINDOW + 10
    records = [start(0, stages=(1,), steps=1000), cached(0)]
    t = 0.0
    for i in range(1, n + 1):
        t += 10.0 if i <= 10 else 1.0  # ten slow steps, then fifty at one per second
        records.append(step(t, i, 0.1, 1, steps=1000))
    p = progress_from_records(records)
    assert p.step == n
    # the window: records n-49 .. n, one second apart: 49 steps in 49 s
    assert p.eta_seconds == pytest.approx((1000 - n) / 1.0)


def test_eta_with_sparse_step_records():
    """log_every > 1: the rate is steps per second, not records per second."""
    records = [
        start(0, stages=(1,), steps=100),
        cached(0),
        step(0, 10, 0.1, 1),
        step(5, 20, 0.1, 1),
        step(10, 30, 0.1, 1),
    ]
    assert progress_from_records(records).eta_seconds == pytest.approx(70 / 2)


def test_nan_loss_unknown_events_and_missing_fields_do_not_break_it():
    records = [start(0), cached(1), step(2, 1, math.nan, 8), {"time": 3, "event": "sample", "x": 1}]
    records += [
        {"event": "step", "loss": 0.4, "stage": 8},
        "not a record",
        {"time": 4, "event": "step", "step": 2, "stage": 8},
    ]
    p = progress_from_records(records)
    assert p.step == 2 and p.loss is None and p.updated == 4
    assert len(p.losses) == 2 and math.isnan(p.losses[0][1]) and math.isnan(p.losses[1][1])


# ------------------------------------------------------------------------------------------------ text


def test_the_status_line_exactly():
    p = TrainProgress(phase="training", stages=(8, 4, 2, 1), steps_per_stage=100, total_steps=400, step=120, stage=4,
                      stage_index=2, loss=0.0123449, samples_per_s=1.9, eta_seconds=200.4)  # fmt: skip
    assert format_progress(p) == "Stage k=4 (2 of 4) · step 120 / 400 (30%) · loss 0.01234 · 1.9 samples/s · ETA 3m 20s"


@pytest.mark.parametrize(("step", "percent"), [(0, "0%"), (1, "0%"), (2, "1%"), (399, "99%"), (400, "100%")])
def test_percent_reaches_100_only_at_the_end(step, percent):
    p = TrainProgress(phase="training", total_steps=400, step=step)
    assert format_progress(p) == f"step {step} / 400 ({percent})"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (44.6, "45s"), (59.6, "1m 00s"), (200, "3m 20s"), (3599, "59m 59s"), (3600, "1h 00m"),
     (3725, "1h 02m"), (90061, "25h 01m"), (-5, "0s"), (None, "?"), (math.inf, "?"), (math.nan, "?")],
)  # fmt: skip
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text


# ------------------------------------------------------------------------------------------------ follower


def _line(record):
    return json.dumps(record) + "\n"


def test_follower_reads_only_new_bytes_and_waits_for_a_whole_line(tmp_path):
    log = tmp_path / "run" / "log.jsonl"
    follower = LogFollower(log)
    assert follower.poll().phase == "starting"  # the run folder does not exist yet
    log.parent.mkdir()
    first = _line(start(0, stages=(2, 1))) + _line(cached(1))
    torn = _line(step(10, 1, 0.5, 2))
    log.write_text(first + torn[:25])
    p = follower.poll()
    assert (p.phase, p.step) == ("training", 0) and follower._offset == len(first) + 25
    with open(log, "a") as handle:
        handle.write(torn[25:] + _line(step(12, 2, 0.4, 2)))
    p = follower.poll()
    assert (p.step, p.losses) == (2, [(1, 0.5, 2), (2, 0.4, 2)])
    size = log.stat().st_size
    assert follower._offset == size and follower.poll() is p  # nothing new: nothing read, nothing recomputed


def test_follower_starts_again_when_the_log_is_replaced(tmp_path):
    log = tmp_path / "log.jsonl"
    log.write_text(_line(start(0)) + _line(cached(1)) + _line(step(2, 1, 0.5, 8)) + _line(step(3, 2, 0.4, 8)))
    follower = LogFollower(log)
    assert follower.poll().step == 2

    os.remove(log)  # --overwrite: the run folder is deleted; a missing log reads as a new start
    assert follower.poll().phase == "starting"
    log.write_text(_line(start(100, stages=(4,), steps=10)))
    p = follower.poll()
    assert (p.phase, p.step, p.total_steps, p.losses) == ("caching", 0, 10, [])

    # rewritten in place (same inode) and longer than what was read: noticed by its first bytes
    with open(log, "w") as handle:
        handle.write(_line(start(200, stages=(1,), steps=7)) + _line(cached(201)) + _line(step(202, 1, 0.9, 1)))
    p = follower.poll()
    assert (p.total_steps, p.step, p.losses) == (7, 1, [(1, 0.9, 1)])

    # shorter than what was read: starts again from 0
    log.write_text(_line(start(300, stages=(2,), steps=5)))
    p = follower.poll()
    assert (p.phase, p.total_steps, p.losses) == ("caching", 5, [])


def test_follower_keeps_a_record_glued_to_a_torn_line(tmp_path):
    log = tmp_path / "log.jsonl"
    # a writer killed mid-line, then a resumed session appends its records after the fragment
    glued = _line(start(50, stages=(4, 1), steps=9))
    log.write_text(_line(start(0)) + _line(cached(1)) + json.dumps(step(2, 1, 0.5, 8))[:30] + glued)
    with open(log, "a") as handle:
        handle.write(
            "garbage that is not json\n" + _line(cached(51)) + _line(resume(52, 0)) + _line(step(60, 1, 0.6, 4))
        )
    p = LogFollower(log).poll()
    assert (p.phase, p.step, p.losses, p.updated) == ("training", 1, [(1, 0.6, 4)], 60)
    assert p.total_steps == 18  # the glued record is the new session's start
