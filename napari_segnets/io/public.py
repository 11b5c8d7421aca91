"""The public EM datasets: local loaders and a hash-checked downloader (pooch).

Layouts, label values and hashes follow ``../shared/data/*/README.md``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np

from ..errors import InputError

DATA_ENV = "SEGNETS_DATA"
URL_ENV = "SEGNETS_DATA_URL"

DATASETS: dict[str, dict] = {
    "isbi2012": {
        "folder": "isbi2012_em_segmentation",
        "image": "train-volume.tif",
        "labels": "train-labels.tif",
        "shape": (30, 512, 512),
        "voxel_size": (50.0, 4.0, 4.0),
        "target": "membrane",
        "files": {
            "train-volume.tif": "c77d55909a8c75e7689e2249a10a486318e697c51b1417cfde8c15b49527464e",
            "train-labels.tif": "6af3617260e7f685eb2824dbd740a9aaddb35373ac179b8007406f926ccb266e",
            "test-volume.tif": "ec0c83ba66e697896887d998b280ee7c93f3280481643c2539469c58546ce825",
        },
    },
    "lucchi": {
        "folder": "epfl_lucchi_mitochondria",
        "image": "training_slices000-029.tif",
        "labels": "training_groundtruth_slices000-029.tif",
        "shape": (30, 768, 1024),
        "voxel_size": (5.0, 5.0, 5.0),
        "target": "mitochondrion",
        "files": {
            "training_slices000-029.tif": "23f8f0867e4cfb73ddd90fcfb30d9d664044daea475f00dd4934208409693ac0",
            "training_groundtruth_slices000-029.tif": "3af087c5cdd37e5d41934e0ef263146ae01dee1630049cbdda24a7eaa93b1e90",
        },
    },
    "drosophila": {
        "folder": "drosophila_vnc_sstem_gerhard2013",
        "image": "stack1_raw.tif",
        "labels": "stack1_mitochondria.tif",
        "shape": (20, 1024, 1024),
        "voxel_size": (50.0, 4.6, 4.6),  # sections are 45-50 nm thick
        "target": "mitochondrion",
        "files": {
            "stack1_raw.tif": "53828e96d6bcae3cfa570ae2a61105e9c1f3dfe2bc0cbe8630497ef11dff6b01",
            "stack1_labels.tif": "b47c2e2398e37fd22492945334295dd3ee5886aa2dbfed9ab8a534e8de51f6d9",
            "stack1_membranes.tif": "514c791ae7e00f1e59dc840510b30fc06e4d82cedcdd37315f9d0aeb732f2af0",
            "stack1_mitochondria.tif": "7704bd0b93d0d5d735fb43b2f336e79af3cd35445c5bbd3d73b09c0aed62a329",
            "stack1_synapses.tif": "6ac23a19eeb720b740c02ee98380c98b70b15e9886b386204331f316d3400802",
        },
    },
}


def registry() -> dict[str, str]:
    """The pooch registry: ``"<folder>/<file>" -> "sha256:<hash>"`` for every public file."""
    return {
        f"{d['folder']}/{f}": f"sha256:{h}"
        for d in DATASETS.values()
        for f, h in d["files"].items()
    }


def _spec(name: str) -> dict:
    if name not in DATASETS:
        raise InputError(f"Unknown dataset {name!r}; choose one of {', '.join(DATASETS)}.")
    return DATASETS[name]


def data_roots(root: str | os.PathLike | None = None) -> list[Path]:
    """Where the public data are looked for.

    ``root`` alone when given; otherwise $SEGNETS_DATA, ``../shared/data`` beside the repository,
    then the download cache that :func:`fetch_public` fills by default.
    """
    if root is not None:
        return [Path(root).expanduser()]
    roots = []
    if os.environ.get(DATA_ENV):
        roots.append(Path(os.environ[DATA_ENV]).expanduser())
    roots.append(beside_repo())
    roots.append(download_cache())
    return roots


def data_root(root: str | os.PathLike | None = None) -> Path | None:
    """The folder that holds the public datasets, or None when there is none.

    The first of :func:`data_roots` (``root``; else $SEGNETS_DATA, ``../shared/data`` beside the
    repository, the download cache) that contains at least one dataset folder. The one finder:
    the loaders, the sample data, the tests and the benchmarks all use it.
    """
    for r in data_roots(root):
        if any((r / d["folder"]).is_dir() for d in DATASETS.values()):
            return r
    return None


def download_cache() -> Path:
    """The per-user cache that :func:`fetch_public` fills when no destination is given."""
    import pooch

    return Path(pooch.os_cache("napari-segnets"))


def beside_repo() -> Path:
    """``../shared/data`` next to the repository checkout (the project's shared data layout)."""
    return Path(__file__).resolve().parents[2].parent / "shared" / "data"


def find_dataset(name: str, root: str | os.PathLike | None = None) -> Path:
    """The folder holding dataset ``name``; ``root`` may be the data root or the dataset folder itself."""
    spec = _spec(name)
    tried = []
    for r in data_roots(root):
        for folder in (r / spec["folder"], r):
            tried.append(str(folder))
            if (folder / spec["image"]).is_file():
                return folder
    raise InputError(
        f"The {name} dataset was not found (looked in {', '.join(dict.fromkeys(tried))}); put its folder "
        f"{spec['folder']}/ there, set ${DATA_ENV} to the folder that contains it, or download it with "
        f"napari_segnets.sample_data.fetch_public({name!r})."
    )


def load_public(name: str, root: str | os.PathLike | None = None):
    """Load a public EM dataset from a local copy.

    Parameters
    ----------
    name : {"isbi2012", "lucchi", "drosophila"}
    root : path-like, optional
        The data root (holding the dataset folders) or a dataset folder. Default: $SEGNETS_DATA,
        then ``../shared/data`` beside the repository.

    Returns
    -------
    image : numpy.ndarray
        uint8 ``(Z, Y, X)``.
    labels : numpy.ndarray or None
        uint8 0/1, 1 = membrane (ISBI 2012, whose file has 0 = membrane) or mitochondrion
        (Lucchi, drosophila).
    meta : dict
        ``name``, ``path``, ``labels_path``, ``voxel_size`` (nm, z-y-x), ``target``.
    """
    from . import read

    spec = _spec(name)
    folder = find_dataset(name, root)
    image, _ = read(folder / spec["image"], lazy=False)
    labels = None
    lpath = folder / spec["labels"]
    if lpath.is_file():
        raw, _ = read(lpath, lazy=False)
        # ISBI marks membranes with 0 (255 = cell interior); the others mark the target with 255.
        labels = (raw == 0) if name == "isbi2012" else (raw > 0)
        labels = labels.astype(np.uint8)
    meta = {
        "name": name,
        "path": str(folder / spec["image"]),
        "labels_path": str(lpath) if labels is not None else None,
        "voxel_size": spec["voxel_size"],
        "target": spec["target"],
    }
    return image, labels, meta


def _copy_local(url: str, output_file, pooch_obj=None) -> None:
    """A pooch downloader for ``file://`` URLs (mirrors on a shared disk, and tests)."""
    src = Path(unquote(urlparse(url).path))
    if not src.is_file():
        raise FileNotFoundError(f"{src} does not exist")
    if isinstance(output_file, (str, os.PathLike)):
        shutil.copyfile(src, output_file)
    else:
        with open(src, "rb") as fh:
            shutil.copyfileobj(fh, output_file)


def fetch_public(
    name: str,
    dest: str | os.PathLike | None = None,
    *,
    base_url: str | None = None,
    files: list[str] | None = None,
) -> Path:
    """Download dataset ``name`` into ``dest/<folder>/`` and check every file's sha256.

    Parameters
    ----------
    name : {"isbi2012", "lucchi", "drosophila"}
    dest : path-like, optional
        Data root to fill (default: $SEGNETS_DATA, else the user cache ``napari-segnets``).
    base_url : str, optional
        Mirror holding ``<folder>/<file>`` (``https://``, ``http://``, ``ftp://`` or ``file://``);
        default $SEGNETS_DATA_URL.
    files : list of str, optional
        A subset of the dataset's files.

    Returns
    -------
    Path
        The dataset folder, ready for :func:`load_public` (``root=`` its parent).

    Raises
    ------
    InputError
        No mirror configured, a file missing at the mirror, or a hash mismatch (the corrupt
        download is discarded).
    """
    import pooch

    spec = _spec(name)
    base_url = base_url or os.environ.get(URL_ENV)
    if not base_url:
        raise InputError(
            f"No download location for {name}: pass base_url= or set ${URL_ENV} to a mirror that holds "
            f"{spec['folder']}/<file> (the files' sha256 hashes are checked)."
        )
    if dest is None:
        dest = os.environ.get(DATA_ENV) or download_cache()
    wanted = files or list(spec["files"])
    unknown = sorted(set(wanted) - set(spec["files"]))
    if unknown:
        raise InputError(
            f"{name} has no file(s) {', '.join(unknown)}; its files are {', '.join(spec['files'])}."
        )
    store = pooch.create(path=Path(dest), base_url=base_url.rstrip("/") + "/", registry=registry())
    downloader = _copy_local if base_url.startswith("file:") else None
    for fname in wanted:
        key = f"{spec['folder']}/{fname}"
        try:
            store.fetch(key, downloader=downloader)
        except ValueError as exc:  # pooch: hash mismatch (the bad file is not kept)
            raise InputError(
                f"{fname} from {base_url} failed its sha256 check and was discarded ({exc})."
            ) from exc
        except Exception as exc:
            raise InputError(f"Could not download {key} from {base_url} ({exc}).") from exc
    return Path(dest) / spec["folder"]
