"""bench.model_batch: the measured points, the table and the plot (tiny timings)."""

from __future__ import annotations

from bench.graph import real_digit_batch
from bench.model_batch import Point, format_table, main, measure


def test_real_digit_batch_repeats_the_shipped_digits_normalised():
    batch = real_digit_batch(23)
    assert tuple(batch.shape) == (23, 1, 28, 28)
    assert batch.min() >= -1 and batch.max() <= 1
    assert (batch[0] == batch[10]).all()


def test_measure_gives_one_point_per_setting():
    points = measure(threads=[1], batch_sizes=[8, 40], split=16, seconds=0.05, rounds=2)
    settings = {(p.threads, p.batch_size, p.split) for p in points}
    assert settings == {(1, 8, None), (1, 8, 16), (1, 40, None), (1, 40, 16)}
    assert all(p.images_per_s > 0 for p in points)


def test_table_compares_split_calls_with_one_call():
    points = [Point(1, 512, None, 2000.0), Point(1, 512, 128, 4000.0)]
    table = format_table(points, 128)
    assert "calls of <= 128" in table
    assert "| 1 | 512 | 2,000 | 4,000 | 2.00x |" in table


def test_main_prints_the_table_and_writes_the_plot(tmp_path, capsys):
    plot = tmp_path / "model-batch.png"
    main(["--batch-sizes", "8", "--split", "4", "--seconds", "0.05", "--rounds", "1", "--plot", str(plot)])
    assert "| 1 | 8 |" in capsys.readouterr().out
    assert plot.stat().st_size > 0
