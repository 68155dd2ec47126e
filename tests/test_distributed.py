"""Data-parallel training over MPI (numbacnn/training/distributed.py): world detection without
mpi4py, and, under ``mpirun -n 2 --oversubscribe``, equivalence with one process,
bit-identical repeats, a killed rank, a hung rank, resume on another number of ranks,
and the GPU gradient sum (staged, and on the device buffer as a CUDA-aware MPI takes
it) in numba's CUDA simulator.

The mpirun tests skip with the reason when mpi4py or mpirun is missing (pip install
'numbacnn[mpi]'); the test extra installs both, so CI runs them. Open MPI refuses to run
as root without OMPI_ALLOW_RUN_AS_ROOT and its confirmation: they are set in the
subprocesses' environment only. Networks and datasets are tiny (two cores in CI).
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import quadrant_images, run

from numbacnn.training.checkpoint import load_checkpoint
from numbacnn.training.distributed import World, launched_by_mpi, launcher_rank

ROOT = Path(__file__).resolve().parent.parent
SPEC = "input 8x8x1; conv 4 3 pad=1 activation=relu; maxpool 2; fc 8 activation=relu; fc 4; softmax"
TIMEOUT_S = 120  # one mpirun; normally 3-6 s


def _mpirun() -> str | None:
    beside = Path(sys.executable).parent / "mpirun"  # a venv's bin, not always on PATH
    return str(beside) if beside.exists() else shutil.which("mpirun")


MPIRUN = _mpirun()
needs_mpi = pytest.mark.skipif(
    MPIRUN is None or importlib.util.find_spec("mpi4py") is None,
    reason="needs mpirun and mpi4py: pip install 'numbacnn[mpi]' (Open MPI and mpi4py)")


def mpi_env(**extra: str) -> dict[str, str]:
    """This environment without any launcher's variables, plus what mpirun needs as root
    and one thread per rank (two ranks on two cores)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OMPI_", "PMIX_", "PMI_", "SLURM_", "PRTE_"))}
    env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               NUMBA_NUM_THREADS="1", OMP_NUM_THREADS="1", NUMBACNN_DEVICE="cpu")
    env.update(extra)
    return env


def mpirun(*args: object, ranks: int = 2, env: dict[str, str] | None = None,
           timeout: float = TIMEOUT_S) -> subprocess.CompletedProcess:
    command = [MPIRUN, "-n", str(ranks), "--oversubscribe", sys.executable, *map(str, args)]
    return subprocess.run(command, cwd=ROOT, env=env or mpi_env(), capture_output=True,
                          text=True, timeout=timeout)


def write_data(path: Path) -> Path:
    """90 training (81 fit + 9 validation) and 20 test 8x8 images of 4 classes; with batch
    16 the last batch of an epoch has 1 image: rank 1 gets none."""
    rng = np.random.default_rng(7)
    (x_train, y_train), (x_test, y_test) = quadrant_images(90, rng), quadrant_images(20, rng)
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test,
             class_names=np.array(["a", "b", "c", "d"]))
    return path


def train_args(data: Path, out: Path, epochs: int = 3, *extra: object) -> list[object]:
    return ["train", SPEC, "--data", data, "--out", out, "--epochs", epochs, "--batch-size",
            16, "--lr", 0.05, "--no-augment", "--seed", 3, "--device", "cpu", *extra]


def cli_on_ranks(*args: object, **kwargs: object) -> subprocess.CompletedProcess:
    return mpirun("-m", "numbacnn_cli.main", *args, **kwargs)  # type: ignore[arg-type]


def one_process(*args: object) -> None:
    result = run(*args)
    assert result.exit_code == 0, result.output


def weights(path: Path) -> dict[str, np.ndarray]:
    net, _ = load_checkpoint(path)
    return {name: np.array(w) for name, w, _ in net.parameters()}


def assert_close(a: Path, b: Path, rtol: float = 1e-3) -> float:
    """Every weight of b within rtol of a, relative to the largest weight of its array;
    returns the largest relative difference."""
    worst = 0.0
    wa, wb = weights(a), weights(b)
    for name, w in wa.items():
        diff = float(np.abs(wb[name] - w).max() / np.abs(w).max())
        assert diff < rtol, f"{name}: relative difference {diff:.2e} ≥ {rtol}"
        worst = max(worst, diff)
    return worst


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One dataset, and the same 3-epoch run in one process and on 2 ranks."""
    if MPIRUN is None or importlib.util.find_spec("mpi4py") is None:
        pytest.skip("needs mpirun and mpi4py")
    tmp = tmp_path_factory.mktemp("mpi")
    data = write_data(tmp / "data.npz")
    one_process(*train_args(data, tmp / "one.h5"))
    result = cli_on_ranks(*train_args(data, tmp / "two.h5"))
    assert result.returncode == 0, result.stdout + result.stderr
    return {"data": data, "one": tmp / "one.h5", "two": tmp / "two.h5", "tmp": tmp,
            "two_output": result.stdout + result.stderr}  # type: ignore[dict-item]


# --- without MPI ----------------------------------------------------------------------------


def test_launcher_detection_reads_only_the_environment() -> None:
    assert not launched_by_mpi({})
    assert launched_by_mpi({"OMPI_COMM_WORLD_SIZE": "2"})
    assert not launched_by_mpi({"OMPI_COMM_WORLD_SIZE": "1"})
    assert launched_by_mpi({"PMI_SIZE": "4"})
    assert launched_by_mpi({"PMIX_RANK": "0"})
    assert launched_by_mpi({"SLURM_PROCID": "0", "SLURM_NTASKS": "8"})
    assert not launched_by_mpi({"SLURM_PROCID": "0", "SLURM_NTASKS": "1"})
    assert launcher_rank({}) == 0
    assert launcher_rank({"OMPI_COMM_WORLD_SIZE": "2", "OMPI_COMM_WORLD_RANK": "1"}) == 1
    assert launcher_rank({"SLURM_PROCID": "3", "SLURM_NTASKS": "8"}) == 3
    assert launcher_rank({"SLURM_PROCID": "3", "SLURM_NTASKS": "1"}) == 0  # not a world


def fake_proc(root: Path, chain: list[tuple[int, str]], launcher_stdout: str) -> Path:
    """A /proc with ``chain`` as (pid, name), each the child of the next, and the last
    one's stdout pointing at ``launcher_stdout``."""
    for (pid, name), parent in zip(chain, [p for p, _ in chain[1:]] + [1], strict=True):
        (root / str(pid) / "fd").mkdir(parents=True)
        (root / str(pid) / "comm").write_text(name + "\n")
        (root / str(pid) / "stat").write_text(f"{pid} ({name}) S {parent} {pid} 0 0\n")
    (root / str(chain[-1][0]) / "fd" / "1").symlink_to(launcher_stdout)
    return root


@pytest.mark.parametrize("chain, launcher_stdout, expected", [
    ([(40, "prterun")], "/dev/pts/3", True),                       # mpirun in a terminal
    ([(40, "prterun")], "/home/u/train.log", False),               # mpirun > train.log
    ([(40, "prterun")], "pipe:[4242]", False),                     # mpirun | tee log
    ([(30, "bash"), (31, "a) b"), (40, "mpirun")], "/dev/pts/0", True),  # wrapper scripts
    ([(30, "bash"), (40, "prted")], "/dev/pts/0", False),          # a daemon: no launcher here
])
def test_progress_under_mpi_follows_the_launchers_output(tmp_path: Path, chain: list,
                                                         launcher_stdout: str,
                                                         expected: bool) -> None:
    from numbacnn.training.distributed import launcher_writes_to_terminal

    proc = fake_proc(tmp_path, chain, launcher_stdout)
    assert launcher_writes_to_terminal(chain[0][0], proc) is expected
    assert launcher_writes_to_terminal(99, proc) is False  # no such process


def test_a_launcher_without_mpi4py_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import numbacnn.training.distributed as distributed

    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "2")
    monkeypatch.setattr(distributed, "_world", None)
    monkeypatch.setitem(sys.modules, "mpi4py", None)  # import mpi4py raises ImportError
    with pytest.raises(distributed.DistributedError,
                       match=r"started by an MPI launcher but mpi4py cannot be imported .*"
                             r"pip install 'numbacnn\[mpi\]'"):
        distributed.world()


def test_who_says_an_error_and_when(monkeypatch: pytest.MonkeyPatch) -> None:
    """The rank-error policy without mpirun: rank 0 says an error at once, another rank
    after ERROR_GRACE_S naming itself (and writes nothing to stdout); both then end;
    a single process is left alone."""
    import numbacnn.training.distributed as distributed
    from numbacnn.errors import NumbacnnError

    slept: list[float] = []
    exits: list[int] = []
    monkeypatch.setattr(distributed.time, "sleep", slept.append)
    monkeypatch.setattr(distributed, "exit_now", exits.append)  # returns: the error goes on
    monkeypatch.setattr(sys, "stdout", sys.stdout)  # restored after a rank > 0 mutes it
    said: list[str] = []
    for rank, line, waits in ((0, "bad (worded)", []), (1, "rank 1 of 2: bad (worded)",
                                                         [distributed.ERROR_GRACE_S])):
        slept.clear()
        with pytest.raises(NumbacnnError, match="bad"), distributed.errors_said_once(
                World(2, rank), said.append, lambda exc: f"{exc} (worded)"):
            print("progress")
            raise NumbacnnError("bad")
        assert said.pop() == line and slept == waits and exits.pop() == 2
        assert (sys.stdout.name == os.devnull) is (rank > 0)
    with pytest.raises(NumbacnnError), distributed.errors_said_once(World(), said.append):
        raise NumbacnnError("one process")
    assert said == [] and exits == []

    def no_mpi4py() -> World:
        raise distributed.DistributedError("no mpi4py here")

    monkeypatch.setattr(distributed, "world", no_mpi4py)
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "2")
    for rank, says in (("0", []), ("1", ["rank 1: no mpi4py here"])):
        monkeypatch.setenv("OMPI_COMM_WORLD_RANK", rank)
        with pytest.raises(distributed.DistributedError):
            distributed.join_world(said.append)
        assert said == says and exits == [2] * len(says)
        said.clear(), exits.clear()


def test_cuda_aware_is_asked_for_never_guessed(monkeypatch: pytest.MonkeyPatch) -> None:
    from numbacnn.training.distributed import DistributedError, _cuda_aware

    for text, expected in (("", False), ("0", False), ("1", True), (" 1 ", True)):
        monkeypatch.setenv("NUMBACNN_MPI_CUDA_AWARE", text)
        assert _cuda_aware() is expected, text
    monkeypatch.setenv("NUMBACNN_MPI_CUDA_AWARE", "yes")
    with pytest.raises(DistributedError, match="NUMBACNN_MPI_CUDA_AWARE='yes': give 1"):
        _cuda_aware()


def test_each_rank_of_a_node_takes_its_own_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    from numbacnn.training.distributed import _pick_gpu

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")  # as Slurm may set it
    _pick_gpu(1)
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "3"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    _pick_gpu(2)  # more ranks than GPUs: they share, round robin
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "0"


def test_shards_cover_the_batch_in_order_and_rank_0_is_never_empty() -> None:
    for n in (0, 1, 5, 16, 17):
        for size in (1, 2, 3, 4):
            shards = [World(size, rank).shard(n) for rank in range(size)]
            assert shards[0][0] == 0 and shards[-1][1] == n
            assert all(a[1] == b[0] for a, b in zip(shards, shards[1:], strict=False))
            assert max(b - a for a, b in shards) - min(b - a for a, b in shards) <= 1
            if n:
                assert shards[0][1] > 0


def test_training_without_a_launcher_imports_no_mpi(tmp_path: Path) -> None:
    args = [str(a) for a in train_args(write_data(tmp_path / "d.npz"), tmp_path / "m.h5", 1)]
    code = ("import sys\n"
            "from click.testing import CliRunner\n"
            "from numbacnn_cli.main import cli\n"
            f"r = CliRunner().invoke(cli, {args!r})\n"
            "assert r.exit_code == 0, r.output\n"
            "print(sorted(m for m in sys.modules if m.startswith('mpi4py')))\n")
    env = {k: v for k, v in mpi_env().items() if not k.startswith("OMPI_")}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=TIMEOUT_S)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"


# --- under mpirun -n 2 ------------------------------------------------------------------------


@needs_mpi
def test_two_ranks_equal_one_process(runs: dict[str, Path]) -> None:
    """Dropout and augmentation off: 3 epochs on 2 ranks give the weights of one process
    within 1e-3 relative (float sums in another order); rank 0 alone printed."""
    assert_close(runs["one"], runs["two"])
    assert str(runs["two_output"]).count("saved ") == 1  # rank 0 only
    assert str(runs["two_output"]).count("epoch 3/3  train loss") == 1
    assert "on 2 ranks (MPI, batch 16 split over them)" in str(runs["two_output"])
    # mpirun's output is a pipe here: no progress bar, though each rank's stdout is a pty
    assert "ETA" not in str(runs["two_output"]) and "\x1b[?25l" not in str(runs["two_output"])
    assert re.search(r"^gradient all-reduce on 2 ranks: \d+\.\d\d ms per step over 18 steps "
                     r"\(with the wait for the slowest rank\), \d+ % of the training time$",
                     str(runs["two_output"]), re.MULTILINE), runs["two_output"]
    info = load_checkpoint(runs["two"])[1]
    assert len(info.training.rng_states["augment_ranks"]) == 2  # it did run on 2 ranks
    assert info.training.epoch == 3 and np.isfinite(info.history["val_loss"]).all()


@needs_mpi
@pytest.mark.skipif(shutil.which("script") is None, reason="needs script (util-linux)")
def test_progress_is_drawn_when_mpirun_writes_to_a_terminal(runs: dict[str, Path]) -> None:
    """``script`` gives mpirun a terminal: rank 0 draws the bar (once, not rank 1)."""
    out = runs["tmp"] / "terminal.h5"
    command = [MPIRUN, "-n", "2", "--oversubscribe", sys.executable, "-m", "numbacnn_cli.main",
               *map(str, train_args(runs["data"], out, 1))]
    result = subprocess.run(["script", "-qec", shlex.join(command), "/dev/null"], cwd=ROOT,
                            env=mpi_env(), capture_output=True, text=True, timeout=TIMEOUT_S)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "\x1b[?25l" in result.stdout and "img/s  ETA" in result.stdout, result.stdout
    assert result.stdout.count("epoch 1/1  train loss") == 1, result.stdout


@needs_mpi
def test_same_ranks_same_seed_bit_identical(runs: dict[str, Path]) -> None:
    again = runs["tmp"] / "two-again.h5"
    result = cli_on_ranks(*train_args(runs["data"], again))
    assert result.returncode == 0, result.stderr
    for name, w in weights(runs["two"]).items():
        np.testing.assert_array_equal(weights(again)[name], w, err_msg=name)


@needs_mpi
def test_resume_with_another_number_of_ranks(runs: dict[str, Path]) -> None:
    """2 epochs on 2 ranks, the third in one process; 2 epochs in one process, the third on
    2 ranks: both end where the straight one-process run ends."""
    tmp, data = runs["tmp"], runs["data"]
    a, b = tmp / "resume-a.h5", tmp / "resume-b.h5"
    result = cli_on_ranks(*train_args(data, a, 2))
    assert result.returncode == 0, result.stderr
    one_process("train", "--resume", a, "--epochs", 3)
    one_process(*train_args(data, b, 2))
    result = cli_on_ranks("train", "--resume", b, "--epochs", 3)
    assert result.returncode == 0, result.stderr
    assert "resuming" in result.stdout and result.stdout.count("epoch 3/3  train loss") == 1
    for path in (a, b):
        assert load_checkpoint(path)[1].training.epoch == 3
        assert_close(runs["one"], path)


@needs_mpi
def test_a_killed_rank_stops_the_others_with_one_line(runs: dict[str, Path]) -> None:
    """Rank 1 is SIGKILLed after epoch 2 of 6: rank 0 stops within seconds with one
    error line, and the last checkpoint loads."""
    out = runs["tmp"] / "killed.h5"
    started = time.perf_counter()
    result = mpirun("tests/mpi_programs.py", "die-after-epoch", 2,
                    *train_args(runs["data"], out, 6), env=mpi_env(NUMBACNN_MPI_TIMEOUT="60"),
                    timeout=90)
    elapsed = time.perf_counter() - started
    assert result.returncode != 0
    ours = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(ours) == 1, result.stderr
    assert ours[0].startswith("error: rank 0 of 2 ") and "checkpoint" in ours[0], ours
    assert "Traceback" not in result.stderr
    assert elapsed < 45, f"took {elapsed:.0f} s"
    assert load_checkpoint(out)[1].training.epoch in (2, 3)  # atomic: never half-written


@needs_mpi
def test_a_hung_rank_stops_the_others_after_the_timeout(runs: dict[str, Path]) -> None:
    """Rank 1 stops answering after epoch 1: rank 0 gives up after NUMBACNN_MPI_TIMEOUT
    seconds with one line naming the collective; the epoch-1 checkpoint is intact."""
    out = runs["tmp"] / "hung.h5"
    result = mpirun("tests/mpi_programs.py", "hang-after-epoch", 1,
                    *train_args(runs["data"], out, 4), env=mpi_env(NUMBACNN_MPI_TIMEOUT="6"),
                    timeout=90)
    assert result.returncode != 0
    ours = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(ours) == 1, result.stderr
    assert "waited 6 s for the other ranks in the gradient all-reduce" in ours[0], ours
    assert f"checkpoint {out} is intact: continue with numbacnn train --resume {out}" in ours[0]
    assert load_checkpoint(out)[1].training.epoch == 1


@needs_mpi
@pytest.mark.parametrize("variable, value, says", [
    ("NUMBACNN_MPI_TIMEOUT", "soon", "NUMBACNN_MPI_TIMEOUT='soon': give the seconds"),
    ("NUMBACNN_MPI_CUDA_AWARE", "yes", "NUMBACNN_MPI_CUDA_AWARE='yes': give 1")])
def test_a_bad_mpi_setting_is_one_line_from_rank_0(runs: dict[str, Path], variable: str,
                                                    value: str, says: str) -> None:
    out = runs["tmp"] / "setting.h5"
    result = cli_on_ranks(*train_args(runs["data"], out, 1),
                          env=mpi_env(**{variable: value}))
    assert result.returncode == 2
    ours = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(ours) == 1 and says in ours[0], result.stderr
    assert "Traceback" not in result.stderr and not out.exists()


MPI4PY_MISSING_ON = """\
import importlib, os, sys
if os.environ.get("OMPI_COMM_WORLD_RANK") in {ranks!r}:
    raise ImportError("No module named 'mpi4py' (on this node)")
sys.path.remove(os.path.dirname(os.path.dirname(__file__)))  # elsewhere: the real one
del sys.modules["mpi4py"]
sys.modules["mpi4py"] = importlib.import_module("mpi4py")
"""


@needs_mpi
@pytest.mark.parametrize("missing_on, says", [
    (("0", "1"), "error: started by an MPI launcher but mpi4py cannot be imported"),
    (("1",), "error: rank 1: started by an MPI launcher but mpi4py cannot be imported")])
def test_mpi4py_missing_under_a_launcher_is_said_once(tmp_path: Path, missing_on: tuple,
                                                      says: str) -> None:
    shim = tmp_path / "shim" / "mpi4py"
    shim.mkdir(parents=True)
    (shim / "__init__.py").write_text(MPI4PY_MISSING_ON.format(ranks=set(missing_on)))
    out = tmp_path / "m.h5"
    result = cli_on_ranks(*train_args(write_data(tmp_path / "d.npz"), out, 1),
                          env=mpi_env(PYTHONPATH=f"{shim.parent}{os.pathsep}{ROOT}"))
    assert result.returncode != 0
    ours = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(ours) == 1 and ours[0].startswith(says), result.stderr
    assert "Traceback" not in result.stderr and not out.exists()


@needs_mpi
def test_a_command_that_is_not_data_parallel_runs_once_on_rank_0() -> None:
    result = mpirun("-m", "numbacnn_cli.main", "shapes", "lenet", ranks=3)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("total") == 1, result.stdout
    assert result.stderr.count("note: numbacnn shapes is not data-parallel") == 1, result.stderr


@needs_mpi
def test_batch_smaller_than_the_world_is_refused(runs: dict[str, Path]) -> None:
    result = cli_on_ranks(*train_args(runs["data"], runs["tmp"] / "x.h5", 1), "--batch-size", 1)
    assert result.returncode == 2
    assert result.stderr.count("error: Invalid value for '--batch-size': batch_size 1 is the "
                               "global batch") == 1, result.stderr


@needs_mpi
@pytest.mark.parametrize("cuda_aware, path", [("0", "staged"), ("1", "as the device buffer")])
def test_gpu_gradients_reduced_by_real_mpi_in_the_simulator(cuda_aware: str, path: str) -> None:
    """On 2 ranks in numba's CUDA simulator, with the real MPI and mpi4py: device gradient
    buffer → (pinned) host buffer → Allreduce → device; or, CUDA-aware, the device
    buffer handed to mpi4py through its __cuda_array_interface__ and summed in place (no
    GPU: not a test of pinned memory, of real transfers or of a CUDA-aware MPI)."""
    result = mpirun("tests/mpi_programs.py", "gpu-allreduce",
                    env=mpi_env(NUMBA_ENABLE_CUDASIM="1", NUMBACNN_DEVICE="cuda",
                                NUMBACNN_MPI_CUDA_AWARE=cuda_aware))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count(f"gpu all-reduce of 47 floats ok ({path})") == 2, result.stdout


@needs_mpi
def test_gpu_ranks_train_like_one_cpu_process_in_the_simulator(runs: dict[str, Path]) -> None:
    """`mpirun -n 2 numbacnn train --device cuda` in numba's CUDA simulator, through the
    whole command (staged gradients, sharded validation and test on the device, rank 0's
    checkpoint): the weights equal one CPU process's within float rounding. Two steps
    only: the simulator runs a GPU thread as a Python thread (about a minute)."""
    tmp = runs["tmp"]
    gpu, cpu = tmp / "sim-gpu.h5", tmp / "sim-cpu.h5"
    few = ("--limit", 36, "--val-split", 0.1)
    one_process(*train_args(runs["data"], cpu, 1, *few))
    args = [str(a) for a in train_args(runs["data"], gpu, 1, *few)]
    args[args.index("--device") + 1] = "cuda"
    result = cli_on_ranks(*args, env=mpi_env(NUMBA_ENABLE_CUDASIM="1"), timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert ("device cuda (fp32) on 2 ranks (MPI, batch 16 split over them), gradients "
            "through pinned host memory") in result.stdout
    assert load_checkpoint(gpu)[1].training.epoch == 1
    assert assert_close(cpu, gpu, rtol=1e-5) < 1e-5


@needs_mpi
def test_with_dropout_and_augmentation_a_resume_on_as_many_ranks_is_exact(
        runs: dict[str, Path]) -> None:
    """Per-rank dropout and augmentation streams: 2 epochs straight on 2 ranks equal 1
    epoch, then a resume for the 2nd, bit for bit (every rank's stream is in the
    checkpoint); and they differ from one process (the streams are per rank)."""
    tmp, data = runs["tmp"], runs["data"]
    spec = SPEC.replace("fc 8 activation=relu;", "fc 8 activation=relu; dropout 0.25;")
    straight, split = tmp / "aug-straight.h5", tmp / "aug-split.h5"

    def args(out: Path, epochs: int) -> list[object]:
        plain = train_args(data, out, epochs)
        plain[1] = spec
        return [*plain, "--augment"]

    for out, epochs in ((straight, 2), (split, 1)):
        result = cli_on_ranks(*args(out, epochs))
        assert result.returncode == 0, result.stderr
    result = cli_on_ranks("train", "--resume", split, "--epochs", 2)
    assert result.returncode == 0, result.stderr
    for name, w in weights(straight).items():
        np.testing.assert_array_equal(weights(split)[name], w, err_msg=name)
    one = tmp / "aug-one.h5"
    one_process(*args(one, 2))
    assert not np.array_equal(weights(one)["0.W"], weights(straight)["0.W"])
