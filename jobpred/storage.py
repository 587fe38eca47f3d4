"""Where a run's files live: a local directory, or a prefix in object storage (``s3://``, ``gs://``).

    loc = location("s3://bucket/runs/demo")   # a UPath (universal_pathlib over s3fs): the pathlib API
    loc = location("runs/demo")                # a pathlib.Path, made absolute
    (loc / "manifest.json").read_text()
    str(loc / "examples")                      # "s3://bucket/runs/demo/examples": what Ray Data and polars read

Small files (the manifest, JSON summaries, reports) go through the path object's own methods, which
universal_pathlib provides for both kinds. Tables go to polars, Ray Data and Ray Train as ``str(path)``: each
resolves ``s3://`` and ``gs://`` itself (polars with object_store, Ray with pyarrow's filesystems). All of
them take the endpoint and credentials the standard way (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, the
provider's default chain), so the same command works against AWS, GCS or an on-premises S3 server.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from upath import UPath

Location = Path | UPath  # a local UPath is a Path; in a bucket, an S3Path or GCSPath

_URI = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_FSSPEC_PACKAGE = {"s3": "s3fs", "gs": "gcsfs", "gcs": "gcsfs"}  # what universal_pathlib uses for each
OBJECT_STORES = tuple(_FSSPEC_PACKAGE)


def is_uri(path: str | os.PathLike) -> bool:
    """True for an object-storage location (``s3://``, ``gs://``) or a UPath of one."""
    if isinstance(path, UPath):
        return not isinstance(path, Path)  # a local UPath is a pathlib.Path too
    return bool(_URI.match(os.fspath(path)))


def location(path: str | os.PathLike) -> Location:
    """``path`` as a path object: a UPath for ``s3://``/``gs://``, else a local Path made absolute.

    Every local path that leaves the driver -- to Ray tasks and actors, Ray Train workers (which run in a
    directory of Ray's session), Serve replicas, vLLM engine processes -- must be absolute: a relative one
    would be read against *their* working directory. Entry points resolve once, here.
    """
    if isinstance(path, UPath) and not isinstance(path, Path):
        return path
    text = os.fspath(path)
    m = _URI.match(text)
    if m is None:
        return Path(os.path.abspath(os.path.expanduser(text)))
    scheme = m.group(1).lower()
    if scheme == "file":
        return Path(text[len("file://"):])
    if scheme not in OBJECT_STORES:
        raise ValueError(f"{text!r}: a run directory is a local path or an object-storage URI "
                         f"({', '.join(s + '://' for s in OBJECT_STORES)}), not {scheme}://")
    needs = _FSSPEC_PACKAGE[scheme]
    if importlib.util.find_spec(needs) is None:  # s3fs is a dependency; gcsfs is only for GCS users
        raise ValueError(f"{text!r}: {scheme}:// run directories need the {needs} package (pip install {needs})")
    # No listings cache: other processes write the same prefix (a job's workers, another node's ingress
    # polling for new adapters, a resumed job), and s3fs would otherwise keep answering a listing it made once.
    return UPath(text, use_listings_cache=False)


def check_reachable(path: str | os.PathLike) -> None:
    """Fail at once, naming the bucket, when an object-storage location's bucket is missing or cannot be
    reached; a local path passes. Entry points call it before any stage starts: otherwise the first write,
    deep inside Ray Data or s3fs, fails with a traceback that does not say which bucket or why."""
    if not is_uri(path):
        return
    loc = location(path)
    bucket = loc.path.split("/", 1)[0]
    try:
        found = loc.fs.exists(bucket)
    except Exception as err:  # refused connection, bad credentials, wrong endpoint: all say it here
        raise ValueError(f"{path}: cannot reach the bucket {bucket!r} ({type(err).__name__}: {err}); check "
                         f"AWS_ENDPOINT_URL and the credentials") from err
    if not found:
        raise ValueError(f"{path}: the bucket {bucket!r} does not exist (or these credentials cannot see it); "
                         f"create it first")


def remove_tree(loc: Location) -> None:
    """Delete a directory (or a prefix of objects) if it exists; a missing one is not an error."""
    if isinstance(loc, Path):
        shutil.rmtree(loc, ignore_errors=True)
    elif loc.fs.exists(loc.path):
        loc.fs.rm(loc.path, recursive=True)


def make_dir(loc: Location) -> None:
    """Create a directory that then exists even while empty (an object store has no directories: a
    zero-byte ``.keep`` object stands for it; readers skip dot-files)."""
    if isinstance(loc, Path):
        loc.mkdir(parents=True, exist_ok=True)
    elif not loc.exists():
        (loc / ".keep").write_bytes(b"")


def write_text_atomic(loc: Location, text: str) -> None:
    """Write a small file so a reader sees the old content or the new, never half of it.

    Locally: a temporary file renamed over the old one. In object storage a PUT already replaces the whole
    object at once, so it is written directly.
    """
    if isinstance(loc, Path):
        loc.parent.mkdir(parents=True, exist_ok=True)
        tmp = loc.with_name(loc.name + ".tmp")
        tmp.write_text(text)
        tmp.replace(loc)
    else:
        loc.write_text(text)


def write_parquet_atomic(table: pa.Table, loc: Location) -> None:
    """Write one Parquet file that a reader sees whole or not at all (as :func:`write_text_atomic`)."""
    if isinstance(loc, Path):
        loc.parent.mkdir(parents=True, exist_ok=True)
        tmp = loc.with_name(f".{loc.name}.tmp")
        pq.write_table(table, tmp)
        tmp.replace(loc)
    else:
        pq.write_table(table, str(loc))


def cache_dir() -> Path:
    """Root of jobpred's node-local cache (models, copies of bucket objects); ``$JOBPRED_CACHE`` moves it."""
    return Path(os.environ.get("JOBPRED_CACHE", Path.home() / ".cache" / "jobpred"))


def local_copy(loc: Location) -> Path:
    """A directory on this node's disk with the files of ``loc``: ``loc`` itself when it is local.

    torch, peft and vLLM load adapters and models only from disk, and on a cluster the process that loads
    one may run on any node, so each calls this where it runs. A bucket prefix is downloaded once per
    content: the copy is named by the objects' ETags, so a retrained adapter at the same URI is fetched anew.
    """
    if isinstance(loc, Path):
        return loc
    listing = sorted((info["name"], str(info.get("ETag") or info.get("etag") or info.get("size")))
                     for info in loc.fs.find(loc.path, detail=True).values())
    if not listing:
        raise FileNotFoundError(f"{loc}: no objects under this prefix")
    key = hashlib.sha256(json.dumps([str(loc), listing]).encode()).hexdigest()[:16]
    dest = cache_dir() / "objects" / f"{loc.name}-{key}"
    if not (dest / ".complete").exists():
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        for name, _ in listing:
            target = tmp / name[len(loc.path.rstrip("/")) + 1:]
            target.parent.mkdir(parents=True, exist_ok=True)
            loc.fs.get_file(name, str(target))
        (tmp / ".complete").write_text("")
        try:
            tmp.rename(dest)
        except OSError:  # another process on this node finished the same copy first
            shutil.rmtree(tmp, ignore_errors=True)
    return dest


def scratch_dir(loc: Location) -> Path:
    """Where a process writes files it appends to while it runs (logs) for ``loc``: ``loc`` itself when local;
    for a bucket, which cannot append, a node-local directory (what matters is published when done)."""
    if isinstance(loc, Path):
        return loc
    return cache_dir() / "scratch" / hashlib.sha256(str(loc).encode()).hexdigest()[:16]


def publish_files(files: dict[str, Path], dest: Location) -> None:
    """Make ``dest`` hold exactly ``files`` (name -> local file), replacing what was there.

    Locally the directory is swapped in whole (a reader never sees a half-written adapter); in a bucket the
    old objects are removed and the new uploaded, and the caller writes its "done" marker after this.
    """
    if isinstance(dest, Path):
        tmp = dest.with_name(dest.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for name, src in files.items():
            shutil.copy2(src, tmp / name)
        shutil.rmtree(dest, ignore_errors=True)
        tmp.rename(dest)
        return
    remove_tree(dest)
    for name, src in files.items():
        dest.fs.put_file(str(src), f"{dest.path}/{name}")


def save_figure(fig, loc: Location, dpi: int = 110) -> None:
    """A matplotlib figure as a PNG at ``loc`` (matplotlib writes to a local path or to an open file)."""
    if isinstance(loc, Path):
        fig.savefig(loc, dpi=dpi)
    else:
        with loc.open("wb") as f:
            fig.savefig(f, dpi=dpi, format="png")
