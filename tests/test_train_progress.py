"""The training progress bar of ``numbacnn train`` (click.progressbar): drawn with
images/s and ETA on a terminal, silent when stdout is not one."""

from __future__ import annotations

import io
import time

from click.testing import CliRunner
from numbacnn_cli.main import cli
from numbacnn_cli.train import _Progress

from numbacnn.training.trainer import BatchProgress, EpochRecord


class Terminal(io.StringIO):
    """A text stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def progress(epoch: int, batch: int, batches: int = 5) -> BatchProgress:
    return BatchProgress(epoch, 2, batch, batches, loss=1.0 / batch, accuracy=0.1 * batch,
                         images_per_second=1234.5 * batch, eta_seconds=61.0 * (batches - batch))


def test_bar_on_a_terminal_shows_rate_and_eta(capsys) -> None:  # noqa: ANN001
    terminal = Terminal()
    bar = _Progress(terminal)
    assert bar.enabled
    for b in range(1, 6):
        bar.batch(progress(1, b))
        time.sleep(0.21)  # past the redraw throttle
    bar.epoch(EpochRecord(1, 2, 0.5, 0.6, 0.4, 0.7, 0.01, 1.2))
    drawn = terminal.getvalue()
    assert "epoch 1/2" in drawn and "1/5" in drawn and "5/5" in drawn
    assert "2,469 img/s" in drawn and "ETA 3:03" in drawn  # batch 2: 2·1234.5, 3·61 s left
    assert "ETA 0:00" in drawn
    assert drawn.endswith("\n")  # the finished bar keeps its line
    assert "epoch 1/2  train loss 0.5000" in capsys.readouterr().out


def test_bar_redraws_at_most_five_times_a_second() -> None:
    terminal = Terminal()
    bar = _Progress(terminal)
    for b in range(1, 51):
        bar.batch(progress(1, b, batches=50))
    drawn = terminal.getvalue()
    assert "1/50" in drawn and "50/50" in drawn  # the first and the last batch
    assert drawn.count("img/s") < 10


def test_new_epoch_starts_a_new_bar() -> None:
    terminal = Terminal()
    bar = _Progress(terminal)
    bar.batch(progress(1, 5))
    bar.batch(progress(2, 1))
    assert "epoch 2/2" in terminal.getvalue()


def test_silent_when_not_a_terminal(tmp_path) -> None:  # noqa: ANN001
    stream = io.StringIO()
    bar = _Progress(stream)
    assert not bar.enabled
    bar.batch(progress(1, 1))
    assert stream.getvalue() == ""
    result = CliRunner().invoke(cli, ["train", "input 28x28x1; conv 2 3; maxpool 2; fc 10",
                                      "--limit", 64, "--epochs", 1, "--batch-size", 16,
                                      "--out", str(tmp_path / "m.h5"), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "[#" not in result.output and "img/s" not in result.output
    assert "epoch 1/1  train loss" in result.output
