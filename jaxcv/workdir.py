"""A run's folder: one run at a time (a lock), checked writable, files replaced atomically."""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import socket
import tempfile
from typing import Any, Iterator

from jaxcv.errors import UserError, WorkdirLockedError

LOCK_NAME = '.lock'


@contextlib.contextmanager
def lock(workdir: str) -> Iterator[None]:
  """Holds an exclusive lock on <workdir>/.lock for the duration; a second holder gets one error.

  flock locks belong to the open file and die with the process, so the file a killed run leaves
  behind blocks nobody; its text (pid, host, start time) only names the current holder.
  """
  ensure_writable(workdir, 'workdir')
  path = os.path.join(workdir, LOCK_NAME)
  f = open(path, 'a+')  # pylint: disable=consider-using-with  (held until the context exits)
  try:
    try:
      fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
      f.seek(0)
      holder = f.read().strip() or 'another process'
      raise WorkdirLockedError(f'workdir {workdir} is in use by {holder}; wait for that run to '
                               'end or use another workdir') from None
    f.seek(0)
    f.truncate()
    started = datetime.datetime.now().astimezone().isoformat(timespec='seconds')
    f.write(f'pid {os.getpid()} on {socket.gethostname()}, started {started}\n')
    f.flush()
    yield
  finally:
    f.close()  # Releases the lock.


def ensure_writable(directory: str, what: str) -> None:
  """Creates `directory` if needed and proves a file can be written there, or one clear error.

  A real write, not os.access: permission bits say nothing for root, and a read-only or full
  filesystem only shows when writing.
  """
  try:
    os.makedirs(directory, exist_ok=True)
    with tempfile.TemporaryFile(dir=directory):
      pass
  except OSError as e:
    raise UserError(f'{what} {directory} is not writable ({type(e).__name__}: '
                    f'{e.strerror or e}); choose another place') from None


def read_json(path: str) -> Any:
  """The JSON in `path`, or None when it is missing or unreadable (a run's optional records)."""
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


def write_json(path: str, value: Any) -> None:
  """Writes JSON to `path` atomically: readers see the old file or the complete new one."""
  write_text(path, json.dumps(value, indent=2))


def write_text(path: str, text: str) -> None:
  """Writes `text` to a temporary file beside `path`, then renames it onto `path`."""
  fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path) or '.', prefix='.' + os.path.basename(path))
  try:
    with os.fdopen(fd, 'w') as f:
      f.write(text)
    share(tmp)
    os.replace(tmp, path)
  except BaseException:
    with contextlib.suppress(OSError):
      os.unlink(tmp)
    raise


def share(path: str) -> None:
  """Gives a file made by mkstemp (mode 0o600) the mode of an ordinary new file (0o666 less the
  umask, usually 0o644), so other users of a shared folder can read it."""
  mask = os.umask(0)
  os.umask(mask)
  os.chmod(path, 0o666 & ~mask)
