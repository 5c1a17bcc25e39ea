"""hypersd.train.lossplot: the loss curve as a PIL image, checked on its pixels."""

import math

import numpy as np
import pytest
from PIL import ImageFont

from hypersd.train import lossplot
from hypersd.train.lossplot import make_axes, nice_ticks, render_loss_plot, smooth, smoothing_for, use_log_scale

W, H = 400, 220


def mask(img, colour):
    """Boolean (height, width) array: where the image has exactly ``colour``."""
    return (np.asarray(img) == np.array(colour, dtype=np.uint8)).all(axis=-1)


def ink_columns(img, rows):
    """x of every non-white pixel in the given rows."""
    arr = np.asarray(img)[rows[0] : rows[1]]
    return np.nonzero((arr != 255).any(axis=-1).any(axis=0))[0]


def hand_ema(values, beta):
    """Bias-corrected EMA written out: m_i = beta m_(i-1) + (1-beta) v_i; m_i / (1 - beta^i)."""
    out, m = [], 0.0
    for i, v in enumerate(values, start=1):
        m = beta * m + (1 - beta) * v
        out.append(m / (1 - beta**i))
    return out


# ------------------------------------------------------------------------------------------------ pure parts


def test_smoothing_is_a_bias_corrected_ema():
    assert smooth([1.0, 2.0, 3.0], 0.5) == pytest.approx([1.0, 1.25 / 0.75, 2.125 / 0.875])
    assert smooth([0.3] * 5, 0.9) == pytest.approx([0.3] * 5)  # no pull towards 0 at the start
    assert smoothing_for(10) == pytest.approx(0.9) and smoothing_for(500) == pytest.approx(0.9)
    assert smoothing_for(5000) == pytest.approx(0.99)  # a long run: about 2% of the points


def test_log_scale_only_for_positive_losses_spanning_more_than_20x():
    assert not use_log_scale([1.0, 0.05])  # exactly 20x
    assert use_log_scale([1.0, 0.0499])
    assert use_log_scale([1.0, 0.01, math.nan, math.inf])  # non-finite values are ignored
    assert not use_log_scale([1.0, 0.0, 0.001])  # log10(0) does not exist
    assert not use_log_scale([])


def test_nice_ticks():
    assert nice_ticks(0.0, 1.0) == [0.0, 0.5, 1.0]
    assert nice_ticks(0.13, 0.87) == [0.2, 0.4, 0.6, 0.8]
    assert nice_ticks(1, 400) == [100, 200, 300, 400]
    assert nice_ticks(3.0, 3.0) == [3.0]


def test_axes_put_higher_losses_higher_and_steps_left_to_right():
    axes = make_axes([(1, 0.9, 8), (50, 0.5, 8), (100, 0.1, 8)], W, H)
    assert not axes.log_scale
    assert axes.y(0.9) < axes.y(0.5) < axes.y(0.1)  # image y grows downwards
    assert axes.top < axes.y(0.9) and axes.y(0.1) < axes.bottom  # padded inside the box
    assert (axes.x(1), axes.x(100)) == (lossplot.MARGIN_LEFT, W - lossplot.MARGIN_RIGHT)
    assert make_axes([(1, math.nan, 8)], W, H) is None


def test_smoothed_points_restart_at_every_stage():
    points = [(1, 1.0, 8), (2, 0.0, 8), (3, 5.0, 4), (4, 5.0, 4)]
    curves = lossplot.smoothed_points(points, log_scale=False)
    beta = smoothing_for(4)
    assert [[s for s, _ in c] for c in curves] == [[1, 2], [3, 4]]
    assert [v for _, v in curves[0]] == pytest.approx(hand_ema([1.0, 0.0], beta))
    assert [v for _, v in curves[1]] == pytest.approx([5.0, 5.0])  # not dragged down by stage k=8


# ------------------------------------------------------------------------------------------------ pixels


def test_the_smoothed_line_is_drawn_where_the_ema_is():
    losses = [1.0 - 0.08 * i + (0.05 if i % 2 else -0.05) for i in range(10)]
    points = [(i + 1, v, 8) for i, v in enumerate(losses)]
    img = render_loss_plot(points, width=W, height=H)
    assert img.mode == "RGB" and img.size == (W, H)
    axes = make_axes(points, W, H)
    line = mask(img, lossplot.SMOOTH)
    ys, xs = np.nonzero(line)
    assert xs.min() >= axes.left - 2 and xs.max() <= axes.right + 2
    assert ys.min() >= axes.top - 2 and ys.max() <= axes.bottom + 2
    expected = hand_ema(losses, smoothing_for(10))
    for step in (1, 4, 7, 10):
        x = min(round(axes.x(step)), W - 1)
        column = np.nonzero(line[:, x])[0]
        assert column.size, step
        assert abs(np.median(column) - axes.y(expected[step - 1])) <= 2, step
    thickness = line[:, round(axes.x(1)) + 2 : round(axes.x(10)) - 2].sum(axis=0)
    assert thickness.min() >= 2 and thickness.mean() > 2  # the thick line (PIL: 2-3 px a column for width 3)
    # the raw zig-zag is drawn too, in its own colour, and strays from the smooth line
    raw_ys, _ = np.nonzero(mask(img, lossplot.RAW))
    assert raw_ys.size > 50


def test_a_falling_loss_starts_high_on_the_image():
    falling = render_loss_plot([(s, 1.0 / s, 1) for s in range(1, 11)], width=W, height=H)
    rising = render_loss_plot([(s, s / 10, 1) for s in range(1, 11)], width=W, height=H)
    for img, starts_higher in ((falling, True), (rising, False)):
        ys, xs = np.nonzero(mask(img, lossplot.SMOOTH))
        left, right = ys[xs < xs.min() + 15].mean(), ys[xs > xs.max() - 15].mean()
        assert bool(left < right) is starts_higher


def test_a_stage_boundary_is_a_dashed_line_at_its_step_with_the_next_stage_labelled():
    points = [(s, 0.5 - 0.01 * s, 8 if s <= 20 else 4) for s in range(1, 41)]
    img = render_loss_plot(points, stage_ends=[(8, 20), (4, 40)], width=W, height=H)
    axes = make_axes(points, W, H)
    stage = mask(img, lossplot.STAGE)
    x_end = round(axes.x(20.5))
    column = np.nonzero(stage[axes.top : axes.bottom, x_end])[0]
    assert column.size >= (axes.bottom - axes.top) // 2  # dashes: 4 px on, 2 off
    assert column.size < axes.bottom - axes.top  # ... with gaps
    for x in (round(axes.x(10)), round(axes.x(30))):  # inside the stages: no vertical line
        assert np.count_nonzero(stage[axes.top + 20 : axes.bottom, x]) == 0
    # the last stage end is the right edge: no line drawn there
    assert np.count_nonzero(stage[axes.top + 20 : axes.bottom, axes.right - 1 : axes.right + 2]) == 0

    # labels "k=8" / "k=4" where each stage starts: grey ink right of the start, none mid-stage
    def grey_ink(x):
        box = np.asarray(img)[axes.top + 1 : axes.top + 16, x + 2 : x + 30].astype(int)
        grey = (box[..., 0] == box[..., 1]) & (box[..., 1] == box[..., 2]) & (box[..., 0] < 200)
        return np.count_nonzero(grey)

    assert grey_ink(round(axes.x(1))) > 5 and grey_ink(round(axes.x(21))) > 5
    assert grey_ink(round(axes.x(10))) == 0


def test_log_scale_puts_each_decade_the_same_height_apart():
    points = [(1, 100.0, 8), (2, 10.0, 8), (3, 1.0, 8)]
    img = render_loss_plot(points, width=W, height=H)
    axes = make_axes(points, W, H)
    assert axes.log_scale
    assert axes.y(10.0) == pytest.approx((axes.top + axes.bottom) / 2)  # the middle decade is in the middle
    raw = mask(img, lossplot.RAW)
    column = np.nonzero(raw[:, round(axes.x(2))])[0]
    assert column.size and abs(np.median(column) - (axes.top + axes.bottom) / 2) <= 2
    linear = make_axes([(1, 10.0, 8), (2, 5.5, 8), (3, 1.0, 8)], W, H)  # 10x: stays linear
    assert not linear.log_scale and linear.y(5.5) == pytest.approx((axes.top + axes.bottom) / 2)


def test_the_title_says_log_and_counts_skipped_values():
    linear = render_loss_plot([(1, 1.0, 1), (2, 0.9, 1)], width=W, height=H)
    log = render_loss_plot([(1, 10.0, 1), (2, 0.1, 1)], width=W, height=H)
    noted = render_loss_plot([(1, 10.0, 1), (2, math.nan, 1), (3, 0.1, 1), (4, -math.inf, 1)], width=W, height=H)
    title = (0, lossplot.MARGIN_TOP - 6)
    assert ink_columns(log, title).max() > ink_columns(linear, title).max()  # "loss (log)" is longer than "loss"
    assert ink_columns(noted, title).max() > ink_columns(log, title).max() + 50  # "... - 2 non-finite values skipped"
    # the skipped values leave no gap: the two finite points are joined
    assert np.count_nonzero(mask(noted, lossplot.SMOOTH)) == np.count_nonzero(mask(log, lossplot.SMOOTH))


def test_placeholders_and_a_single_point():
    empty = render_loss_plot([], width=200, height=100)
    assert empty.size == (200, 100) and empty.mode == "RGB"
    assert not mask(empty, lossplot.SMOOTH).any() and not mask(empty, lossplot.RAW).any()
    dark = np.nonzero((np.asarray(empty) < 128).all(axis=-1))
    assert dark[0].size > 20 and 30 < dark[0].mean() < 70 and 50 < dark[1].mean() < 150  # text near the centre
    skipped = render_loss_plot([(1, math.nan, 8)], width=200, height=100)
    assert np.nonzero((np.asarray(skipped) < 128).all(axis=-1))[0].max() > dark[0].max() + 5  # a second line
    single = render_loss_plot([(5, 0.3, 8)], width=200, height=100)
    assert mask(single, lossplot.SMOOTH).sum() >= 9  # a dot


def test_draws_with_pillow_95_bitmap_font(monkeypatch):
    """WebUI 1.10 ships Pillow 9.5, whose default font is a Latin-1 bitmap font: every text must draw with it."""
    # Pillow >= 10.1 keeps that font as load_default_imagefont(); before that (9.5 itself) load_default() is it
    monkeypatch.setattr(lossplot, "_font", getattr(ImageFont, "load_default_imagefont", ImageFont.load_default))
    img = render_loss_plot([(1, 100.0, 8), (2, 1.0, 4), (3, math.inf, 4)], stage_ends=[(8, 1)], width=W, height=H)
    assert ink_columns(img, (0, lossplot.MARGIN_TOP - 6)).size > 20
    assert ink_columns(render_loss_plot([(1, math.nan, 8)], width=W, height=H), (H // 2 - 10, H // 2 + 25)).size > 20
