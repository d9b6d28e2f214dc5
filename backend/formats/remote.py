"""Record sets and label maps behind a URL (`gs://`, `s3://`, `hdfs://`, ...), read through
TensorFlow's `tf.io.gfile`, the same file systems the TF OD API's input readers use.

Only paths with a scheme import TensorFlow (a few seconds, once); local files never do. Which
schemes work is up to the installed TensorFlow: `gs://` is built in, `s3://` and `hdfs://` need
`tensorflow-io`; an unknown one gets a message naming it. Credentials come from the
environment as for TensorFlow itself (e.g. `GOOGLE_APPLICATION_CREDENTIALS`).
"""
from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace
from typing import BinaryIO

from backend.errors import NotFound

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def is_url(path: str | Path) -> bool:
    return isinstance(path, RemoteFile) or bool(_URL.match(str(path)))


def as_path(path: str | Path) -> Path | RemoteFile:
    """`path` as a `Path`, or as a `RemoteFile` when it is a URL (which `Path` would mangle)."""
    return RemoteFile(path) if is_url(path) else Path(path)


def _gfile():
    import tensorflow as tf
    return tf


def _call(function, path: str, *args):
    """`function(path, *args)` with TensorFlow's errors for an unavailable scheme or a missing
    file turned into messages that name the URL."""
    tf = _gfile()
    try:
        return function(path, *args)
    except tf.errors.UnimplementedError:
        scheme = path.split("://", 1)[0]
        raise NotFound(f"{path}: this TensorFlow cannot read {scheme}:// paths "
                       "(gs:// is built in; s3:// and hdfs:// need the tensorflow-io package)") from None
    except tf.errors.NotFoundError:
        raise NotFound(f"no such file: {path}") from None
    except tf.errors.OpError as exc:
        raise NotFound(f"cannot read {path}: {exc.message}") from None


class RemoteFile(str):
    """A URL with the few `Path` methods the readers use (`name`, `parent`, `/`, `is_file`,
    `is_dir`, `stat`, `read_text`) and `open_binary`."""

    @property
    def name(self) -> str:
        return self.rstrip("/").rsplit("/", 1)[-1]

    @property
    def parent(self) -> RemoteFile:
        head = self.rstrip("/").rsplit("/", 1)[0]
        return RemoteFile(head if "://" in head and not head.endswith(":/") else self)

    def __truediv__(self, name: str) -> RemoteFile:
        return RemoteFile(self.rstrip("/") + "/" + name)

    def is_dir(self) -> bool:
        return bool(_call(_gfile().io.gfile.isdir, str(self)))

    def exists(self) -> bool:
        return bool(_call(_gfile().io.gfile.exists, str(self)))

    def is_file(self) -> bool:
        return self.exists() and not self.is_dir()

    def stat(self) -> SimpleNamespace:
        found = _call(_gfile().io.gfile.stat, str(self))
        return SimpleNamespace(st_size=int(found.length), st_mtime_ns=int(found.mtime_nsec))

    def read_text(self, encoding: str = "utf-8") -> str:
        return self.open_binary().read().decode(encoding)

    def open_binary(self) -> BinaryIO:
        """A binary file object (`read`, `seek`, `tell`, `close`, context manager)."""
        return _call(_gfile().io.gfile.GFile, str(self), "rb")


def glob(pattern: str) -> list[RemoteFile]:
    return sorted(RemoteFile(p) for p in _call(_gfile().io.gfile.glob, pattern))


def listdir(folder: RemoteFile) -> list[RemoteFile]:
    return sorted(folder / name.rstrip("/") for name in _call(_gfile().io.gfile.listdir, str(folder)))
