"""A head model as a Blender rig: mesh with shape keys skinned to an armature of the model's joints.

- Basis shape key: template + shapedirs @ shape (the identity is baked in for one capture's `shape`).
- One shape key per expression component (value = coefficient, slider -10..10 for FLAME's unbounded ones).
- Pose correctives: one shape key per non-zero posedirs column, driven by FLAME's pose feature (R_j - I)
  of its joint's pose bone, a simple driver expression of the bone's quaternion.
- One bone per joint at the shaped rest joints, identity rest orientation in the model frame, parented as
  the model's `parents`; vertex groups hold the skinning weights.
The armature object carries camera_space.CAPTURE_TO_WORLD; rig metadata lives in its custom properties.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import bpy
import numpy as np

from .camera_space import CAPTURE_TO_WORLD_EULER
from .joint_tracks import pose_feature_expression

SLIDER_RANGE = 10.0  # Blender's largest shape-key slider range
BASIS = "Basis"


@dataclass
class Rig:
    """A Kinesics rig read back from its armature object."""

    armature: bpy.types.Object
    mesh: bpy.types.Object
    joint_names: tuple[str, ...]
    joint_expr_dirs: np.ndarray  # (J,3,E) joint regressor applied to the expression blendshapes
    expression_keys: tuple[str, ...]
    shape: np.ndarray            # (S,) the identity baked into the basis
    model_hash: str

    @property
    def key(self) -> bpy.types.Key:
        return self.mesh.data.shape_keys


def is_rig(obj: bpy.types.Object | None) -> bool:
    return obj is not None and obj.type == 'ARMATURE' and "kinesics_joint_names" in obj


def read_rig(armature: bpy.types.Object) -> Rig:
    """The Rig of a Kinesics armature object (raises ValueError for any other object)."""
    if not is_rig(armature) or armature.get("kinesics_mesh") is None:
        raise ValueError(f"'{armature.name}' is not a Kinesics head rig; import one with Import Head Rig")
    joints = tuple(json.loads(armature["kinesics_joint_names"]))
    keys = tuple(json.loads(armature["kinesics_expression_keys"]))
    dirs = np.asarray(armature["kinesics_joint_expr_dirs"], np.float64).reshape(len(joints), 3, len(keys))
    return Rig(armature, armature["kinesics_mesh"], joints, dirs, keys,
               np.asarray(armature["kinesics_shape"], np.float64), str(armature.get("kinesics_model_hash", "")))


def expression_key_names(data) -> tuple[str, ...]:
    """Shape-key names of the expression components: the model's own (ICT's ARKit names) or expression_000..."""
    if len(data.expression_names) == data.n_expression:
        return tuple(data.expression_names)
    return tuple(f"expression_{k:03d}" for k in range(data.n_expression))


def _corrective_columns(data) -> list[int]:
    return [p for p in range(data.posedirs.shape[2]) if np.any(data.posedirs[:, :, p])]


def _corrective_name(data, column: int) -> str:
    joint = data.joint_names[1 + column // 9]
    row, col = divmod(column % 9, 3)
    return f"pose_{joint}_{row}{col}"


def _shaped(data, shape: np.ndarray) -> np.ndarray:
    s = np.zeros(data.n_shape)
    s[:min(len(shape), data.n_shape)] = np.asarray(shape, np.float64)[:data.n_shape]
    return data.template + data.shapedirs @ s


def _build_mesh(data, name: str) -> bpy.types.Mesh:
    mesh = bpy.data.meshes.new(name)
    faces = np.asarray(data.faces, np.int32)
    mesh.vertices.add(data.n_vertices)
    mesh.loops.add(faces.size)
    mesh.polygons.add(len(faces))
    mesh.loops.foreach_set("vertex_index", faces.ravel())
    mesh.polygons.foreach_set("loop_start", np.arange(0, faces.size, 3, dtype=np.int32))
    mesh.vertices.foreach_set("co", data.template.astype(np.float32).ravel())
    mesh.update()
    mesh.shade_smooth()
    return mesh


def _skin(mesh_obj: bpy.types.Object, data) -> None:
    """Vertex groups with the model's skinning weights (one add() per distinct weight value)."""
    for j, name in enumerate(data.joint_names):
        group = mesh_obj.vertex_groups.new(name=name)
        column = data.weights[:, j]
        nonzero = np.flatnonzero(column > 0)
        values, inverse = np.unique(column[nonzero], return_inverse=True)
        order = np.argsort(inverse, kind="stable")
        bounds = np.searchsorted(inverse[order], np.arange(len(values) + 1))
        for k, value in enumerate(values):
            group.add(nonzero[order[bounds[k]:bounds[k + 1]]].tolist(), float(value), 'REPLACE')


def _add_corrective_drivers(key: bpy.types.Key, armature: bpy.types.Object, data) -> None:
    for column in _corrective_columns(data):
        joint = data.joint_names[1 + column // 9]
        row, col = divmod(column % 9, 3)
        fcurve = key.key_blocks[_corrective_name(data, column)].driver_add("value")
        driver = fcurve.driver
        driver.type = 'SCRIPTED'
        for i, var_name in enumerate("wxyz"):
            var = driver.variables.new()
            var.name = var_name
            var.type = 'SINGLE_PROP'
            var.targets[0].id_type = 'OBJECT'
            var.targets[0].id = armature
            var.targets[0].data_path = f'pose.bones["{joint}"].rotation_quaternion[{i}]'
        driver.expression = pose_feature_expression(row, col)


def build_rig(data, shape: np.ndarray, collection: bpy.types.Collection, name: str = "Kinesics Head"
              ) -> bpy.types.Object:
    """Import `data` (core.model_data.HeadModelData) with identity `shape` (S,) as a rig; returns the armature."""
    mesh_obj = bpy.data.objects.new(name, _build_mesh(data, name))
    arm_obj = bpy.data.objects.new(f"{name} Rig", bpy.data.armatures.new(f"{name} Rig"))
    try:
        collection.objects.link(arm_obj)
        collection.objects.link(mesh_obj)
        arm_obj.rotation_mode = 'XYZ'
        arm_obj.rotation_euler = CAPTURE_TO_WORLD_EULER
        arm_obj.data.display_type = 'STICK'
        arm_obj.show_in_front = True
        mesh_obj.parent = arm_obj
        _skin(mesh_obj, data)
        mesh_obj.modifiers.new("Armature", 'ARMATURE').object = arm_obj

        mesh_obj.shape_key_add(name=BASIS, from_mix=False)
        for key_name in expression_key_names(data) + tuple(_corrective_name(data, c) for c in _corrective_columns(data)):
            block = mesh_obj.shape_key_add(name=key_name, from_mix=False)
            block.slider_min, block.slider_max = -SLIDER_RANGE, SLIDER_RANGE

        arm_obj["kinesics_joint_names"] = json.dumps(list(data.joint_names))
        arm_obj["kinesics_expression_keys"] = json.dumps(list(expression_key_names(data)))
        arm_obj["kinesics_joint_expr_dirs"] = np.einsum("jv,vce->jce", data.j_regressor, data.exprdirs).ravel().tolist()
        arm_obj["kinesics_model_hash"] = data.content_hash
        arm_obj["kinesics_model_source"] = data.source
        arm_obj["kinesics_mesh"] = mesh_obj
        reshape_rig(arm_obj, data, shape)
        for pose_bone in arm_obj.pose.bones:
            pose_bone.rotation_mode = 'QUATERNION'
        _add_corrective_drivers(mesh_obj.data.shape_keys, arm_obj, data)
    except BaseException:
        # Leave no half-built rig behind.
        mesh, armature = mesh_obj.data, arm_obj.data
        bpy.data.objects.remove(mesh_obj)
        bpy.data.objects.remove(arm_obj)
        bpy.data.meshes.remove(mesh)
        bpy.data.armatures.remove(armature)
        raise
    return arm_obj


def _edit_bones(arm_obj: bpy.types.Object, edit) -> None:
    """Run edit(edit_bones) in edit mode on `arm_obj`, then restore the active object (object mode)."""
    view_layer = bpy.context.view_layer
    previous = view_layer.objects.active
    if arm_obj.name not in view_layer.objects:
        raise ValueError(f"'{arm_obj.name}' is not in the active view layer; make its collection visible")
    view_layer.objects.active = arm_obj
    bpy.ops.object.mode_set(mode='EDIT')
    try:
        edit(arm_obj.data.edit_bones)
    finally:
        bpy.ops.object.mode_set(mode='OBJECT')
        view_layer.objects.active = previous


def reshape_rig(arm_obj: bpy.types.Object, data, shape: np.ndarray) -> None:
    """Bake identity `shape` into the basis, every shape key and the bones' rest joints."""
    mesh_obj = arm_obj["kinesics_mesh"]
    shaped = _shaped(data, shape)
    blocks = mesh_obj.data.shape_keys.key_blocks
    as_co = lambda v: v.astype(np.float32).ravel()  # noqa: E731
    mesh_obj.data.vertices.foreach_set("co", as_co(shaped))
    blocks[BASIS].data.foreach_set("co", as_co(shaped))
    for k, key_name in enumerate(expression_key_names(data)):
        blocks[key_name].data.foreach_set("co", as_co(shaped + data.exprdirs[:, :, k]))
    for column in _corrective_columns(data):
        blocks[_corrective_name(data, column)].data.foreach_set("co", as_co(shaped + data.posedirs[:, :, column]))
    mesh_obj.data.update()

    joints = data.j_regressor @ shaped
    length = 0.05 * float(np.ptp(shaped, axis=0).max())

    def place(bones):
        placed = [bones.get(name) or bones.new(name) for name in data.joint_names]
        for j, bone in enumerate(placed):
            bone.head = joints[j]
            bone.tail = joints[j] + np.array([0.0, length, 0.0])
            bone.roll = 0.0
            bone.use_connect = False
            bone.parent = placed[data.parents[j]] if data.parents[j] >= 0 else None

    _edit_bones(arm_obj, place)
    arm_obj["kinesics_shape"] = np.asarray(shape, np.float64).tolist()
