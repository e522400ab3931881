"""Head-model files read into plain numpy arrays (no torch, no bpy).

Every supported head is a linear blendshape model skinned by a small joint tree, the FLAME layout:
vertices = LBS(template + shapedirs @ shape + exprdirs @ expression + posedirs @ pose_feature).
The Blender add-on reads these arrays to build a rig; `core.head_model` wraps them in torch.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import ModelFileError
from .safe_pickle import load_pickle

FLAME_JOINTS = ("global", "neck", "jaw", "left_eye", "right_eye")


@dataclass
class HeadModelData:
    """A parametric head in numpy. V vertices, F triangles, S shape, E expression, P pose-corrective, J joints.

    template (V,3) metres; faces (F,3); shapedirs (V,3,S); exprdirs (V,3,E); posedirs (V,3,P) with
    P = 9*(J-1) (FLAME's pose feature: rotation matrices minus identity of every joint but the root);
    j_regressor (J,V); weights (V,J); parents (J,) with -1 for the root.
    """

    kind: str
    template: np.ndarray
    faces: np.ndarray
    shapedirs: np.ndarray
    exprdirs: np.ndarray
    posedirs: np.ndarray
    j_regressor: np.ndarray
    weights: np.ndarray
    parents: np.ndarray
    joint_names: tuple[str, ...]
    expression_names: tuple[str, ...] = ()
    regions: dict[str, np.ndarray] = field(default_factory=dict)
    source: str = ""
    content_hash: str = ""

    @property
    def n_vertices(self) -> int:
        return len(self.template)

    @property
    def n_shape(self) -> int:
        return self.shapedirs.shape[2]

    @property
    def n_expression(self) -> int:
        return self.exprdirs.shape[2]

    @property
    def expressions_are_weights(self) -> bool:
        """Named expression columns are blendshapes (ICT-FaceKit, a FLAME-format file converted from a blendshape
        rig), whose weights live in [0, 1]: a negative smile is no expression. FLAME's own columns are unnamed PCA
        components, signed; the built-in rig's are a PCA of the clip's motion."""
        return bool(self.expression_names) and self.kind in ("flame", "ict")

    @property
    def parameter_names(self) -> tuple[str, ...]:
        """The capture parameters this model actually uses."""
        names = ["shape", "expression", "global_pose", "translation"]
        if "neck" in self.joint_names:
            names.append("neck_pose")
        if "jaw" in self.joint_names:
            names.append("jaw_pose")
        if "left_eye" in self.joint_names:
            names.append("eye_pose")
        return tuple(names)

    def truncated(self, n_shape: int | None = None, n_expression: int | None = None) -> "HeadModelData":
        """The same model keeping only the first `n_shape` shape and `n_expression` expression components."""
        s = self.n_shape if n_shape is None else min(n_shape, self.n_shape)
        e = self.n_expression if n_expression is None else min(n_expression, self.n_expression)
        names = self.expression_names[:e] if self.expression_names else ()
        return HeadModelData(self.kind, self.template, self.faces, self.shapedirs[:, :, :s], self.exprdirs[:, :, :e],
                             self.posedirs, self.j_regressor, self.weights, self.parents, self.joint_names, names,
                             self.regions, self.source, self.content_hash)


def _hash_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()[:16]


def _require(data: dict, keys: tuple[str, ...], source: str) -> None:
    missing = [k for k in keys if k not in data]
    if missing:
        raise ModelFileError(f"{source}: not a FLAME model file, it lacks {', '.join(missing)}. "
                             "Use FLAME's generic_model.pkl / flame2023.pkl or an ICT-FaceKit folder.")


def load_flame(path: str | os.PathLike) -> HeadModelData:
    """Read a FLAME `generic_model.pkl`-style file (FLAME 2020, 2023, 2023 Open) without chumpy."""
    path = Path(path)
    source = str(path)
    raw = path.read_bytes()
    data = load_pickle(raw, source)
    _require(data, ("v_template", "f", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table"), source)
    template = np.asarray(data["v_template"], np.float64)
    dirs = np.asarray(data["shapedirs"], np.float64)
    if dirs.ndim != 3 or dirs.shape[:2] != template.shape:
        raise ModelFileError(f"{source}: shapedirs has shape {dirs.shape}, expected ({len(template)}, 3, N)")
    # FLAME files hold 300 shape then 100 expression columns; smaller files split the same way.
    n_shape = 300 if dirs.shape[2] > 300 else dirs.shape[2]
    parents = np.asarray(data["kintree_table"], np.int64)[0].copy()
    parents[0] = -1
    n_joints = len(parents)
    names = FLAME_JOINTS if n_joints == 5 else tuple(f"joint_{i}" for i in range(n_joints))
    expression_names = tuple(str(n) for n in data.get("expression_names", ()))
    return HeadModelData(
        kind="flame",
        template=template,
        faces=np.asarray(data["f"], np.int64),
        shapedirs=dirs[:, :, :n_shape],
        exprdirs=dirs[:, :, n_shape:],
        posedirs=np.asarray(data["posedirs"], np.float64),
        j_regressor=np.asarray(data["J_regressor"], np.float64),
        weights=np.asarray(data["weights"], np.float64),
        parents=parents,
        joint_names=names,
        expression_names=expression_names,
        regions=_flame_regions(np.asarray(data["weights"], np.float64), names),
        source=source,
        content_hash=hashlib.sha256(raw).hexdigest()[:16],
    )


def _flame_regions(weights: np.ndarray, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Eyeballs are the vertices skinned wholly to an eye joint; FLAME files name no other region."""
    regions = {}
    for side in ("left_eye", "right_eye"):
        if side in names:
            regions[f"{side}ball"] = np.flatnonzero(weights[:, names.index(side)] > 0.99)
    if "left_eyeball" in regions:
        regions["eyeballs"] = np.concatenate([regions.pop("left_eyeball"), regions.pop("right_eyeball")])
    return regions


# ICT-FaceKit vertex ranges (documented in its README): face, head and neck, mouth socket, eye sockets,
# gums and tongue, teeth, eyeballs, eye helpers and lashes.
_ICT_RANGES = {"face": (0, 9409), "head_and_neck": (9409, 11248), "mouth_socket": (11248, 13294),
               "eye_sockets": (13294, 14062), "gums_and_tongue": (14062, 17039), "teeth": (17039, 21451),
               "eyeballs": (21451, 24591), "eye_helpers": (24591, 26719)}
_ICT_IDENTITY = re.compile(r"^identity\d+$")
ICT_NEUTRAL = "generic_neutral_mesh.obj"


def read_obj(path: Path) -> tuple[np.ndarray, list[list[int]]]:
    """Vertices (V,3) and polygons (0-based vertex indices) of a Wavefront OBJ."""
    verts, polys = [], []
    with open(path, "r", errors="replace") as fh:
        for line in fh:
            if line.startswith("v "):
                verts.append(line.split()[1:4])
            elif line.startswith("f "):
                polys.append([int(tok.split("/")[0]) - 1 for tok in line.split()[1:]])
    if not verts:
        raise ModelFileError(f"{path}: holds no vertices; is it an OBJ file?")
    return np.asarray(verts, np.float64), polys


def _triangulate(polys: list[list[int]]) -> np.ndarray:
    return np.asarray([[p[0], p[i], p[i + 1]] for p in polys for i in range(1, len(p) - 1)], np.int64)


def _rigid_ict(kind: str, neutral_cm: np.ndarray, faces: np.ndarray, identities_cm: np.ndarray,
               expressions_cm: np.ndarray, names: tuple[str, ...], source: str, content_hash: str) -> HeadModelData:
    """ICT-FaceKit as a one-joint model: shape and expression are blendshapes, head pose is rigid."""
    cm = 0.01
    template = neutral_cm * cm
    n = len(template)
    regions = {k: np.arange(a, min(b, n)) for k, (a, b) in _ICT_RANGES.items() if a < n}
    regions["mouth_interior"] = np.concatenate([regions.get("mouth_socket", []), regions.get("gums_and_tongue", []),
                                                regions.get("teeth", [])]).astype(np.int64)
    # The root joint (the pivot of head rotation) sits at the base of the neck, like FLAME's.
    head = np.arange(0, min(11248, n))
    ys = template[head, 1]
    base = head[ys < np.percentile(ys, 3)]
    j_regressor = np.zeros((1, n))
    j_regressor[0, base] = 1.0 / len(base)
    return HeadModelData(
        kind=kind,
        template=template,
        faces=faces,
        shapedirs=np.ascontiguousarray(identities_cm.transpose(1, 2, 0)) * cm,
        exprdirs=np.ascontiguousarray(expressions_cm.transpose(1, 2, 0)) * cm,
        posedirs=np.zeros((n, 3, 0)),
        j_regressor=j_regressor,
        weights=np.ones((n, 1)),
        parents=np.array([-1]),
        joint_names=("global",),
        expression_names=names,
        regions=regions,
        source=source,
        content_hash=content_hash,
    )


def load_ict_folder(folder: str | os.PathLike) -> HeadModelData:
    """Read ICT-FaceKit's original `FaceXModel` folder: one OBJ per expression and identity, plus
    `vertex_indices.json` (its expression order). Identities are files named `identityNNN.obj`."""
    folder = Path(folder)
    neutral_path = folder / ICT_NEUTRAL
    if not neutral_path.is_file():
        raise ModelFileError(f"{folder}: not an ICT-FaceKit folder, {ICT_NEUTRAL} is missing")
    neutral, polys = read_obj(neutral_path)
    order: list[str] = []
    index_file = folder / "vertex_indices.json"
    if index_file.is_file():
        order = list(json.loads(index_file.read_text()).get("expressions", []))
    objs = {p.stem: p for p in folder.glob("*.obj") if p.name != ICT_NEUTRAL}
    expression_names = [n for n in order if n in objs] + sorted(n for n in objs if n not in order
                                                                 and not _ICT_IDENTITY.match(n))
    identity_names = sorted(n for n in objs if _ICT_IDENTITY.match(n))

    def deltas(names: list[str]) -> np.ndarray:
        out = np.zeros((len(names), len(neutral), 3))
        for i, name in enumerate(names):
            verts, _ = read_obj(objs[name])
            if verts.shape != neutral.shape:
                raise ModelFileError(f"{objs[name]}: has {len(verts)} vertices, the neutral mesh has {len(neutral)}")
            out[i] = verts - neutral
        return out

    digest = hashlib.sha256()
    for p in [neutral_path] + [objs[n] for n in expression_names + identity_names]:
        digest.update(p.name.encode())
        digest.update(_hash_file(p).encode())
    return _rigid_ict("ict", neutral, _triangulate(polys), deltas(identity_names), deltas(expression_names),
                      tuple(expression_names), str(folder), digest.hexdigest()[:16])


def load_ict_npz(path: str | os.PathLike) -> HeadModelData:
    """Read ICT-FaceKit packed in one `.npz` (neutral, polygons, expression and identity deltas, in cm)."""
    path = Path(path)
    try:
        m = np.load(path, allow_pickle=False)
        neutral = m["neutral"].astype(np.float64)
        counts, flat = m["face_vertex_counts"], m["face_vertex_indices"]
        names = tuple(str(n) for n in m["expression_names"])
        expressions, identities = m["expressions"].astype(np.float64), m["identities"].astype(np.float64)
    except KeyError as err:
        raise ModelFileError(f"{path}: not an ICT-FaceKit archive, it lacks {err}") from None
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as err:
        raise ModelFileError(f"{path}: cannot be read, it may be truncated or damaged ({err})") from None
    offsets = np.concatenate([[0], np.cumsum(counts)])
    polys = [flat[offsets[i]:offsets[i + 1]].tolist() for i in range(len(counts))]
    return _rigid_ict("ict", neutral, _triangulate(polys), identities, expressions, names, str(path), _hash_file(path))


def load_model_data(path: str | os.PathLike) -> HeadModelData:
    """Read any supported head-model file: a FLAME pickle, an ICT-FaceKit folder or an ICT-FaceKit npz."""
    path = Path(os.path.expanduser(str(path)))
    if not path.exists():
        raise ModelFileError(f"{path}: no such file or folder. Point Kinesics at a FLAME .pkl file "
                             "(from the FLAME website) or an ICT-FaceKit folder.")
    if path.is_dir():
        if (path / ICT_NEUTRAL).is_file():
            return load_ict_folder(path)
        for name in ("generic_model.pkl", "flame2023.pkl", "flame2023_no_jaw.pkl", "FLAME_NEUTRAL.pkl"):
            if (path / name).is_file():
                return load_flame(path / name)
        raise ModelFileError(f"{path}: holds no head model (expected a FLAME .pkl or ICT-FaceKit's {ICT_NEUTRAL})")
    if path.stat().st_size == 0:
        raise ModelFileError(f"{path}: the file is empty")
    with open(path, "rb") as fh:
        magic = fh.read(4)
    if magic.startswith(b"PK"):
        return load_ict_npz(path)
    if magic[:1] == b"\x80" or path.suffix == ".pkl":
        return load_flame(path)
    raise ModelFileError(f"{path}: unknown head-model format (expected a FLAME .pkl, an ICT-FaceKit folder or .npz)")
