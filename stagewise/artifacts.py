"""Cached artifacts: one cache key, one atomic write, safe file formats only.

Everything the package caches or records (trained runs, sampler results, notebook stamps, metrics.json, run.json)
goes through this module, which sits below the science and the pipeline and imports nothing from stagewise.

* :func:`cache_key` hashes what a result depends on: its parameters (JSON data), the data it was computed from
  (tensors, arrays, bytes, text, files, folders: :func:`data_digest`) and the package's source code
  (:func:`source_hash`: every ``.py`` file of stagewise, read once per process). Changing any module of the package
  therefore invalidates every cached result made with the old code.
* Writes are atomic: a temporary file in the target's folder, flushed and fsynced, then ``os.replace``; a folder is
  built under a temporary name and renamed when complete (:func:`atomic_dir`). A reader sees the old artifact, the
  new one or none, never a partial one. Files are made mode 0644 and folders 0755 whatever the umask, so results
  are readable like the figures next to them.
* Formats are safe to load: JSON, ``.npz`` (read with ``allow_pickle=False``), safetensors and ``save_pretrained``
  folders. Nothing is ever unpickled; a cache file in another format is simply a miss.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "cache_dir",
    "FILE_MODE",
    "FOLDER_MODE",
    "KEY_LENGTH",
    "PACKAGE_DIR",
    "atomic_dir",
    "cache_key",
    "data_digest",
    "load_npz",
    "load_safetensors",
    "load_study",
    "read_json",
    "source_files",
    "source_hash",
    "to_json",
    "tree_digest",
    "write_bytes",
    "write_json",
    "write_npz",
    "write_safetensors",
]

#: The stagewise package, whose ``.py`` files :func:`source_hash` reads by default.
PACKAGE_DIR = Path(__file__).resolve().parent
FILE_MODE, FOLDER_MODE = 0o644, 0o755
#: Hex characters of a cache key: 64 bits, so a collision among a million cached results has odds ~3e-8.
KEY_LENGTH = 16


# ------------------------------------------------------------------------------------------------------ hashing


def to_json(value: Any) -> Any:
    """``value`` as plain JSON data: numpy / torch scalars become numbers, arrays and tensors nested lists.

    Mappings keep their keys (as strings), tuples and sets become lists (sets sorted), paths strings.
    Non-finite floats stay NaN / Infinity (Python's json reads them back). Anything else raises TypeError.
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, Mapping):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, (set, frozenset)):
        return sorted((to_json(v) for v in value), key=repr)
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    # torch tensors and numpy arrays / scalars, recognised without importing either library
    if hasattr(value, "detach") and hasattr(value, "cpu"):
        value = value.detach().cpu().numpy()
    if hasattr(value, "tolist") and hasattr(value, "dtype"):
        return to_json(value.tolist())
    if hasattr(value, "item"):
        return to_json(value.item())
    raise TypeError(f"cannot write {type(value).__name__} as JSON: convert it to numbers, strings, lists or "
                    "dicts first")


def _canonical(value: Any) -> bytes:
    return json.dumps(to_json(value), sort_keys=True, separators=(",", ":"), allow_nan=True).encode()


def _frame(digest, tag: str, payload: bytes) -> None:
    # tag and length first, so that no two different sequences of items hash the same bytes
    digest.update(f"{tag}:{len(payload)}:".encode())
    digest.update(payload)


def _tensor_bytes(value) -> tuple[str, tuple[int, ...], bytes]:
    import torch  # a tensor was passed, so torch is imported already

    tensor = value.detach().cpu().contiguous()
    raw = tensor.reshape(-1).view(torch.uint8) if tensor.numel() else tensor.new_empty(0, dtype=torch.uint8)
    return str(tensor.dtype), tuple(tensor.shape), raw.numpy().tobytes()


def tree_digest(root: str | os.PathLike, files: Iterable[str | os.PathLike] | None = None) -> str:
    """sha256 (hex) over the path relative to ``root`` and the bytes of each file (default: every file below)."""
    root = Path(root)
    chosen = sorted(Path(f) for f in files) if files is not None else sorted(p for p in root.rglob("*") if p.is_file())
    digest = hashlib.sha256()
    for file in chosen:
        _frame(digest, "name", file.relative_to(root).as_posix().encode())
        _frame(digest, "bytes", file.read_bytes())
    return digest.hexdigest()


def data_digest(*items: Any) -> str:
    """sha256 (hex) of the data a result was computed from, in order.

    Accepted items: torch tensors and numpy arrays (dtype, shape and bytes: int32 and int64 ids differ), bytes,
    str (text), paths (a file's bytes, or a folder as :func:`tree_digest`) and None.
    """
    digest = hashlib.sha256()
    for k, item in enumerate(items):
        if item is None:
            _frame(digest, "none", b"")
        elif isinstance(item, (bytes, bytearray, memoryview)):
            _frame(digest, "bytes", bytes(item))
        elif isinstance(item, str):
            _frame(digest, "text", item.encode())
        elif isinstance(item, os.PathLike):
            path = Path(item)
            if path.is_dir():
                _frame(digest, "folder", tree_digest(path).encode())
            elif path.is_file():
                _frame(digest, "file", path.read_bytes())
            else:
                raise FileNotFoundError(f"data item {k}: {path} is neither a file nor a folder")
        elif hasattr(item, "detach") and hasattr(item, "cpu"):
            dtype, shape, raw = _tensor_bytes(item)
            _frame(digest, f"tensor {dtype} {shape}", raw)
        elif hasattr(item, "dtype") and hasattr(item, "shape") and hasattr(item, "tobytes"):
            import numpy as np

            array = np.ascontiguousarray(item)
            if array.dtype.hasobject:
                raise TypeError(f"data item {k}: an array of Python objects cannot be hashed by value")
            _frame(digest, f"array {array.dtype.str} {array.shape}", array.tobytes())
        else:
            raise TypeError(f"data item {k}: {type(item).__name__} (accepted: a torch tensor, numpy array, bytes, "
                            "str, path or None)")
    return digest.hexdigest()


def source_files(root: str | os.PathLike | None = None) -> list[Path]:
    """The ``.py`` files below ``root`` (default: the stagewise package), sorted."""
    root = Path(root) if root is not None else PACKAGE_DIR
    return sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)


@functools.lru_cache(maxsize=None)
def _source_hash(root: Path) -> str:
    return tree_digest(root, source_files(root))


def source_hash(root: str | os.PathLike | None = None) -> str:
    """sha256 (hex) of the source of every module below ``root`` (default: the stagewise package).

    Read once per process and folder (``source_hash.cache_clear()`` forgets it): the code that produced a
    result is the code this process imported.
    """
    return _source_hash(Path(root if root is not None else PACKAGE_DIR).resolve())


source_hash.cache_clear = _source_hash.cache_clear


def cache_key(parameters: Any, *data: Any, code: str | None = None) -> str:
    """Key of a cached result (:data:`KEY_LENGTH` hex characters).

    parameters: JSON data (see :func:`to_json`) of every setting the result depends on; dict order is ignored.
    data:       what it was computed from, as accepted by :func:`data_digest`.
    code:       a hash of the code that computed it; default :func:`source_hash` of the stagewise package.
    """
    digest = hashlib.sha256()
    _frame(digest, "parameters", _canonical(parameters))
    _frame(digest, "data", data_digest(*data).encode())
    _frame(digest, "code", (source_hash() if code is None else code).encode())
    return digest.hexdigest()[:KEY_LENGTH]


# -------------------------------------------------------------------------------------------------- writing


def _fsync_folder(folder: Path) -> None:
    # makes the rename itself durable; not every file system lets a folder be opened (best effort)
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_bytes(data: bytes, path: str | os.PathLike) -> Path:
    """Write ``data`` to ``path`` atomically (temporary file, fsync, ``os.replace``), mode 0644. Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
            os.fchmod(f.fileno(), FILE_MODE)  # mkstemp makes 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)
    return path


def write_json(data: Any, path: str | os.PathLike) -> Path:
    """Write ``data`` (converted by :func:`to_json`) as indented JSON to ``path``, atomically, mode 0644."""
    text = json.dumps(to_json(data), indent=2, allow_nan=True) + "\n"
    return write_bytes(text.encode("utf-8"), path)


def read_json(path: str | os.PathLike, default: Any = None) -> Any:
    """The JSON data at ``path``; ``default`` when the file is missing or not valid JSON (a cache miss)."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return default


def _set_modes(folder: Path) -> None:
    os.chmod(folder, FOLDER_MODE)  # mkdtemp makes 0700
    for parent, folders, files in os.walk(folder):
        for name in folders:
            os.chmod(os.path.join(parent, name), FOLDER_MODE)
        for name in files:
            file = os.path.join(parent, name)
            os.chmod(file, FILE_MODE)
            with open(file, "rb") as f:  # the contents reach the disk before the rename publishes them
                os.fsync(f.fileno())


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Build the folder ``path`` atomically: yields an empty temporary folder next to it, to fill.

    On a normal exit its modes are set (folders 0755, files 0644), its files fsynced and it is renamed to ``path``;
    if another process created ``path`` meanwhile, theirs is kept and ours removed. On an exception (Ctrl-C
    included) the temporary folder is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield work
        _set_modes(work)
        try:
            os.rename(work, path)
        except OSError:
            if not path.is_dir():
                raise
            shutil.rmtree(work, ignore_errors=True)  # someone else finished the same artifact first
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    _fsync_folder(path.parent)


def write_npz(path: str | os.PathLike, **arrays: Any) -> Path:
    """Write numpy arrays (or tensors) to an uncompressed ``.npz`` at ``path``, atomically. Object arrays refused."""
    import io

    import numpy as np

    converted = {}
    for name, value in arrays.items():
        if hasattr(value, "detach"):
            value = value.detach().cpu().numpy()
        converted[name] = np.asarray(value)
        if converted[name].dtype.hasobject:
            raise TypeError(f"{name}: an array of Python objects cannot be stored without pickling")
    buffer = io.BytesIO()
    np.savez(buffer, **converted)
    return write_bytes(buffer.getvalue(), path)


def load_npz(path: str | os.PathLike) -> dict[str, Any]:
    """The arrays of the ``.npz`` at ``path`` (``allow_pickle=False``: an object array raises, never unpickles)."""
    import numpy as np

    with np.load(path, allow_pickle=False) as saved:
        return {name: saved[name] for name in saved.files}


def write_safetensors(path: str | os.PathLike, tensors: Mapping[str, Any],
                      metadata: Mapping[str, str] | None = None) -> Path:
    """Write torch tensors to a safetensors file at ``path``, atomically (tensors copied: shared storage is fine)."""
    from safetensors.torch import save

    data = {name: t.detach().cpu().contiguous().clone() for name, t in tensors.items()}
    return write_bytes(save(data, metadata=dict(metadata) if metadata else None), path)


def load_safetensors(path: str | os.PathLike) -> dict[str, Any]:
    """The tensors of the safetensors file at ``path`` (CPU). Raises OSError if absent, ValueError if corrupt."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not Path(path).is_file():
        raise FileNotFoundError(f"no safetensors file at {path}")
    try:
        return load_file(str(path))
    except SafetensorError as error:
        raise ValueError(f"{path} is not a readable safetensors file: {error}") from None


#: The repository holding this package, when it runs from a source checkout.
REPO = Path(__file__).resolve().parents[1]


def cache_dir(*parts: str) -> Path:
    """The project's one cache folder: ``$STAGEWISE_CACHE/<parts>``, by default ``<repository>/.cache/<parts>``.

    Notebooks execute in their own output folder, so a relative ``STAGEWISE_CACHE`` is read relative to the
    repository, not to the working directory. Outside a source checkout the default is ``~/.cache/stagewise``.
    """
    root = os.environ.get("STAGEWISE_CACHE")
    in_checkout = (REPO / "pyproject.toml").is_file()
    if root:
        base = Path(root) if Path(root).is_absolute() or not in_checkout else REPO / root
    else:
        base = REPO / ".cache" if in_checkout else Path.home() / ".cache" / "stagewise"
    return base.joinpath(*parts)


# ------------------------------------------------------------------------------------------------------ studies

#: The tidy results of a study and its record, in its folder (stagewise.pipeline.studies writes them).
STUDY_FILES = ("results.csv", "study.json")


def load_study(name: str, profile: str | None = None, *, root: str | os.PathLike = REPO):
    """The results of study ``name`` of ``notebooks/studies.yaml``: (a pandas DataFrame with one row per run, its
    study.json record: command, commit, machine, dates, grid, seeds).

    During a book build, the build's own studies folder (``$STAGEWISE_STUDIES``) is read first. Otherwise an
    in-book study is read from ``build/<profile>/studies/NAME`` (``profile``: by default the study's own) and any
    other from the committed ``studies/NAME``, both under the repository ``root``. A study without results
    raises :class:`FileNotFoundError` naming the command that makes them.
    """
    import pandas as pd
    import yaml

    root = Path(root)
    building = os.environ.get("STAGEWISE_STUDIES")
    folder = Path(building) / name if building else None
    if folder is None or not all((folder / f).is_file() for f in STUDY_FILES):
        declared = root / "notebooks" / "studies.yaml"
        studies = (yaml.safe_load(declared.read_text(encoding="utf-8")) if declared.is_file() else None) or {}
        if name not in studies:
            raise KeyError(f"no study {name!r} in {declared} (studies: {', '.join(studies) or 'none'})")
        own = studies[name].get("profile", "full")
        profile = profile or own
        folder = root / "build" / profile / "studies" / name if studies[name].get("in_book") else root / "studies" / name
        if not all((folder / f).is_file() for f in STUDY_FILES):
            flags = (f" PROFILE={profile}", f" --profile {profile}") if profile != own else ("", "")
            raise FileNotFoundError(f"study {name!r} has no results in {folder}/: run `make study NAME={name}"
                                    f"{flags[0]}` (python -m stagewise study {name}{flags[1]})")
    results, record = (folder / f for f in STUDY_FILES)
    return pd.read_csv(results), json.loads(record.read_text())
