"""Real btrfs filesystems on loop-mounted sparse images kept in a private tmpfs."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import warnings
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

PathLike = Union[str, "os.PathLike[str]"]

REQUIRED_TOOLS = ("btrfs", "mkfs.btrfs", "mount", "umount", "losetup", "truncate", "stat")


class CleanupError(RuntimeError):
    """Something we created could not be unmounted, detached or removed."""


def missing_tools(tools: Sequence[str] = REQUIRED_TOOLS) -> List[str]:
    """Return the names in *tools* that are not on PATH."""
    return [tool for tool in tools if shutil.which(tool) is None]


class CommandError(subprocess.CalledProcessError):
    """A CalledProcessError whose message includes the command's stderr."""

    def __str__(self) -> str:
        return f"{super().__str__()} stderr: {(self.stderr or '').strip()}"


def run(argv: Sequence[PathLike], check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    """Run *argv* capturing text output; with *check*, raise CommandError on failure."""
    argv = [os.fspath(a) for a in argv]
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)
    if check and proc.returncode != 0:
        raise CommandError(proc.returncode, argv, proc.stdout, proc.stderr)
    return proc


def pipeline(
    *argvs: Sequence[PathLike], check: bool = True, timeout: float = 600
) -> List[subprocess.CompletedProcess]:
    """Run ``argv1 | argv2 | ...`` without a shell, e.g. ``btrfs send`` into ``ssh ... btrfs receive``.

    Returns one CompletedProcess per stage (text stderr; stdout only for the
    last stage). With *check*, raise CommandError for the first failed stage.
    On timeout or interrupt every stage (all started here) is killed.
    """
    if not argvs:
        raise ValueError("pipeline needs at least one command")
    argvs = [[os.fspath(a) for a in argv] for argv in argvs]
    # Temp files, not pipes, collect output: nothing can block on a full pipe buffer.
    logs = [tempfile.TemporaryFile() for _ in argvs]
    out = tempfile.TemporaryFile()
    procs: List[subprocess.Popen] = []
    try:
        for i, argv in enumerate(argvs):
            last = i == len(argvs) - 1
            stdin = procs[-1].stdout if procs else subprocess.DEVNULL
            stdout = out if last else subprocess.PIPE
            procs.append(subprocess.Popen(argv, stdin=stdin, stdout=stdout, stderr=logs[i]))
            if i:
                # Only the consumer keeps the read end, so the producer gets EPIPE if it dies.
                procs[-2].stdout.close()
        deadline = time.monotonic() + timeout
        for proc in procs:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        results = []
        for i, (proc, log) in enumerate(zip(procs, logs)):
            log.seek(0)
            stdout = None
            if i == len(procs) - 1:
                out.seek(0)
                stdout = out.read().decode(errors="replace")
            stderr = log.read().decode(errors="replace")
            results.append(subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr))
    except BaseException:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        raise
    finally:
        for f in logs + [out]:
            f.close()
    if check:
        for result in results:
            if result.returncode != 0:
                raise CommandError(result.returncode, result.args, result.stdout, result.stderr)
    return results


def _unescape_mountinfo(field: str) -> str:
    # /proc/self/mountinfo escapes space, tab, newline and backslash as octal.
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, char)
    return field


def is_mounted(path: PathLike) -> bool:
    """True if *path* is a mount point (per /proc/self/mountinfo, so btrfs subvolumes don't fool it)."""
    target = os.path.realpath(os.fspath(path))
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
        return any(_unescape_mountinfo(line.split()[4]) == target for line in f)


def fs_type(path: PathLike) -> str:
    """Filesystem type name of the filesystem holding *path* (``stat -f -c %T``)."""
    return run(["stat", "-f", "-c", "%T", path]).stdout.strip()


def loop_devices_of(image: PathLike) -> List[str]:
    """Loop devices currently backed by *image* (``losetup -j``)."""
    if not os.path.exists(image):
        return []
    out = run(["losetup", "-j", image], check=False).stdout
    # Lines look like "/dev/loop3: [0045]:12 (/tmp/x/src.img)".
    return [line.split(":", 1)[0] for line in out.splitlines() if line.strip()]


def create_subvolume(path: PathLike) -> Path:
    """``btrfs subvolume create PATH``; returns the path."""
    run(["btrfs", "subvolume", "create", path])
    return Path(path)


def snapshot(source: PathLike, dest: PathLike, readonly: bool = True) -> Path:
    """``btrfs subvolume snapshot [-r] SOURCE DEST``; returns DEST."""
    argv = ["btrfs", "subvolume", "snapshot"] + (["-r"] if readonly else []) + [source, dest]
    run(argv)
    return Path(dest)


def subvolume_sync(path: PathLike) -> None:
    """Wait until deleted subvolumes on the filesystem of *path* are really gone (space freed)."""
    run(["btrfs", "subvolume", "sync", path])


def unmount(path: PathLike, retries: int = 10, delay: float = 0.2) -> bool:
    """Unmount *path*, retrying while it is busy; lazily unmount as a last resort.

    Returns True for a clean unmount, False if a lazy unmount was needed.
    Raises CleanupError if even the lazy unmount fails.
    """
    last_error = ""
    for attempt in range(max(1, retries)):
        if not is_mounted(path):
            return True
        proc = run(["umount", path], check=False)
        if proc.returncode == 0:
            return True
        last_error = proc.stderr.strip()
        # Typically EBUSY: a receive or a shell still has files open there.
        if attempt + 1 < retries:
            time.sleep(delay)
    proc = run(["umount", "-l", path], check=False)
    if proc.returncode != 0 and is_mounted(path):
        raise CleanupError(f"cannot unmount {path}: {last_error}; umount -l: {proc.stderr.strip()}")
    warnings.warn(f"{path} was busy ({last_error}); lazily unmounted", RuntimeWarning, stacklevel=2)
    return False


class _Filesystem:
    """Bookkeeping for one loop-mounted btrfs image."""

    def __init__(self, name: str, image: Path, mountpoint: Path) -> None:
        self.name = name
        self.image = image
        self.mountpoint = mountpoint
        self.loop_devices: List[str] = []


class BtrfsPool:
    """One private tmpfs holding sparse btrfs images, each loop-mounted on its own temp dir.

    Usage::

        with BtrfsPool(tmpfs_size="6G") as pool:
            src = pool.filesystem("src", size="1G")
            vol = pool.subvolume(src / "data")

    Everything created is unmounted, detached and removed on exit, also on failure.
    """

    def __init__(
        self,
        tmpfs_size: str = "6G",
        prefix: str = "btrfs-pool-",
        umount_retries: int = 10,
        retry_delay: float = 0.2,
    ) -> None:
        self.tmpfs_size = tmpfs_size
        self.prefix = prefix
        self.umount_retries = umount_retries
        self.retry_delay = retry_delay
        self.tmpfs: Optional[Path] = None
        self._filesystems: Dict[Path, _Filesystem] = {}
        self._counter = 0

    # -- lifecycle -------------------------------------------------------

    def __enter__(self) -> "BtrfsPool":
        self.open()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        problems = self.close()
        # Never mask the exception that is already propagating.
        if problems and exc_type is None:
            raise CleanupError("; ".join(problems))

    def open(self) -> "BtrfsPool":
        """Create and mount the tmpfs that holds the images."""
        if self.tmpfs is not None:
            return self
        self.tmpfs = Path(tempfile.mkdtemp(prefix=self.prefix))
        try:
            run(["mount", "-t", "tmpfs", "-o", f"size={self.tmpfs_size},mode=0700", "tmpfs", self.tmpfs])
        except BaseException:
            os.rmdir(self.tmpfs)
            self.tmpfs = None
            raise
        return self

    def close(self) -> List[str]:
        """Unmount and detach everything created; returns a list of problems (empty if clean)."""
        problems: List[str] = []
        for mountpoint in reversed(list(self._filesystems)):
            problems.extend(self._teardown(self._filesystems.pop(mountpoint), remove_image=False))
        if self.tmpfs is not None:
            try:
                unmount(self.tmpfs, self.umount_retries, self.retry_delay)
                os.rmdir(self.tmpfs)
                self.tmpfs = None
            except (CleanupError, OSError) as e:
                problems.append(str(e))
        return problems

    # -- filesystems -----------------------------------------------------

    def filesystem(
        self,
        name: str,
        size: str = "1G",
        mkfs_args: Sequence[str] = (),
        mount_options: Sequence[str] = (),
    ) -> Path:
        """Make a fresh btrfs of *size* (sparse) and mount it; returns the mount point.

        *name* only labels the image and mount dir; it may be reused.
        """
        if self.tmpfs is None:
            raise RuntimeError("BtrfsPool is not open (use it as a context manager)")
        self._counter += 1
        image = self.tmpfs / f"{name}-{self._counter}.img"
        run(["truncate", "-s", size, image])
        try:
            run(["mkfs.btrfs", "-q", "-f", "-L", name[:255], *mkfs_args, image])
            mountpoint = Path(tempfile.mkdtemp(prefix=f"btrfs-{name}-"))
        except BaseException:
            image.unlink()
            raise
        fs = _Filesystem(name, image, mountpoint)
        # Register before mounting so a half-done mount is still cleaned up.
        self._filesystems[mountpoint] = fs
        options = ",".join(["loop", *mount_options])
        try:
            run(["mount", "-o", options, image, mountpoint])
        except BaseException:
            self._teardown(self._filesystems.pop(mountpoint), remove_image=True)
            raise
        fs.loop_devices = loop_devices_of(image)
        return mountpoint

    def release(self, mountpoint: PathLike) -> None:
        """Unmount one filesystem made by :meth:`filesystem`, detach its loop device, drop its image."""
        fs = self._filesystems.pop(Path(mountpoint))
        problems = self._teardown(fs, remove_image=True)
        if problems:
            raise CleanupError("; ".join(problems))

    def image_of(self, mountpoint: PathLike) -> Path:
        """The image file behind a mount point made by :meth:`filesystem`."""
        return self._filesystems[Path(mountpoint)].image

    def loop_device_of(self, mountpoint: PathLike) -> str:
        """The loop device the mount picked (e.g. ``/dev/loop7``)."""
        return self._filesystems[Path(mountpoint)].loop_devices[0]

    @property
    def filesystems(self) -> List[Path]:
        """Mount points currently managed by this pool."""
        return list(self._filesystems)

    # -- subvolumes (thin wrappers, here so tests need only the pool) ----

    @staticmethod
    def subvolume(path: PathLike) -> Path:
        """Create a subvolume at *path*."""
        return create_subvolume(path)

    @staticmethod
    def snapshot(source: PathLike, dest: PathLike, readonly: bool = True) -> Path:
        """Snapshot *source* to *dest* (read-only by default, as btrfs send needs)."""
        return snapshot(source, dest, readonly)

    # -- internals -------------------------------------------------------

    def _teardown(self, fs: _Filesystem, remove_image: bool) -> List[str]:
        problems: List[str] = []
        clean = True
        try:
            clean = unmount(fs.mountpoint, self.umount_retries, self.retry_delay)
        except CleanupError as e:
            problems.append(str(e))
            clean = False
        problems.extend(self._detach(fs, wait=clean))
        try:
            if not is_mounted(fs.mountpoint):
                os.rmdir(fs.mountpoint)
        except OSError as e:
            problems.append(f"cannot remove {fs.mountpoint}: {e}")
        if remove_image:
            # Safe even after a lazy unmount: tmpfs frees the data once the loop lets go.
            try:
                fs.image.unlink()
            except FileNotFoundError:
                pass
        return problems

    def _detach(self, fs: _Filesystem, wait: bool) -> List[str]:
        # mount -o loop sets autoclear, so umount normally detaches; the kernel
        # may lag a little, so poll before detaching by hand.
        deadline = time.monotonic() + (2.0 if wait else 0.0)
        while True:
            devices = loop_devices_of(fs.image)
            if not devices or time.monotonic() >= deadline:
                break
            time.sleep(0.05)
        problems = []
        for device in devices:
            # On a device still held by a lazy unmount this only schedules the detach.
            proc = run(["losetup", "-d", device], check=False)
            if proc.returncode != 0 and device in loop_devices_of(fs.image):
                problems.append(f"cannot detach {device} ({fs.image}): {proc.stderr.strip()}")
        return problems


#: Alias: the pool is the loop-btrfs manager.
LoopBtrfs = BtrfsPool
