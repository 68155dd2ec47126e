"""Data-parallel training over MPI: who the ranks are, one gradient all-reduce per step,
broadcasts and sharded sums, and a watchdog that stops a rank whose peers are gone.

``mpirun -n N numbacnn train ...`` (or ``srun``) starts N processes; :func:`world`
detects them from the launcher's environment variables (``OMPI_COMM_WORLD_SIZE``,
``PMI_SIZE``, ``PMIX_RANK``, ``SLURM_PROCID`` with ``SLURM_NTASKS`` > 1) and only then
imports mpi4py: without a launcher nothing MPI is imported and training is exactly the
single-process code.

Semantics (see ``docs/distributed.md``): every rank holds the whole dataset and the same
shuffled order; rank r trains on its contiguous slice of each global batch
(``--batch-size`` stays the global batch). Each rank's gradient is its slice's summed
gradient divided by the *global* batch size (``SoftmaxCrossEntropy.mean_over``), which is
the slice mean weighted by slice/global batch, so one sum-Allreduce over the ranks gives
the global batch's mean gradient: the same update as one process, up to the order of
float sums. All gradients are views of one flat float32 buffer (:class:`GradientAllreduce`),
reduced with one ``MPI_Allreduce`` right after backward. On a GPU the buffer is staged
through page-locked host memory, or handed to MPI as device memory when the MPI is
CUDA-aware (``NUMBACNN_MPI_CUDA_AWARE=1``).

A rank whose peers died must not wait forever: every collective runs under a deadline
(``NUMBACNN_MPI_TIMEOUT`` seconds, default :data:`DEFAULT_TIMEOUT`), and a SIGTERM from
the launcher (Open MPI and Slurm send one when another rank dies) is caught even while
the rank is blocked inside MPI. Either way the rank writes one ``error:`` line to stderr
and exits with status 2 at once (``os._exit``: MPI cannot be finalized with a peer
missing). Checkpoints are written by rank 0 alone and atomically, so the last one stays
intact.

Who reports an error, and when (:func:`join_world`, :func:`errors_said_once`): rank 0
says it and ends at once, which makes the launcher end the other ranks; another rank
first waits :data:`ERROR_GRACE_S` for that (an error every rank meets is said once), then
says its own error naming itself. A front end passes the function that prints a line.
"""

from __future__ import annotations

import atexit
import contextlib
import math
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from numbacnn.device import to_host
from numbacnn.errors import NumbacnnError
from numbacnn.training.flat_buffers import flat_arrays

DEFAULT_TIMEOUT = 300.0  # seconds a collective may wait for the other ranks
EXIT_STATUS = 2  # what a rank exits with when its peers are gone (or on an error)
ERROR_GRACE_S = 3.0  # how long a rank other than 0 waits for rank 0 to report an error
SIZE_VARIABLES = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE")  # launchers that say the world size
RANK_VARIABLES = ("OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK", "SLURM_PROCID")
LOCAL_RANK_VARIABLES = ("OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID",
                        "PMI_LOCAL_RANK")


class DistributedError(NumbacnnError):
    """MPI is asked for but missing, or the ranks disagree."""


def launched_by_mpi(environ: dict[str, str] | None = None) -> bool:
    """True when an MPI launcher (mpirun, mpiexec, srun with several tasks) started this
    process with more than one rank, or might have (PMIx says no size); decided from the
    environment alone, without importing mpi4py."""
    env = os.environ if environ is None else environ
    for name in SIZE_VARIABLES:
        if name in env:
            return _int(env[name], 1) > 1
    if "PMIX_RANK" in env:
        return True
    return "SLURM_PROCID" in env and _int(env.get("SLURM_NTASKS", "1"), 1) > 1


def launcher_rank(environ: dict[str, str] | None = None) -> int:
    """This process's rank as the launcher's environment gives it (0 without a launcher),
    without importing mpi4py: for commands that are not data-parallel, which rank 0
    alone runs."""
    env = os.environ if environ is None else environ
    if not launched_by_mpi(env):
        return 0
    rank = _first_int(env, RANK_VARIABLES)
    return 0 if rank is None else rank


LAUNCHER_NAMES = ("mpirun", "mpiexec", "prterun", "orterun", "mpiexec.hydra")
TERMINAL_PREFIXES = ("/dev/pts/", "/dev/tty", "/dev/console")


def launcher_writes_to_terminal(pid: int | None = None, proc: Path = Path("/proc")) -> bool:
    """True when the MPI launcher that started this process runs on this node and its
    own stdout is a terminal. Open MPI gives each rank a pseudo-terminal for stdout even
    when ``mpirun > log`` writes to a file, so a rank's ``isatty()`` says nothing about
    where its output ends up. Follows the parent processes (from ``pid``, default this
    process's parent) in ``proc``; False wherever that cannot be told (no /proc, the
    launcher on another node behind a daemon, another user's process)."""
    pid = os.getppid() if pid is None else pid
    for _ in range(16):  # a launcher is a few parents up at most (a shell, a wrapper)
        if pid <= 1:
            return False
        try:
            if (proc / str(pid) / "comm").read_text().strip() in LAUNCHER_NAMES:
                return os.readlink(proc / str(pid) / "fd" / "1").startswith(TERMINAL_PREFIXES)
            # /proc/PID/stat: "PID (comm) state PPID ...", comm may hold spaces and ")"
            pid = int((proc / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            return False
    return False


def _first_int(env: Any, names: tuple[str, ...]) -> int | None:
    """The first of ``names`` set in ``env``, as an integer (0 when it is not one); None
    when none is set."""
    return next((_int(env[name], 0) for name in names if name in env), None)


def _int(text: str, default: int) -> int:
    try:
        return int(text)
    except ValueError:
        return default


@dataclass
class World:
    """The processes of one training run: ``size`` ranks, this one is ``rank`` (0-based),
    ``local_rank`` among those on this node; ``comm`` is mpi4py's COMM_WORLD (None for a
    single process). ``timeout``: seconds any collective may wait."""

    size: int = 1
    rank: int = 0
    local_rank: int = 0
    comm: Any = None
    timeout: float = DEFAULT_TIMEOUT
    cuda_aware: bool = False
    checkpoint: Path | None = None  # named in the line printed when the peers are gone
    # how a user continues from that checkpoint, "{checkpoint}" filled in; a front end
    # sets its own (the command that resumes)
    resume_advice: str = "Trainer.from_checkpoint('{checkpoint}')"
    ending: bool = False  # set by a rank on its way out: a SIGTERM then ends it silently
    _watchdog: _Watchdog | None = field(default=None, repr=False)

    @property
    def is_root(self) -> bool:
        """True on rank 0: the rank that prints, shows progress and writes checkpoints."""
        return self.rank == 0

    def shard(self, n: int) -> tuple[int, int]:
        """[start, stop) of this rank's contiguous share of n items: the first n mod size
        ranks get one item more (np.array_split's rule), so rank 0's share is never empty
        when n ≥ 1."""
        base, extra = divmod(n, self.size)
        start = self.rank * base + min(self.rank, extra)
        return start, start + base + (self.rank < extra)

    def start(self) -> None:
        """Read ``NUMBACNN_MPI_TIMEOUT`` and ``NUMBACNN_MPI_CUDA_AWARE`` (DistributedError
        for a bad value) and start the watchdog; once, and only with several ranks. Apart
        from :func:`world`, so that a front end reports a bad value from rank 0 alone."""
        if self.size == 1 or self._watchdog is not None:
            return
        self.timeout, self.cuda_aware = _timeout(), _cuda_aware()
        self._watchdog = _Watchdog(self)

    # --- collectives, each under the deadline ------------------------------------------
    @contextlib.contextmanager
    def deadline(self, what: str) -> Iterator[None]:
        """Within the block, a wait longer than ``timeout`` for the other ranks ends this
        process with one line naming ``what``."""
        if self._watchdog is None:
            yield
            return
        self._watchdog.arm(what, self.timeout)
        try:
            yield
        finally:
            self._watchdog.disarm()

    def allsum(self, values: np.ndarray) -> np.ndarray:
        """Element-wise sum over the ranks of a small float64 array (a copy; as is for
        one process)."""
        out = np.array(values, np.float64)
        if self.size > 1:
            with self.deadline("sum of the loss and accuracy"):
                self.comm.Allreduce(self._mpi().IN_PLACE, out)
        return out

    def gather(self, obj: Any) -> list[Any] | None:
        """[the object of every rank] on rank 0, None elsewhere (pickled; small things)."""
        if self.size == 1:
            return [obj]
        with self.deadline("gather of the random-generator states"):
            return self.comm.gather(obj, root=0)

    def broadcast_parameters(self, net: Any) -> None:
        """Overwrite every rank's weights with rank 0's (one Bcast of one flat buffer)."""
        if self.size == 1:
            return
        params = [w for _, w, _ in net.parameters()]
        flat = np.concatenate([np.asarray(to_host(w), np.float32).ravel() for w in params])
        with self.deadline("broadcast of the initial weights"):
            self.comm.Bcast(flat, root=0)
        B, offset = net.backend(), 0
        for w in params:
            B.upload(flat[offset:offset + w.size].reshape(w.shape), w)
            offset += w.size

    def evaluate(self, net: Any, x: np.ndarray, labels: np.ndarray,
                 batch_size: int = 256) -> tuple[float, float]:
        """(mean cross-entropy, accuracy 0…1) over all of ``x`` (normalized float32
        N×C×H×W, labels (N,)), each rank scoring its shard and the sums reduced; NaN
        for N = 0."""
        start, stop = self.shard(len(labels))
        mine = labels[start:stop]
        proba = net.predict_proba(x[start:stop], batch_size)
        picked = proba[np.arange(len(mine)), mine].astype(np.float64)
        loss = -np.log(np.maximum(picked, np.finfo(np.float32).tiny)).sum()
        correct = float(np.sum(proba.argmax(axis=1) == mine)) if len(mine) else 0.0
        total_loss, total_correct, count = self.allsum(np.array([loss, correct, len(mine)]))
        if count == 0:
            return math.nan, math.nan
        return float(total_loss / count), float(total_correct / count)

    def _mpi(self) -> Any:
        from mpi4py import MPI

        return MPI


class GradientAllreduce:
    """All of ``net``'s gradients as views of one flat float32 buffer, summed over the
    ranks with one ``MPI_Allreduce`` per step.

    Building it rebinds every ``layer.grads[key]`` to a view of :attr:`flat` (same shape;
    the layers write their gradients there): ``flat_buffers.flat_arrays``, the buffer the
    optimizer updates from too. On a GPU the sum goes device buffer →
    page-locked host buffer → Allreduce → device buffer, or straight on the device
    buffer when the MPI is CUDA-aware.
    """

    def __init__(self, world: World, net: Any) -> None:
        self.world, self.net = world, net
        B = self.backend = net.backend()
        self.on_device = not B.on_host
        self.flat = flat_arrays(net, "grads")  # shared with the optimizer's update
        self.size = int(self.flat.size)  # floats, alignment gaps included
        self.staged = self.on_device and not world.cuda_aware
        self.host = B.pinned_empty((self.size,)) if self.staged else None
        self.calls = 0
        self.seconds = 0.0  # in __call__ so far: the Allreduce and the wait for other ranks

    def shard(self, idx: np.ndarray) -> np.ndarray:
        """This rank's slice of a global batch's indices; makes the loss average the
        gradient over the global batch (len(idx)) rather than over the slice."""
        self.net.loss.mean_over = len(idx)
        start, stop = self.world.shard(len(idx))
        return idx[start:stop]

    def skip(self) -> None:
        """Stand-in for a training step on an empty slice (a last batch smaller than the
        world): zero gradients, and the step counted as on the other ranks."""
        self.backend.fill(self.size, self.flat, np.float32(0.0))
        self.net.step += 1

    def __call__(self) -> None:
        """Replace every rank's gradients by their sum over the ranks (after backward)."""
        world = self.world
        MPI = world._mpi()
        started = time.perf_counter()
        with world.deadline("gradient all-reduce"):
            if self.host is not None:
                self.backend.download(self.flat, self.host)  # waits for backward
                world.comm.Allreduce(MPI.IN_PLACE, [self.host, MPI.FLOAT])
                self.backend.upload(self.host, self.flat)
            else:
                if self.on_device:
                    self.backend.synchronize()  # MPI reads device memory: backward done
                world.comm.Allreduce(MPI.IN_PLACE, [self.flat, MPI.FLOAT])
        self.calls += 1
        self.seconds += time.perf_counter() - started


# --- the world of this process ------------------------------------------------------------

_world: World | None = None


def world() -> World:
    """This process's World, detected once. Without an MPI launcher's environment a
    single-process World (mpi4py is not imported). Under a launcher it imports mpi4py
    (DistributedError if it is missing), gives each rank its own GPU by local rank
    (``CUDA_VISIBLE_DEVICES``, before CUDA starts: call this before building the network);
    :meth:`World.start` (the Trainer calls it) reads the settings and starts the
    watchdog."""
    global _world
    if _world is not None:
        return _world
    if not launched_by_mpi():
        _world = World()
        return _world
    local_rank = _first_int(os.environ, LOCAL_RANK_VARIABLES)
    if local_rank is not None:
        _pick_gpu(local_rank)
    try:
        import mpi4py

        mpi4py.rc.thread_level = "funneled"  # only the main thread calls MPI
        from mpi4py import MPI
    except ImportError as exc:
        raise DistributedError(
            f"started by an MPI launcher but mpi4py cannot be imported ({exc}); install it "
            "with pip install 'numbacnn[mpi]' (Open MPI and mpi4py), or run without mpirun"
        ) from None
    comm = MPI.COMM_WORLD
    size, rank = comm.Get_size(), comm.Get_rank()
    if local_rank is None:
        local_rank = comm.Split_type(MPI.COMM_TYPE_SHARED).Get_rank()
    _world = World(size, rank, local_rank, comm if size > 1 else None)
    return _world


def join_world(say: Callable[[str], None]) -> World:
    """:func:`world` for a data-parallel front end, before CUDA starts. Its
    DistributedError on rank 0 (or in a single process) is raised; on another rank (e.g.
    mpi4py missing on that rank's node alone) it is handed to ``say`` after
    :data:`ERROR_GRACE_S`, naming the rank, unless rank 0's exit ended this process
    first, and the process ends with status :data:`EXIT_STATUS`."""
    try:
        return world()
    except DistributedError as exc:
        rank = launcher_rank()
        if rank == 0:
            raise
        _say_after_grace(str(exc), f"rank {rank}", say)
        exit_now(EXIT_STATUS)
        raise  # only where exit_now is replaced (tests)


@contextlib.contextmanager
def errors_said_once(ranks: World, say: Callable[[str], None],
                     describe: Callable[[NumbacnnError], str] = str) -> Iterator[None]:
    """The block run on ``ranks``, a NumbacnnError in it said once. In a single process
    nothing changes (the error propagates). Under MPI, ranks other than 0 write nothing
    to stdout (for the life of the process), and on a NumbacnnError (worded by
    ``describe``) rank 0 hands it to ``say`` and ends at once with status
    :data:`EXIT_STATUS`, without MPI_Finalize (which would wait for ranks stuck in a
    collective), so the launcher ends the others; another rank waits
    :data:`ERROR_GRACE_S` for that, then says its error as "rank R of N: ..."."""
    if ranks.size == 1:
        yield
        return
    if not ranks.is_root:
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - for the life of the process
    try:
        yield
    except NumbacnnError as exc:
        ranks.ending = True
        text = describe(exc)
        if ranks.is_root:
            say(text)
        else:
            _say_after_grace(text, f"rank {ranks.rank} of {ranks.size}", say)
        exit_now(EXIT_STATUS)
        raise  # only where exit_now is replaced (tests)


def _say_after_grace(text: str, rank: str, say: Callable[[str], None]) -> None:
    """The error of a rank other than 0, said after ERROR_GRACE_S: an error every rank
    meets is said by rank 0 alone, whose exit makes the launcher end this rank within
    that time; an error of this rank alone is then said here, naming ``rank``."""
    time.sleep(ERROR_GRACE_S)
    say(f"{rank}: {text}")


def _timeout() -> float:
    text = os.environ.get("NUMBACNN_MPI_TIMEOUT", "")
    try:
        value = float(text) if text else DEFAULT_TIMEOUT
    except ValueError:
        value = math.nan
    if not value > 0:
        raise DistributedError(f"NUMBACNN_MPI_TIMEOUT={text!r}: give the seconds a rank may "
                               "wait for the others, a number > 0")
    return value


def _cuda_aware() -> bool:
    """NUMBACNN_MPI_CUDA_AWARE: 1 hands MPI device buffers, 0 or unset stages them through
    host memory. Never guessed: MPIX_Query_cuda_support answers 0 for some CUDA-aware
    builds (CUDA through UCX), and a wrong yes crashes inside MPI."""
    text = os.environ.get("NUMBACNN_MPI_CUDA_AWARE", "").strip()
    if text not in ("", "0", "1"):
        raise DistributedError(f"NUMBACNN_MPI_CUDA_AWARE={text!r}: give 1 (this MPI takes "
                               "GPU memory) or 0 (stage the gradients through host memory)")
    return text == "1"


def _pick_gpu(local_rank: int) -> None:
    """One GPU per rank on a node: rank L sees only GPU L mod (GPUs), chosen from
    CUDA_VISIBLE_DEVICES when set, else from the driver's list in /proc (no CUDA call,
    so CUDA starts later with the choice made)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        ids = [v for v in visible.split(",") if v.strip()]
    else:
        gpus = Path("/proc/driver/nvidia/gpus")
        ids = [str(i) for i in range(len(list(gpus.iterdir())))] if gpus.is_dir() else []
    if ids:
        os.environ["CUDA_VISIBLE_DEVICES"] = ids[local_rank % len(ids)]


def exit_now(status: int = EXIT_STATUS) -> None:
    """Flush stdout and stderr and end the process at once, skipping MPI_Finalize (which
    waits for every rank, forever when one is gone)."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(status)


class _Watchdog:
    """A daemon thread that ends the process with one line when a collective waits longer
    than its deadline or the launcher sends SIGTERM (delivered through a wakeup pipe, so
    it is seen while the main thread is blocked inside MPI)."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.what: str | None = None
        self.until = math.inf
        self._read, write = os.pipe()
        os.set_blocking(write, False)
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, lambda signum, frame: None)  # the thread acts
            signal.set_wakeup_fd(write)
        threading.Thread(target=self._watch, name="numbacnn-mpi-watchdog", daemon=True).start()
        atexit.register(self._stop)

    def arm(self, what: str, seconds: float) -> None:
        self.what, self.until = what, time.monotonic() + seconds

    def disarm(self) -> None:
        self.what, self.until = None, math.inf

    def _stop(self) -> None:
        self.disarm()

    def _watch(self) -> None:
        while True:
            ready, _, _ = select.select([self._read], [], [], 0.5)
            if ready and signal.SIGTERM in os.read(self._read, 64):
                if self.world.ending:
                    exit_now(EXIT_STATUS)
                self._fail("was stopped by the MPI launcher (another rank failed or was "
                           "killed)")
            what = self.what
            if what is not None and time.monotonic() > self.until:
                self._fail(f"waited {self.world.timeout:g} s for the other ranks in the "
                           f"{what} (a rank died or hangs)")

    def _fail(self, why: str) -> None:
        w = self.world
        kept = (f"the last checkpoint {w.checkpoint} is intact: continue with "
                + w.resume_advice.format(checkpoint=w.checkpoint)
                if w.checkpoint is not None and w.checkpoint.exists()
                else "no checkpoint was written")
        sys.stderr.write(f"error: rank {w.rank} of {w.size} {why}; training stopped and "
                         f"{kept}\n")
        exit_now(EXIT_STATUS)
