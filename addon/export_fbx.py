"""FBX export of a character (or the capture rig) with its baked shape-key and bone animation.

Blender's FBX exporter loses facial animation in four known ways, each handled here:
- animation living only on shape keys is dropped unless `bake_anim_use_all_actions` and
  `bake_anim_use_nla_strips` are off;
- with `use_mesh_modifiers`, any modifier other than Armature makes it drop every shape key, so modifiers are
  not applied when a mesh with shape keys has one (the export reports which);
- it samples the scene's frame range, not the action's, so the range is widened to the animation's for the
  export and restored after;
- its importer shifts keys by one frame unless `anim_offset=0` (see `import_fbx`).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import bpy

from ..core.errors import KinesicsError


class ExportError(KinesicsError, ValueError):
    """An export that cannot be done: nothing to export, or the file cannot be written."""

    code = "export"


@dataclass
class ExportReport:
    filepath: str
    objects: list[str]
    frames: tuple[int, int]
    warnings: list[str] = field(default_factory=list)


def character_objects(objects) -> list[bpy.types.Object]:
    """The meshes and armatures given, the armatures that deform or parent those meshes, and the meshes
    parented to those armatures (so picking a rig's armature exports its head too)."""
    found: dict[str, bpy.types.Object] = {}
    for ob in objects:
        if ob.type not in {"MESH", "ARMATURE"}:
            continue
        found[ob.name] = ob
        if ob.type == "ARMATURE":
            found.update({c.name: c for c in ob.children if c.type == "MESH"})
        else:
            rigs = [m.object for m in ob.modifiers if m.type == "ARMATURE" and m.object]
            if ob.parent is not None and ob.parent.type == "ARMATURE":
                rigs.append(ob.parent)
            found.update({r.name: r for r in rigs})
    return list(found.values())


def _animated_ids(ob: bpy.types.Object):
    yield ob
    if ob.type == "MESH" and ob.data.shape_keys is not None:
        yield ob.data.shape_keys


def animation_range(objects) -> tuple[int, int] | None:
    """Whole frames covering every action on the objects and their shape keys, or None without animation."""
    starts, ends = [], []
    for ob in objects:
        for id_data in _animated_ids(ob):
            anim = id_data.animation_data
            if anim is not None and anim.action is not None:
                start, end = anim.action.frame_range
                starts.append(start)
                ends.append(end)
    return (math.floor(min(starts)), math.ceil(max(ends))) if starts else None


def export_fbx(filepath: str, objects, scene: bpy.types.Scene | None = None) -> ExportReport:
    """Write the character made of `objects` (and the armatures deforming them) to `filepath` with its
    animation baked at every frame of its actions."""
    scene = scene or bpy.context.scene
    objects = character_objects(objects)
    if not objects:
        raise ExportError("select the character's mesh (or its armature) to export; nothing exportable is selected")
    folder = os.path.dirname(os.path.abspath(filepath))
    if not os.path.isdir(folder):
        raise ExportError(f"{folder}: no such folder; choose where to save the FBX file")
    warnings = []
    apply_modifiers = True
    for ob in objects:
        if ob.type == "MESH" and ob.data.shape_keys is not None:
            others = [m.name for m in ob.modifiers if m.type != "ARMATURE" and m.show_viewport]
            if others:
                apply_modifiers = False
                warnings.append(f"{ob.name}: modifiers {', '.join(others)} were not applied, "
                                "so that its shape keys survive the export")
    frames = animation_range(objects)
    if frames is None:
        warnings.append("the character has no animation; only its geometry was exported")
    # Written beside the target, then renamed over it: a failed or interrupted export leaves an earlier file whole.
    partial = os.path.join(folder, f".{os.path.basename(filepath)}.partial.fbx")
    view_layer = bpy.context.view_layer
    saved_selection = [ob for ob in view_layer.objects if ob.select_get()]
    saved_active = view_layer.objects.active
    saved_range = scene.frame_start, scene.frame_end
    try:
        for ob in saved_selection:
            ob.select_set(False)
        for ob in objects:
            ob.select_set(True)
        view_layer.objects.active = objects[0]
        if frames is not None:
            scene.frame_start, scene.frame_end = frames
        result = bpy.ops.export_scene.fbx(
            filepath=partial, use_selection=True, object_types={"MESH", "ARMATURE"},
            use_mesh_modifiers=apply_modifiers, add_leaf_bones=False,
            bake_anim=frames is not None, bake_anim_use_all_actions=False, bake_anim_use_nla_strips=False,
            bake_anim_use_all_bones=True, bake_anim_force_startend_keying=True, bake_anim_step=1.0,
            bake_anim_simplify_factor=0.0)
    except RuntimeError as err:
        _remove(partial)
        raise ExportError(f"{filepath}: the FBX exporter failed ({err})") from None
    finally:
        scene.frame_start, scene.frame_end = saved_range
        for ob in objects:
            ob.select_set(False)
        for ob in saved_selection:
            ob.select_set(True)
        view_layer.objects.active = saved_active
    if "FINISHED" not in result:
        _remove(partial)
        raise ExportError(f"{filepath}: the FBX exporter did not finish")
    try:
        os.replace(partial, filepath)
    except OSError as err:
        _remove(partial)
        raise ExportError(f"{filepath}: cannot be written ({err.strerror})") from None
    return ExportReport(filepath, [ob.name for ob in objects], frames or (scene.frame_current,) * 2, warnings)


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass


def import_fbx(filepath: str) -> list[bpy.types.Object]:
    """Import an FBX with its keys on the frames they were exported at (`anim_offset=0`); returns new objects."""
    before = set(bpy.data.objects)
    result = bpy.ops.import_scene.fbx(filepath=filepath, anim_offset=0.0)
    if "FINISHED" not in result:
        raise ExportError(f"{filepath}: the FBX importer did not finish")
    return [ob for ob in bpy.data.objects if ob not in before]
