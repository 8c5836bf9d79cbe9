"""MNIST and Fashion-MNIST from the original IDX gzip files, md5-checked.

Files live in ``DATA_DIR/<dataset>/`` under their original names. ``DATA_DIR`` is the
``--data-dir`` flag, else the ``HVAE_DATA_DIR`` environment variable, else ``./data``. A missing
file is downloaded from the official mirror (override with ``HVAE_MNIST_MIRROR`` /
``HVAE_FASHION_MNIST_MIRROR``) into a temporary file, md5-checked and only then renamed into
place, so nothing half-written is ever left under its real name.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

from study.core.errors import DatasetError

FILES = {
    "mnist": {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    },
    "fashion_mnist": {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    },
}
MIRRORS = {
    "mnist": "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "fashion_mnist": "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
}
IDX_MAGIC = {1: 0x00000801, 3: 0x00000803}  # labels, images (unsigned byte data)


def data_dir(explicit: str | os.PathLike | None = None) -> Path:
    """The data directory: ``explicit``, else $HVAE_DATA_DIR, else ./data."""
    return Path(explicit or os.environ.get("HVAE_DATA_DIR") or "data")


def md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _mirror(dataset: str) -> str:
    env = f"HVAE_{dataset.upper()}_MIRROR"
    url = os.environ.get(env, MIRRORS[dataset])
    return url if url.endswith("/") else url + "/"


def download(dataset: str, name: str, target: Path, timeout: float = 30.0) -> None:
    """Fetch ``name`` from the mirror into ``target`` atomically, md5-checked."""
    url = _mirror(dataset) + name
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            while block := resp.read(1 << 20):
                out.write(block)
        if md5(Path(tmp)) != FILES[dataset][name]:
            raise DatasetError(f"{url}: downloaded file has the wrong md5; not saved")
        os.replace(tmp, target)
    except (urllib.error.URLError, OSError, TimeoutError) as err:
        raise DatasetError(
            f"{target}: missing, and the download from {url} failed ({err}); copy the original "
            f"file there or set --data-dir / HVAE_DATA_DIR to a folder that has it"
        ) from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def ensure_file(dataset: str, name: str, root: Path, allow_download: bool = True) -> Path:
    """The md5-checked path of one original file, downloading it if missing and allowed."""
    path = root / dataset / name
    if not path.exists():
        if not allow_download:
            raise DatasetError(
                f"{path}: file not found; copy the original {dataset} file there or point "
                "--data-dir / HVAE_DATA_DIR at a folder with mnist/ and fashion_mnist/"
            )
        download(dataset, name, path)
    actual = md5(path)
    if actual != FILES[dataset][name]:
        raise DatasetError(
            f"{path}: md5 {actual} does not match the original ({FILES[dataset][name]}); the file "
            "is corrupt or not the original: delete it to re-download, or replace it"
        )
    return path


def read_idx(path: Path) -> np.ndarray:
    """Decode one IDX gzip file of unsigned bytes into a uint8 array."""
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as err:
        raise DatasetError(f"{path}: not a readable gzip file ({err}); replace it") from None
    if len(raw) < 4:
        raise DatasetError(f"{path}: too short to be an IDX file; replace it")
    magic = struct.unpack(">I", raw[:4])[0]
    ndim = magic & 0xFF
    if IDX_MAGIC.get(ndim) != magic:
        raise DatasetError(f"{path}: bad IDX magic number 0x{magic:08x}; replace it")
    shape = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise DatasetError(f"{path}: IDX header says {shape} but holds {data.size} bytes; replace it")
    return data.reshape(shape)


def load_split(dataset: str, split: str, root: Path,
               allow_download: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Images ``[N, 784]`` float32 in [0, 1] and labels ``[N]`` int64 of ``split`` (train/test)."""
    if dataset not in FILES:
        raise DatasetError(f"unknown image dataset {dataset!r}; known: {sorted(FILES)}")
    prefix = {"train": "train", "test": "t10k"}[split]
    images = read_idx(ensure_file(dataset, f"{prefix}-images-idx3-ubyte.gz", root, allow_download))
    labels = read_idx(ensure_file(dataset, f"{prefix}-labels-idx1-ubyte.gz", root, allow_download))
    if len(images) != len(labels):
        raise DatasetError(f"{root / dataset}: {len(images)} {split} images but {len(labels)} labels")
    return images.reshape(len(images), -1).astype(np.float32) / 255.0, labels.astype(np.int64)
