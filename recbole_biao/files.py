"""Where recbole-biao's files are, and how every file a run writes is written: under a temporary name, flushed
and renamed (an interrupted write never leaves half a file that a later run trusts). The floor of the package:
it imports nothing of it."""

import contextlib
import os
import socket
import tempfile
from typing import Iterator

__all__ = ["PROPERTIES_DIR", "atomic_path", "remove_orphans"]

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
# an installed wheel holds the properties files as package data (recbole_biao/properties); a checkout and an
# editable install read them from the top of the repository
PROPERTIES_DIR = os.path.join(_PACKAGE_DIR, "properties")
if not os.path.isdir(PROPERTIES_DIR):
    PROPERTIES_DIR = os.path.join(os.path.dirname(_PACKAGE_DIR), "properties")


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
    """Yield a temporary name next to ``path``; on success it is flushed to disk and renamed onto ``path``
    (atomic on POSIX), on failure removed, so that an interrupted write never leaves a partial file under the
    final name, nor (after a power cut) an empty one. Temporary files of killed writers on this host are
    removed by the next write of the same path."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    remove_orphans(folder, os.path.basename(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.{socket.gethostname()}-{os.getpid()}.",
                               suffix=".tmp", dir=folder)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # the permissions open() would give, not mkstemp's owner-only 0600
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, path)
        _fsync(folder)  # the rename itself
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def _fsync(path):
    with contextlib.suppress(OSError):  # (a file system without fsync on folders)
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def remove_orphans(folder: str, name: str = "") -> None:
    """Remove the temporary files that writers on this host left in ``folder`` when they were killed (their
    process no longer runs): of the file ``name``, or of every file; a live writer's are never touched."""
    owner = f".{socket.gethostname()}-"
    with contextlib.suppress(OSError):
        for entry in os.listdir(folder):
            if not (entry.startswith(f".{name}." if name else ".") and entry.endswith(".tmp") and owner in entry):
                continue
            pid = entry.rsplit(owner, 1)[1].split(".", 1)[0]
            if pid.isdigit() and not _running(int(pid)):
                with contextlib.suppress(OSError):
                    os.remove(os.path.join(folder, entry))


def _running(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True
