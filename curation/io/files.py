"""Reading bytes from local paths or any filesystem pyarrow knows (s3://, hdfs://, gs://)."""

from __future__ import annotations

from functools import lru_cache

import pyarrow.fs as pafs


class TooLarge(OSError):
    pass


@lru_cache(maxsize=32)
def _fs_for(prefix: str):
    fs, _ = pafs.FileSystem.from_uri(prefix)
    return fs


def filesystem(path: str) -> tuple[pafs.FileSystem, str]:
    """The filesystem holding `path` and the path inside it."""
    if "://" in path and not path.startswith("file://"):
        scheme, rest = path.split("://", 1)
        bucket = rest.split("/", 1)[0]
        return _fs_for(f"{scheme}://{bucket}"), rest
    return pafs.LocalFileSystem(), path.removeprefix("file://")


def read_bytes(path: str, max_bytes: int | None = None) -> bytes:
    fs, p = filesystem(path)
    if max_bytes is not None:
        size = fs.get_file_info(p).size
        if size is not None and size > max_bytes:
            raise TooLarge(f"file is {size} bytes, above the limit of {max_bytes} (ingest.max_bytes)")
    with fs.open_input_stream(p) as f:
        return f.read()


def list_files(root: str) -> list[tuple[str, int]]:
    """Every file under `root`, recursively, as (path, size), sorted; hidden names included."""
    fs, p = filesystem(root)
    infos = fs.get_file_info(pafs.FileSelector(p, recursive=True))
    prefix = root[: len(root) - len(p)] if root.endswith(p) else ""
    return sorted((prefix + i.path, i.size) for i in infos if i.type == pafs.FileType.File)


def exists(path: str) -> pafs.FileType:
    fs, p = filesystem(path)
    return fs.get_file_info(p).type
