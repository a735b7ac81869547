"""Writing results so that a failure never leaves a broken or half-written file behind.

Outputs are checked before any work starts (``check_output``, ``check_output_dir``), so a mistyped
path fails at once rather than after tagging a treebank. Files are then written whole or not at all
(``write_atomic``) and an export folder is built beside its place and swapped in (``atomic_dir``):
a full disk or a kill leaves the previous file or folder as it was, and of an earlier folder only the
files the tool writes are replaced; what the user put there stays. Temporary files are created
with the usual permissions (``0666`` and ``0777`` less the umask), unlike ``mkstemp``'s ``0600``.
"""

from __future__ import annotations

import fcntl
import os
import re
import secrets
import shutil
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from pathlib import Path

from nasty_lightning.errors import UserError


def _target(path: str | Path) -> Path:
    """The absolute path to write: symbolic links are followed, so the file a link points to is replaced;
    special files (``/dev/stdout``, a named pipe) are kept as named, to be written in place."""
    path = Path(path)
    special = path.exists() and not (path.is_file() or path.is_dir())
    return path if special else path.resolve()


def _check_parent(target: Path, path: str | Path, what: str) -> None:
    parent = target.parent
    if not parent.is_dir():
        raise UserError(f"{what} {path}: the folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"{what} {path}: the folder {parent} is not writable")


def check_output(path: str | Path, what: str) -> None:
    """Refuse an output file that cannot be written: ``what`` names it in the message (``--output``)."""
    target = _target(path)
    if target.is_dir():
        raise UserError(f"{what} {path}: it is a folder, not a file")
    _check_parent(target, path, what)


def check_output_dir(path: str | Path, what: str, marker: str) -> None:
    """Refuse an output folder that cannot be written, or a folder with files that is not an earlier output
    (recognised by its ``marker`` file), whose files ``atomic_dir`` would replace."""
    target = _target(path)
    if target.exists() and not target.is_dir():
        raise UserError(f"{what} {path}: it is a file, not a folder")
    if target.is_dir() and any(target.iterdir()) and not (target / marker).is_file():
        raise UserError(
            f"{what} {path}: the folder holds files but no {marker}, so it is not an earlier export; "
            "choose a new or empty folder"
        )
    _check_parent(target, path, what)


def write_atomic(path: str | Path, data: str | bytes) -> None:
    """Write ``data`` (text as UTF-8, line ends as given) to ``path``: a temporary file in the same folder,
    synced and renamed over the target, so the target is either the old file or the whole new one."""
    target = _target(path)
    content = data.encode("utf-8") if isinstance(data, str) else data
    existed = target.exists()
    if existed and not target.is_file():  # /dev/stdout, a named pipe: nothing to rename over
        try:
            with open(target, "wb") as f:
                f.write(content)
        except OSError as err:
            raise _write_error(path, err, existed, "file") from None
        return
    partial = target.with_name(f".{target.name}.{secrets.token_hex(4)}.part")
    try:
        # O_EXCL: never reuse a file someone else put there; mode 0o666 gets the umask applied
        with os.fdopen(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), "wb") as f:
            f.write(content)
            f.flush()
            os.fsync(f.fileno())
        os.replace(partial, target)
    except OSError as err:
        partial.unlink(missing_ok=True)
        raise _write_error(path, err, existed, "file") from None
    _sync_folder(target.parent)


@contextmanager
def atomic_dir(path: str | Path, own: Collection[str] = ()) -> Iterator[Path]:
    """A temporary folder beside ``path`` to fill; on success it takes the place of ``path``, on failure it is
    removed and ``path`` stays as it was.

    Of an earlier folder at ``path``, only the files named in ``own`` (those the tool writes) are replaced
    or removed: every other file and folder there is moved into the new folder right after the swap. The
    new folder's files are given the usual permissions, whatever wrote them (``save_pretrained`` of
    transformers 5 writes ``model.safetensors`` as ``0600``). The swap is two renames, so for an instant no
    folder is at ``path``; no reader ever sees a folder with only some of the new files. What a killed run
    left beside ``path`` is tidied first (``_tidy``), so nothing of it is lost or left behind.
    """
    target = _target(path)
    existed = target.exists()
    building = target.with_name(f".{target.name}.{secrets.token_hex(4)}.part")
    try:
        _tidy(target, own)
        existed = target.exists()
        os.mkdir(building, 0o777)
        building_lock = _lock(building)
    except OSError as err:
        raise _write_error(path, err, existed, "folder") from None
    old, old_lock = building.with_suffix(".old"), None
    file_mode = building.stat().st_mode & 0o666  # 0o666 less the umask, as mkdir applied it to 0o777
    try:
        yield building
        for file in building.rglob("*"):
            if file.is_file():
                file.chmod(file_mode)
                _sync_file(file)
        if existed:
            old_lock = _lock(target, wait=True)  # the earlier folder, set aside, is this run's to empty
            os.rename(target, old)
        try:
            os.rename(building, target)
        except OSError:
            if existed:
                os.rename(old, target)
            raise
    except OSError as err:
        raise _write_error(path, err, existed, "folder") from None
    finally:
        shutil.rmtree(building, ignore_errors=True)
        os.close(building_lock)
        if old_lock is not None and not old.exists():
            os.close(old_lock)
    if existed:
        _move_others(old, target, own)
        shutil.rmtree(old, ignore_errors=True)
        os.close(old_lock)
    _sync_folder(target.parent)


def _lock(folder: Path, wait: bool = False) -> int:
    """An open descriptor of ``folder`` that holds an exclusive lock on it until it is closed or the process
    ends; without ``wait``, ``BlockingIOError`` where another process holds the lock."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except OSError:
        os.close(fd)
        raise
    return fd


def _move_others(old: Path, target: Path, own: Collection[str]) -> None:
    """Move every entry of ``old`` not named in ``own`` into ``target``, where ``target`` has none of that name."""
    for entry in old.iterdir():
        if entry.name not in own and not os.path.lexists(target / entry.name):
            try:
                os.rename(entry, target / entry.name)
            except FileNotFoundError:  # moved by another run tidying the same folder
                continue


def _tidy(target: Path, own: Collection[str]) -> None:
    """Deal with the folders a killed run left beside ``target``, those no running one holds (``_lock``):
    a ``.NAME.HEX.old`` (the earlier folder, set aside by a swap) goes back to ``target`` if nothing is
    there, else the files of it that the tool did not write are moved into ``target``, and it is removed;
    a ``.NAME.HEX.part`` (a folder being built) is removed."""
    pattern = re.compile(rf"\.{re.escape(target.name)}\.[0-9a-f]{{8}}\.(part|old)")
    if not target.parent.is_dir():
        return
    leftovers = [p for p in target.parent.iterdir() if pattern.fullmatch(p.name) and not p.is_symlink() and p.is_dir()]
    for leftover in sorted(leftovers, key=lambda p: p.stat().st_mtime, reverse=True):  # the latest .old first
        try:
            fd = _lock(leftover)
        except OSError:
            continue  # a running export's
        try:
            if leftover.suffix == ".old" and not os.path.lexists(target):
                os.rename(leftover, target)
                continue
            if leftover.suffix == ".old":
                _move_others(leftover, target, own)
            shutil.rmtree(leftover, ignore_errors=True)
        finally:
            os.close(fd)


def _write_error(path: str | Path, err: OSError, existed: bool, kind: str) -> UserError:
    kept = f"the original {kind} is unchanged" if existed else "nothing was written there"
    return UserError(f"cannot write {path} ({err.strerror or err.__class__.__name__}); {kept}")


def _sync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _sync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable; file systems that cannot sync a folder are left as they are."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
