"""Run directories: where a run lives, who may write it, and what a killed writer left behind.

A run directory is created once (by rank 0) under ``run_root`` with a plain name, and written by one
``flowkit train`` at a time: ``RunLock`` takes an advisory lock (``fcntl.flock``) on the run directory itself,
so deleting a file cannot release it, and the lock goes with the process, so a killed writer never leaves it
held. Processes forked while it is held (DataLoader workers) close their copy at once: a writer killed with
kill -9 does not leave its lock with loader processes that outlive it for a moment. ``RUN/.lock`` only says who
holds it; a second writer is refused with one line naming the holder. Under the lock, temporary files of
interrupted saves are removed. A lock on a network file system holds only where that system supports flock.
"""

from __future__ import annotations

import os
import re
import socket
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Callable

from flowkit.errors import ConfigError

RUN_DIR_ENV = "FLOWKIT_RUN_DIR"
PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
NAME_RULE = "a plain name: letters, digits, '.', '_' and '-', starting with a letter or digit, at most 100 characters"
TEMP_GLOB = ".*.tmp-*"  # write_atomically's temporary files


def is_plain_name(name: str) -> bool:
    return isinstance(name, str) and PLAIN_NAME.fullmatch(name) is not None


def is_rank_zero() -> bool:
    """Whether this is the global rank 0 of a run: RANK under torchrun, SLURM_PROCID under srun, else node 0's
    local rank 0 (Lightning's own launcher, which starts the other ranks from inside fit)."""
    for variable in ("RANK", "SLURM_PROCID"):
        if variable in os.environ:
            return int(os.environ[variable]) == 0
    return int(os.environ.get("NODE_RANK", 0)) == 0 and int(os.environ.get("LOCAL_RANK", 0)) == 0


def launched_environment():
    """Lightning's cluster environment when an external launcher started every process of the run (torchrun,
    SLURM's srun; detected in Lightning's own order) and there are several, else None."""
    from lightning.fabric.plugins.environments import SLURMEnvironment, TorchElasticEnvironment

    for environment in (SLURMEnvironment, TorchElasticEnvironment):
        if environment.detect():
            env = environment()
            return env if env.world_size() > 1 else None
    return None


def shared_run_dir(make: Callable[[], Path], device: str) -> Path:
    """The run directory: ``make()``'s on global rank 0; under an external launcher (torchrun, SLURM) every other
    rank receives its path. The process group is started here as Lightning would start it (nccl on GPUs, gloo on
    CPUs: Lightning then finds it started) and the path crosses it on a gloo group; a failure on rank 0 reaches
    every rank as the same error."""
    env = launched_environment()
    if env is None:
        return make()
    import torch.distributed as dist

    if not dist.is_initialized():
        os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = env.main_address, str(env.main_port)
        dist.init_process_group("nccl" if device == "cuda" else "gloo", rank=env.global_rank(),
                                world_size=env.world_size())
    message: list[Any] = [None]
    if env.global_rank() == 0:
        try:
            message = [("ok", str(make()))]
        except ConfigError as exc:
            message = [("error", str(exc))]
    group = dist.new_group(backend="gloo")
    try:
        dist.broadcast_object_list(message, src=0, group=group)
    finally:
        dist.destroy_process_group(group)
    kind, value = message[0]
    if kind == "error":
        raise ConfigError(value)
    return Path(value)


def new_run_dir(root: str, name: str) -> Path:
    """``ROOT/NAME-STAMP``, created once, by rank 0. Lightning's DDP launcher re-runs the CLI for every other
    rank while rank 0 is inside ``fit``, with ``RUN_DIR_ENV`` in their environment (set by ``train``)."""
    if not is_rank_zero():
        if RUN_DIR_ENV not in os.environ:
            raise ConfigError(f"rank > 0 without {RUN_DIR_ENV}: under an external launcher, set it to the run directory")
        return Path(os.environ[RUN_DIR_ENV])
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_dir = Path(root) / f"{name}-{stamp}"
    suffix = 1
    while True:
        try:
            run_dir.mkdir(parents=True)  # atomic: two runs started in the same second get two directories
            return run_dir
        except FileExistsError:
            run_dir = Path(root) / f"{name}-{stamp}-{suffix}"
            suffix += 1
        except OSError as exc:
            raise ConfigError(f"cannot create the run directory '{run_dir}' (run_root={root!r}): "
                              f"{exc.strerror or exc}") from None


_HELD: set[int] = set()  # the lock descriptors this process holds


def _drop_in_child() -> None:
    """After a fork: the child closes its copies of the locks (the parent keeps them; a lock held by the open file
    would otherwise last until every forked copy is closed)."""
    for fd in list(_HELD):
        try:
            os.close(fd)
        except OSError:
            pass
    _HELD.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_drop_in_child)


def _lock_holder(path: Path) -> str:
    """"pid N" of the process holding a flock on ``path``, read from Linux's /proc/locks ("" where unknown)."""
    try:
        st = os.stat(path)
        key = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
        with open("/proc/locks") as locks:
            for line in locks:
                fields = line.split()
                if len(fields) > 5 and fields[1] == "FLOCK" and fields[5] == key:
                    return f"pid {fields[4]}"
    except (OSError, ValueError):
        pass
    return ""


class RunLock:
    """``with RunLock(run_dir):`` — the one writer of ``run_dir``; another holder is a ConfigError naming it.
    Without ``fcntl`` (Windows) the lock is a no-op."""

    def __init__(self, run_dir: Path, what: str = "run directory", by: str = "flowkit train") -> None:
        self.run_dir, self.what, self.by = Path(run_dir), what, by
        self.file = self.run_dir / ".lock"
        self._fd: int | None = None

    def __enter__(self) -> RunLock:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX
            return self
        fd = os.open(self.run_dir, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            try:
                holder = self.file.read_text(errors="replace")[:200].strip()
            except OSError:  # the file was deleted: the kernel still knows who holds the lock
                holder = _lock_holder(self.run_dir)
            raise ConfigError(f"{self.what} '{self.run_dir}' is being written by {holder or 'another process'}; "
                              "wait for it to end (or stop it) first") from None
        self._fd = fd
        _HELD.add(fd)
        self.file.write_text(f"{self.by} (pid {os.getpid()} on {socket.gethostname()}, since "
                             f"{time.strftime('%Y-%m-%d %H:%M:%S')})")
        for stale in self.run_dir.glob(TEMP_GLOB):  # left by a writer killed during a save
            stale.unlink(missing_ok=True)
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._fd is not None:
            _HELD.discard(self._fd)
            os.close(self._fd)  # releases the lock
            self._fd = None
