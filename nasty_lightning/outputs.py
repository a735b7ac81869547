"""Writing results so that a failure never leaves a broken or half-written file behind.

Outputs are checked before any work starts (``check_output``, ``check_output_dir``), so a mistyped
path fails at once rather than after tagging a treebank. Files are then written whole or not at all
(``write_atomic``) and an export folder is built beside its place and swapped in (``atomic_dir``):
a full disk or a kill leaves the previous file or folder as it was. Temporary files are created
with the usual permissions (``0666`` and ``0777`` less the umask), unlike ``mkstemp``'s ``0600``.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator
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
    """Refuse an output folder that cannot be written, or that holds files other than an earlier output
    (recognised by its ``marker`` file), which ``atomic_dir`` would replace."""
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
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """A temporary folder beside ``path`` to fill; on success it takes the place of ``path`` (an earlier
    folder there is removed), on failure it is removed and ``path`` stays as it was.

    Its files are given the usual permissions, whatever wrote them (``save_pretrained`` of transformers 5
    writes ``model.safetensors`` as ``0600``). The swap is two renames, so for an instant neither folder
    is at ``path``; no reader ever sees a folder with only some of the new files.
    """
    target = _target(path)
    existed = target.exists()
    token = secrets.token_hex(4)
    building = target.with_name(f".{target.name}.{token}.part")
    try:
        os.mkdir(building, 0o777)
    except OSError as err:
        raise _write_error(path, err, existed, "folder") from None
    file_mode = building.stat().st_mode & 0o666  # 0o666 less the umask, as mkdir applied it to 0o777
    try:
        yield building
        for file in building.rglob("*"):
            if file.is_file():
                file.chmod(file_mode)
                _sync_file(file)
        old = target.with_name(f".{target.name}.{token}.old")
        if existed:
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
    if existed:
        shutil.rmtree(old, ignore_errors=True)
    _sync_folder(target.parent)


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
