"""The built-in head rig, made from the actor's own face when no head model is installed (numpy only).

Vertices are MediaPipe's 478 landmarks (with irises), triangles MediaPipe's tessellation. The template is
the actor's neutral face from the clip (metres, +Y up, the face looks towards +Z, x towards the subject's
left: FLAME's frame); expression shape keys are the clip's own motion (see `core.builtin_capture`); FLAME's
five joints make jaw and eye rotations (iris points follow the eyes, the lower lip and chin the jaw).

A built-in capture carries its model in `builtin_*` keys; `model_from_capture` rebuilds the rig from them,
which is what the Blender add-on does (this module imports nothing beyond numpy).
"""
from __future__ import annotations

import hashlib

import numpy as np

from .arkit_geometric import IRIS_RINGS
from .errors import ModelFileError
from .model_data import FLAME_JOINTS, HeadModelData

KIND = "builtin"
N_VERTICES = 478
EYEBALL_RADIUS_M = 0.012  # typical adult eyeball: the eye joint sits this far behind the iris centre
# Per eye (left = the subject's left, as FLAME): iris centre and its ring.
IRIS_POINTS = dict(zip(("left_eye", "right_eye"), IRIS_RINGS))
FACE_SIDES = (454, 234)  # face contour beside the ears: the jaw hinges near their midpoint
LOWER_LIP = (146, 91, 181, 84, 17, 314, 405, 321, 375, 95, 88, 178, 87, 14, 317, 402, 318, 324)
UPPER_LIP = (185, 40, 39, 37, 0, 267, 269, 270, 409, 191, 80, 81, 82, 13, 312, 311, 310, 415)
MOUTH_CORNERS = (61, 291, 78, 308)
JAW_BAND_M = 0.012  # the jaw's influence fades in over this height around the mouth corners
CAPTURE_KEYS = ("builtin_template", "builtin_faces", "builtin_exprdirs", "builtin_j_regressor",
                "builtin_weights", "builtin_parents", "builtin_joint_names")


def mediapipe_triangles(template: np.ndarray) -> np.ndarray:
    """Triangles (F,3) of MediaPipe's face mesh plus fans over the irises, facing +Z on `template` (478,3).

    MediaPipe ships its tessellation as edges only: its triangles are the edge 3-cliques, except the
    few cliques whose three edges each border two other triangles too (they close over a fold, no face).
    """
    from mediapipe.python.solutions.face_mesh_connections import FACEMESH_TESSELATION  # only when building

    edges = {tuple(sorted(e)) for e in FACEMESH_TESSELATION}
    nbrs: dict[int, set[int]] = {}
    for a, b in edges:
        nbrs.setdefault(a, set()).add(b)
        nbrs.setdefault(b, set()).add(a)
    cliques = sorted({tuple(sorted((a, b, c))) for a, b in edges for c in nbrs[a] & nbrs[b]})
    uses: dict[tuple[int, int], int] = {}
    for t in cliques:
        for e in ((t[0], t[1]), (t[0], t[2]), (t[1], t[2])):
            uses[e] = uses.get(e, 0) + 1
    tris = [t for t in cliques if min(uses[(t[0], t[1])], uses[(t[0], t[2])], uses[(t[1], t[2])]) < 3]
    tris = _orient(np.asarray(tris, np.int64), template)
    fans = [(ring[0], ring[1 + k], ring[1 + (k + 1) % 4]) for ring in IRIS_POINTS.values() for k in range(4)]
    fans = np.asarray(fans, np.int64)
    flip = _normals(fans, template)[:, 2] < 0
    fans[flip] = fans[flip][:, ::-1]
    return np.concatenate([tris, fans])


def _normals(faces: np.ndarray, verts: np.ndarray) -> np.ndarray:
    a, b, c = verts[faces[:, 0]], verts[faces[:, 1]], verts[faces[:, 2]]
    return np.cross(b - a, c - a)


def _orient(faces: np.ndarray, verts: np.ndarray) -> np.ndarray:
    """Consistent winding by walking across shared edges, then the winding that faces +Z overall."""
    faces = faces.copy()
    by_edge: dict[tuple[int, int], list[int]] = {}
    for i, f in enumerate(faces):
        for k in range(3):
            by_edge.setdefault(tuple(sorted((f[k], f[(k + 1) % 3]))), []).append(i)
    seen = np.zeros(len(faces), bool)
    for seed in range(len(faces)):
        if seen[seed]:
            continue
        seen[seed] = True
        stack = [seed]
        while stack:
            i = stack.pop()
            f = faces[i]
            for k in range(3):
                a, b = f[k], f[(k + 1) % 3]
                for j in by_edge[tuple(sorted((a, b)))]:
                    if seen[j]:
                        continue
                    g = list(faces[j])
                    # A neighbour wound the same way runs the shared edge the other way round.
                    if any(g[m] == a and g[(m + 1) % 3] == b for m in range(3)):
                        faces[j] = faces[j][::-1]
                    seen[j] = True
                    stack.append(j)
    if _normals(faces, verts)[:, 2].sum() < 0:
        faces = faces[:, ::-1]
    return np.ascontiguousarray(faces)


def rig_joints(template: np.ndarray) -> np.ndarray:
    """Rest positions (5,3) of FLAME's joints on a built-in template (478,3) metres."""
    sides = template[list(FACE_SIDES)].mean(0)
    root = sides + np.array([0.0, -0.03, -0.02])   # head-neck pivot: below and behind the ear line
    jaw = sides + np.array([0.0, -0.01, 0.0])       # the jaw hinges just below the ear line
    eyes = [template[IRIS_POINTS[e][0]] - np.array([0.0, 0.0, EYEBALL_RADIUS_M]) for e in ("left_eye", "right_eye")]
    return np.stack([root, root, jaw, *eyes])


def rig_weights(template: np.ndarray) -> np.ndarray:
    """Skinning weights (478,5): irises follow their eye, the chin and lower lip the jaw, the rest the neck."""
    weights = np.zeros((N_VERTICES, len(FLAME_JOINTS)))
    corners_y = template[list(MOUTH_CORNERS), 1].mean()
    jaw = np.clip((corners_y - template[:, 1]) / JAW_BAND_M + 0.5, 0.0, 1.0)
    jaw = jaw * jaw * (3 - 2 * jaw)  # smoothstep: no crease where the influence starts
    jaw[list(LOWER_LIP)], jaw[list(UPPER_LIP)], jaw[list(MOUTH_CORNERS)] = 1.0, 0.0, 0.5
    weights[:, 1], weights[:, 2] = 1.0 - jaw, jaw
    for j, eye in enumerate(("left_eye", "right_eye"), start=3):
        weights[list(IRIS_POINTS[eye])] = 0.0
        weights[list(IRIS_POINTS[eye]), j] = 1.0
    return weights


def joint_regressor(template: np.ndarray, joints: np.ndarray, exprdirs: np.ndarray) -> np.ndarray:
    """(J,V): each joint as the least-norm affine combination of the vertices that gives its rest position
    on the template and does not move under any expression shape key (exprdirs (V,3,E)).

    The forward pass regresses joints from the expressed mesh; pinning them keeps jaw and eye rotations
    about fixed hinges, so a capture's rest-pose motion (measured with fixed joints) is reproduced exactly.
    """
    v, _, e = exprdirs.shape
    a = np.vstack([template.T, np.ones(v), exprdirs.transpose(1, 2, 0).reshape(3 * e, v)])   # (4+3E, V)
    rhs = np.vstack([joints.T, np.ones(len(joints)), np.zeros((3 * e, len(joints)))])        # (4+3E, J)
    return np.linalg.lstsq(a, rhs, rcond=None)[0].T


def build_model(template: np.ndarray, faces: np.ndarray, exprdirs: np.ndarray, expression_names) -> HeadModelData:
    """The rig as HeadModelData: template (478,3) m, faces (F,3), exprdirs (478,3,E); no shape space."""
    joints = rig_joints(template)
    return assemble_model(template, faces, exprdirs, joint_regressor(template, joints, exprdirs),
                          rig_weights(template),
                          np.array([-1, 0, 1, 1, 1]), FLAME_JOINTS, expression_names)


def assemble_model(template, faces, exprdirs, j_regressor, weights, parents, joint_names, expression_names
                   ) -> HeadModelData:
    """HeadModelData of kind 'builtin' from its arrays (see the module docstring for the frame)."""
    template = np.asarray(template, np.float64)
    exprdirs = np.asarray(exprdirs, np.float64)
    faces = np.asarray(faces, np.int64)
    digest = hashlib.sha256()  # of the arrays as stored in a capture, so a round trip keeps the hash
    for arr, dtype in ((template, np.float32), (faces, np.int32), (exprdirs, np.float32)):
        digest.update(np.ascontiguousarray(arr, dtype).tobytes())
    n_joints = len(joint_names)
    return HeadModelData(
        kind=KIND, template=template, faces=faces, shapedirs=np.zeros((len(template), 3, 0)), exprdirs=exprdirs,
        posedirs=np.zeros((len(template), 3, 9 * (n_joints - 1))),
        j_regressor=np.asarray(j_regressor, np.float64), weights=np.asarray(weights, np.float64),
        parents=np.asarray(parents, np.int64), joint_names=tuple(str(n) for n in joint_names),
        expression_names=tuple(str(n) for n in expression_names),
        regions={"eyeballs": np.array(IRIS_POINTS["left_eye"] + IRIS_POINTS["right_eye"])},
        source=KIND, content_hash=digest.hexdigest()[:16])


def capture_keys(data: HeadModelData) -> dict[str, np.ndarray]:
    """The `builtin_*` capture keys that carry the rig (float32 geometry, as the rest of the capture)."""
    return {"builtin_template": data.template.astype(np.float32), "builtin_faces": data.faces.astype(np.int32),
            "builtin_exprdirs": data.exprdirs.astype(np.float32),
            "builtin_j_regressor": data.j_regressor.astype(np.float32),
            "builtin_weights": data.weights.astype(np.float32), "builtin_parents": data.parents.astype(np.int32),
            "builtin_joint_names": np.array(data.joint_names)}


def model_from_capture(capture: dict) -> HeadModelData:
    """The built-in rig a capture carries (its `builtin_*` keys), as HeadModelData (numpy only)."""
    missing = [k for k in CAPTURE_KEYS if k not in capture]
    if missing:
        raise ModelFileError(f"the capture lacks {', '.join(missing)}: it was not made with the built-in model "
                             "or is damaged; capture the video again")
    names = capture.get("expression_names", [f"motion_{i:02d}" for i in range(capture["builtin_exprdirs"].shape[2])])
    return assemble_model(capture["builtin_template"], capture["builtin_faces"], capture["builtin_exprdirs"],
                          capture["builtin_j_regressor"], capture["builtin_weights"], capture["builtin_parents"],
                          [str(n) for n in capture["builtin_joint_names"]], [str(n) for n in names])
