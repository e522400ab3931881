"""Retarget a capture onto the animator's own character: ARKit curves onto shape keys, head/neck/jaw/eye
rotations onto bones, baked as plain keyframes (no drivers, no constraints). Logic only; operators and panels
live in retarget_ui.py.

Frames: capture frame i, shown t seconds after the footage's first (`core.capture_file.times`: for constant-rate
footage, source-video frame `frame_index[i]` at `frame_index[i] / capture_fps`), lands on scene frame
`frame_offset + t * scene_fps`, so the bake lines up with the footage and its sound.
"""
from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field, replace

import bpy
import numpy as np
from mathutils import Matrix, Quaternion

from ..core import capture_file, livelink
from ..core.arkit_names import ARKIT_INDEX, ARKIT_NAMES, arkit_from_capture
from ..core.errors import KinesicsError
from ..core.livelink import head_rotation
from ..core.rotations import matrix_to_rotvec, rotvec_to_matrix
from . import keyframes

PRESET_FORMAT = "kinesics-retarget"
BONE_SOURCES = ("neck", "head", "jaw", "left_eye", "right_eye")
# The face's axes (x the subject's left, y up, z out of the face) -> Blender's character axes (faces -Y, Z up).
FACE_TO_BLENDER = np.array([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]])
MAX_NEUTRAL = 0.9  # a rest reading above this leaves no range to animate: the frame is not a rest face
_SIDES = {"l": "left", "left": "left", "r": "right", "right": "right"}
_SPLIT = re.compile(r"[^a-z0-9]+")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


class RetargetError(KinesicsError, ValueError):
    """A retarget that cannot be done as asked: nothing to drive, or a mapping that does not fit."""

    code = "retarget"


@dataclass
class ChannelMap:
    """One ARKit channel driving one shape key: value = gain * rested + offset, clamped to [0, 1] if clamp, where
    rested = (weight - neutral) / (1 - neutral): the channel's reading on the actor's rest face counts as 0, and
    full stays full."""

    channel: str
    target: str
    gain: float = 1.0
    offset: float = 0.0
    clamp: bool = True
    neutral: float = 0.0


@dataclass
class BoneMap:
    """A capture rotation (one of BONE_SOURCES) onto a bone, scaled per axis of the bone's rest frame. `rest`: the
    source's rotation (a rotation vector, the face's axes) on the actor's rest face, taken off every frame, so
    that a head turned towards an off-axis camera, or a resting jaw, leaves the bone at its rest pose."""

    source: str
    bone: str
    gain: tuple[float, float, float] = (1.0, 1.0, 1.0)
    rest: tuple[float, float, float] = (0.0, 0.0, 0.0)


@dataclass
class RetargetMap:
    """The whole mapping, saved and loaded as a JSON preset. jaw_open_angle: the jaw rotation (radians) that
    reads as jawOpen = 1 when the jaw pose drives the jawOpen channel."""

    channels: list[ChannelMap] = field(default_factory=list)
    bones: list[BoneMap] = field(default_factory=list)
    jaw_open_from_pose: bool = True
    jaw_open_angle: float = 0.35

    def to_json(self) -> str:
        return json.dumps({"format": PRESET_FORMAT, "version": 1, **asdict(self)}, indent=1)

    @classmethod
    def from_json(cls, text: str) -> "RetargetMap":
        try:
            data = json.loads(text)
            if data.get("format") != PRESET_FORMAT:
                raise ValueError("not a Kinesics retarget preset")
            channels = [ChannelMap(str(c["channel"]), str(c["target"]), float(c.get("gain", 1.0)),
                                   float(c.get("offset", 0.0)), bool(c.get("clamp", True)),
                                   float(c.get("neutral", 0.0))) for c in data["channels"]]
            bones = [BoneMap(str(b["source"]), str(b["bone"]), tuple(float(g) for g in b.get("gain", (1, 1, 1))),
                             tuple(float(r) for r in b.get("rest", (0, 0, 0)))) for b in data.get("bones", [])]
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            raise RetargetError(f"the preset cannot be read ({err}); choose a JSON file saved by Kinesics") from None
        if any(not 0.0 <= c.neutral <= MAX_NEUTRAL for c in channels):
            raise RetargetError(f"the preset's neutral readings must lie between 0 and {MAX_NEUTRAL}")
        unknown = [c.channel for c in channels if c.channel not in ARKIT_INDEX]
        unknown += [b.source for b in bones if b.source not in BONE_SOURCES]
        if unknown:
            raise RetargetError(f"the preset names unknown channels: {', '.join(unknown)}")
        return cls(channels, bones, bool(data.get("jaw_open_from_pose", True)),
                   float(data.get("jaw_open_angle", 0.35)))


# --- finding the character's ARKit shape keys -------------------------------------------------------------

def canonical(name: str) -> str:
    """A naming-convention-free spelling: eyeBlink_L, EyeBlinkLeft, eye_blink.L -> 'eyeblinkleft'."""
    tokens = [t for t in _SPLIT.split(_CAMEL.sub(" ", name).lower()) if t]
    return "".join(_SIDES.get(t, t) if i == len(tokens) - 1 else t for i, t in enumerate(tokens))


_CANONICAL = {canonical(n): n for n in ARKIT_NAMES}


def auto_map(key_names) -> list[ChannelMap]:
    """Map every ARKit channel to the character's shape key of the same meaning, whatever its convention or
    prefix (Face.eyeBlinkLeft, CC_Base_EyeBlink_L ...). A channel without a side that the character splits
    into left and right keys (browInnerUp_L/_R) drives both."""
    keys = [(k, canonical(k)) for k in key_names]

    def best(target: str) -> str | None:
        exact = [k for k, c in keys if c == target]
        prefixed = [k for k, c in keys if c.endswith(target)]
        return (exact or sorted(prefixed, key=len) or [None])[0]

    rows = []
    for channel in ARKIT_NAMES:
        target = canonical(channel)
        found = best(target)
        if found is not None:
            rows.append(ChannelMap(channel, found))
        elif not target.endswith(("left", "right")):
            rows += [ChannelMap(channel, k) for k in (best(target + "left"), best(target + "right")) if k]
    return rows


_BONE_WORDS = {"neck": ("neck",), "head": ("head",), "jaw": ("jaw",), "left_eye": ("eye", "left"),
               "right_eye": ("eye", "right")}


def guess_bones(bone_names) -> list[BoneMap]:
    """Head, neck, jaw and eye bones found by name (DEF-jaw, head, Eye.L, CC_Base_R_Eye ...), shortest name
    first; helper bones such as 'neck_twist' or 'eye_target' lose to plainer names."""
    rows = []
    for source, words in _BONE_WORDS.items():
        matches = []
        for name in bone_names:
            tokens = [_SIDES.get(t, t) for t in _SPLIT.split(_CAMEL.sub(" ", name).lower()) if t]
            if all(w in tokens for w in words) and (source.endswith("eye") or not {"left", "right"} & set(tokens)):
                matches.append(name)
        if matches:
            rows.append(BoneMap(source, min(matches, key=len)))
    return rows


def load_source(path: str, livelink_fps: float | None = None) -> dict:
    """A capture file (.npz) or a Live Link Face take (.csv, its rate inferred unless given) to retarget."""
    if path.lower().endswith(".csv"):
        return livelink.import_take(path, livelink_fps)
    return capture_file.load(path)


# --- values -----------------------------------------------------------------------------------------------

def key_frames(capture: dict, scene_fps: float, frame_offset: float) -> np.ndarray:
    """(T,) scene frames of the capture's frames."""
    return frame_offset + capture_file.times(capture, float(capture.get("fps", scene_fps))) * scene_fps


def capture_row_at(capture: dict, scene_fps: float, frame_offset: float, scene_frame: float) -> int:
    """Index of the capture frame keyed nearest to `scene_frame`."""
    return int(np.argmin(np.abs(key_frames(capture, scene_fps, frame_offset) - scene_frame)))


def channel_weights(capture: dict, mapping: RetargetMap) -> np.ndarray:
    """(T,52) ARKit weights the mapping reads: the capture's curves, with jawOpen raised by the jaw pose if asked."""
    try:
        arkit = arkit_from_capture(capture)
    except KeyError as err:
        raise RetargetError(f"{err.args[0]}; it can drive bones only: remove the shape-key rows, or capture "
                            "again with a Kinesics version that writes ARKit curves") from None
    if mapping.jaw_open_from_pose and "jaw_pose" in capture:
        # FLAME opens the jaw with a joint, not an expression: its rotation about x reads as jawOpen.
        opening = np.clip(np.asarray(capture["jaw_pose"], np.float64)[:, 0] / mapping.jaw_open_angle, 0, 1)
        j = ARKIT_INDEX["jawOpen"]
        arkit[:, j] = np.maximum(arkit[:, j], opening)
    return arkit


def with_neutral(mapping: RetargetMap, capture: dict, row: int, armature: bpy.types.Object | None = None
                 ) -> RetargetMap:
    """The mapping calibrated to capture frame `row`, where the actor is at rest: every channel's reading there
    becomes its neutral, and every bone's rotation there (as `bake` drives `armature`) its rest."""
    weights = channel_weights(capture, mapping)[row]
    channels = [replace(c, neutral=float(min(weights[ARKIT_INDEX[c.channel]], MAX_NEUTRAL))) for c in mapping.channels]
    driven = bakeable_bones(mapping, armature)
    rotations = source_rotations(capture, {b.source for b in driven})
    bones = [replace(b, rest=tuple(float(v) for v in matrix_to_rotvec(rotations[b.source][row])))
             if b in driven else b for b in mapping.bones]
    return replace(mapping, channels=channels, bones=bones)


def shape_key_values(capture: dict, mapping: RetargetMap) -> dict[str, np.ndarray]:
    """Shape key name -> (T,) values. Rows driving the same key add up."""
    arkit = channel_weights(capture, mapping)
    values: dict[str, np.ndarray] = {}
    for row in mapping.channels:
        rested = (arkit[:, ARKIT_INDEX[row.channel]] - row.neutral) / (1.0 - row.neutral)
        v = row.gain * rested + row.offset
        values[row.target] = values.get(row.target, 0.0) + (np.clip(v, 0.0, 1.0) if row.clamp else v)
    return values


def source_rotations(capture: dict, sources: set[str]) -> dict[str, np.ndarray]:
    """Source -> (T,3,3) rotation in the face's axes, relative to its parent's: the neck takes the global head
    rotation (relative to facing the camera) and the head the neck joint's, or both when no neck is mapped."""
    n = len(capture["frame_index"])

    def pose(key: str, cols=slice(0, 3)) -> np.ndarray:
        return rotvec_to_matrix(np.asarray(capture.get(key, np.zeros((n, 6))), np.float64)[:, cols])

    global_rotation = head_rotation({"global_pose": capture.get("global_pose", np.zeros((n, 3)))})
    rotations = {"jaw": pose("jaw_pose"), "left_eye": pose("eye_pose"), "right_eye": pose("eye_pose", slice(3, 6))}
    if "neck" in sources:
        rotations["neck"], rotations["head"] = global_rotation, pose("neck_pose")
    else:
        rotations["head"] = global_rotation @ pose("neck_pose")
    return {s: rotations[s] for s in sources}


def bone_quaternions(rotation: np.ndarray, rest: np.ndarray, gain=(1.0, 1.0, 1.0)) -> np.ndarray:
    """(T,3,3) rotations in the armature's axes -> (T,4) w,x,y,z pose rotations in a bone's rest frame `rest`
    (3,3, armature space), each axis of the rotation vector scaled by `gain`; signs kept continuous."""
    local = rest.T @ rotation @ rest
    rotvec = matrix_to_rotvec(local) * np.asarray(gain, np.float64)
    angle = np.linalg.norm(rotvec, axis=1, keepdims=True)
    axis = rotvec / np.where(angle > 1e-12, angle, 1.0)
    q = np.concatenate([np.cos(angle / 2), axis * np.sin(angle / 2)], 1)
    flips = np.cumsum(np.r_[False, np.sum(q[1:] * q[:-1], 1) < 0]) % 2 == 1
    q[flips] *= -1
    return q


def _rotation_only(matrix: Matrix) -> np.ndarray:
    return np.array(matrix.to_quaternion().to_matrix())


# --- keyframes --------------------------------------------------------------------------------------------

def write_curves(id_data, action_name: str, frames: np.ndarray, channels: dict[tuple[str, int], np.ndarray],
                 group: str = "") -> None:
    """Key each (data_path, index) -> values (T,) at `frames` (T,) on `id_data`, linear, replacing those
    curves' keys in its current action (a new one when it has none) and leaving its other curves alone."""
    keyframes.clear_channels(id_data, list(channels))
    keyframes.append_keys(id_data, action_name, frames, channels, group)


# --- bake -------------------------------------------------------------------------------------------------

@dataclass
class BakeReport:
    keys: list[str]
    bones: list[str]
    frames: tuple[float, float]
    skipped: list[str]

    def summary(self) -> str:
        text = (f"Baked {len(self.keys)} shape keys and {len(self.bones)} bones over frames "
                f"{self.frames[0]:g}-{self.frames[1]:g}")
        return text + (f"; skipped (not on the character): {', '.join(self.skipped)}" if self.skipped else "")


def bakeable_bones(mapping: RetargetMap, armature: bpy.types.Object | None) -> list[BoneMap]:
    """The mapped bones `armature` has."""
    return [b for b in mapping.bones if armature is not None and b.bone in armature.pose.bones]


def bake(capture: dict, mesh: bpy.types.Object | None, mapping: RetargetMap, armature: bpy.types.Object | None = None,
         scene: bpy.types.Scene | None = None, frame_offset: float | None = None, take: str | None = None
         ) -> BakeReport:
    """Key the mapped shape keys of `mesh` and bones of `armature` for every capture frame: into the curves of
    their current actions, or, given a `take` name, into new actions named after it (the current ones are kept
    with a fake user, for the NLA or the Action editor).

    Raises RetargetError, before writing anything, when nothing on the character would move."""
    scene = scene or bpy.context.scene
    blocks = mesh.data.shape_keys.key_blocks if mesh is not None and mesh.data.shape_keys else {}
    rows = [r for r in mapping.channels if r.target in blocks]
    skipped = sorted({r.target for r in mapping.channels if r.target not in blocks})
    bones = bakeable_bones(mapping, armature)
    skipped += sorted({b.bone for b in mapping.bones if b not in bones})
    if not rows and not bones:
        who = mesh.name if mesh is not None else "The character"
        raise RetargetError(
            f"{who} has no shape keys matching the ARKit names (such as eyeBlinkLeft, eyeBlink_L or EyeBlinkLeft) "
            "and no bones are mapped, so there is nothing to bake. Add ARKit-style shape keys, map keys and bones "
            "by hand in the Kinesics retarget panel, or load a preset.")
    n = len(capture["frame_index"])
    if n == 0:
        raise RetargetError("the capture holds no frames; capture the video again")
    offset = scene.frame_start if frame_offset is None else frame_offset
    frames = key_frames(capture, scene.render.fps / scene.render.fps_base, offset)
    name = f"Kinesics {capture.get('model', 'capture')}"
    if take:
        for id_data, label in ((mesh.data.shape_keys if rows else None, "Face"), (armature if bones else None, "Head")):
            if id_data is not None:
                keyframes.new_action(id_data, f"{take} {label}")
    if rows:
        values = shape_key_values(capture, RetargetMap(rows, [], mapping.jaw_open_from_pose, mapping.jaw_open_angle))
        write_curves(mesh.data.shape_keys, name, frames,
                     {(f'key_blocks["{bpy.utils.escape_identifier(k)}"].value', 0): v for k, v in values.items()})
    if bones:
        _bake_bones(capture, armature, bones, frames, name)
    return BakeReport(sorted({r.target for r in rows}), [b.bone for b in bones], (float(frames.min()),
                                                                                  float(frames.max())), skipped)


def _bake_bones(capture: dict, armature: bpy.types.Object, bones: list[BoneMap], frames: np.ndarray, name: str):
    """Rotations into each bone's rest frame; quaternion keys, or Euler keys in the bone's own Euler order.
    The armature's own axes are the character's, so a rig turned in the scene turns its performance with it."""
    rotations = source_rotations(capture, {b.source for b in bones})
    for b in bones:
        pose_bone = armature.pose.bones[b.bone]
        rest = _rotation_only(pose_bone.bone.matrix_local)
        rotation = rotvec_to_matrix(np.asarray(b.rest, np.float64)).T @ rotations[b.source]  # the actor's rest off
        q = bone_quaternions(FACE_TO_BLENDER @ rotation @ FACE_TO_BLENDER.T, rest, b.gain)
        path = f'pose.bones["{bpy.utils.escape_identifier(b.bone)}"]'
        if pose_bone.rotation_mode == "AXIS_ANGLE":
            pose_bone.rotation_mode = "QUATERNION"
        if pose_bone.rotation_mode == "QUATERNION":
            curves = {(f"{path}.rotation_quaternion", i): q[:, i] for i in range(4)}
        else:
            eulers, previous = [], None
            for quat in q:
                previous = Quaternion(quat).to_euler(pose_bone.rotation_mode, *(previous,) if previous else ())
                eulers.append(tuple(previous))
            e = np.array(eulers)
            curves = {(f"{path}.rotation_euler", i): e[:, i] for i in range(3)}
        write_curves(armature, name, frames, curves, group=b.bone)
