"""`kinesics install-ict SOURCE`: install ICT-FaceKit (MIT, USC ICT) as the one npz Kinesics loads.

SOURCE is ICT-FaceKit's downloaded zip, an unpacked copy of it (the repository or its FaceXModel folder), or a
URL of the zip (downloaded when there is a network). The OBJ files are packed, in the layout
`core.model_data.load_ict_npz` reads, into `cache_dir()/models/ict_facekit/ict_facekit.npz`, with the
license beside it. Expressions follow the order of `vertex_indices.json` (ICT-FaceKit's 53 ARKit-style
shapes); identities are the `identityNNN.obj` files in number order.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import numpy as np

from .errors import ModelFileError
from .model_data import ICT_NEUTRAL, load_ict_npz, read_obj
from .paths import atomic_write, cache_dir

GITHUB_ZIP = "https://github.com/ICT-VGL/ICT-FaceKit/archive/refs/heads/master.zip"
NPZ_NAME = "ict_facekit.npz"


def install_dir() -> Path:
    return cache_dir() / "models" / "ict_facekit"


def find_model_folder(root: Path) -> Path:
    """The folder under `root` holding ICT-FaceKit's neutral mesh (FaceXModel in the repository)."""
    if (root / ICT_NEUTRAL).is_file():
        return root
    found = sorted(root.rglob(ICT_NEUTRAL), key=lambda p: len(p.parts))
    if not found:
        raise ModelFileError(f"{root}: holds no ICT-FaceKit model ({ICT_NEUTRAL} is missing); download "
                             f"ICT-FaceKit from {GITHUB_ZIP} and pass the zip or its unpacked folder")
    return found[0].parent


def pack(folder: Path, out: Path) -> Path:
    """Write the ICT-FaceKit OBJ folder as one npz (neutral (V,3), polygons, expression and identity deltas,
    all f32 centimetres as in ICT-FaceKit); atomic."""
    neutral, polys = read_obj(folder / ICT_NEUTRAL)
    index_file = folder / "vertex_indices.json"
    order = json.loads(index_file.read_text()).get("expressions", []) if index_file.is_file() else []
    shapes = {p.stem: p for p in folder.glob("*.obj") if p.name != ICT_NEUTRAL}
    identities = sorted(n for n in shapes if n.startswith("identity") and n[8:].isdigit())
    expressions = [n for n in order if n in shapes] if order else sorted(set(shapes) - set(identities))
    if not expressions:
        raise ModelFileError(f"{folder}: holds no expression OBJ files beside {ICT_NEUTRAL}; is the download "
                             "complete?")

    def deltas(names: list[str]) -> np.ndarray:
        out = np.zeros((len(names),) + neutral.shape, np.float32)
        for i, name in enumerate(names):
            verts, _ = read_obj(shapes[name])
            if verts.shape != neutral.shape:
                raise ModelFileError(f"{shapes[name]}: has {len(verts)} vertices, {ICT_NEUTRAL} has {len(neutral)}; "
                                     "the download is damaged or mixes versions")
            out[i] = verts - neutral
        return out

    with atomic_write(out) as fh:
        np.savez_compressed(fh, neutral=neutral.astype(np.float32),
                            face_vertex_counts=np.array([len(p) for p in polys], np.int32),
                            face_vertex_indices=np.array([i for p in polys for i in p], np.int32),
                            expression_names=np.array(expressions), expressions=deltas(expressions),
                            identities=deltas(identities))
    return out


def _download(url: str, folder: Path) -> Path:
    target = folder / "ict_facekit.zip"
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(target, "wb") as fh:
            shutil.copyfileobj(response, fh)
    except (urllib.error.URLError, OSError) as err:
        raise ModelFileError(f"{url}: cannot be downloaded ({getattr(err, 'reason', err)}); download it in a "
                             "browser and run `kinesics install-ict` on the saved zip") from None
    return target


def install(source: str, destination: Path | None = None) -> Path:
    """Install ICT-FaceKit from a zip, a folder or a URL; returns the installed npz (checked by loading it)."""
    destination = destination or install_dir()
    with tempfile.TemporaryDirectory(prefix="kinesics-ict-") as scratch:
        scratch = Path(scratch)
        path = _download(source, scratch) if source.startswith(("http://", "https://")) else Path(source).expanduser()
        if path.is_dir():
            folder = find_model_folder(path)
        elif path.is_file():
            try:
                with zipfile.ZipFile(path) as archive:
                    # Only the model folder's OBJ, JSON and license files: the repository also holds code.
                    wanted = [m for m in archive.namelist()
                              if m.lower().endswith((".obj", ".json")) or Path(m).name.upper().startswith("LICENSE")]
                    archive.extractall(scratch / "unpacked", members=wanted)
            except zipfile.BadZipFile:
                raise ModelFileError(f"{path}: is not a zip file; pass ICT-FaceKit's zip or its unpacked folder") \
                    from None
            folder = find_model_folder(scratch / "unpacked")
        else:
            raise ModelFileError(f"{path}: no such file or folder")
        out = pack(folder, destination / NPZ_NAME)
        licenses = [p for p in (folder, *folder.parents) if (p / "LICENSE").is_file()][:1]
        if licenses:
            shutil.copyfile(licenses[0] / "LICENSE", destination / "LICENSE")
    load_ict_npz(out)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kinesics install-ict", description=__doc__.split("\n\n")[0])
    parser.add_argument("source", nargs="?", default=GITHUB_ZIP,
                        help="ICT-FaceKit's zip, its unpacked folder, or the zip's URL (default: download from GitHub)")
    parser.add_argument("--dest", type=Path, default=None, help=f"install folder (default: {install_dir()})")
    args = parser.parse_args(argv)
    try:
        out = install(args.source, args.dest)
    except ModelFileError as err:
        print(f"kinesics install-ict: {err}", file=sys.stderr)
        return 1
    print(f"ICT-FaceKit installed: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
