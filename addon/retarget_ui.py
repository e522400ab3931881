"""Retarget and export in the "Kinesics" sidebar tab: the editable channel and bone mapping, presets, bake,
FBX export and Live Link Face CSV import/export. The work itself is in retarget.py and export_fbx.py.
The package registers `classes`, then calls register() for the scene settings (scene.kinesics_retarget)."""
from __future__ import annotations

import os

import bpy
from bpy.props import (BoolProperty, CollectionProperty, EnumProperty, FloatProperty, FloatVectorProperty,
                       IntProperty, PointerProperty, StringProperty)
from bpy_extras.io_utils import ExportHelper, ImportHelper

from ..core import livelink
from ..core.arkit_names import ARKIT_NAMES
from ..core.errors import KinesicsError
from . import export_fbx, retarget
from .panels import KinesicsPanel

_SOURCE_ITEMS = [(s, s.replace("_", " ").title(), f"The capture's {s.replace('_', ' ')} rotation")
                 for s in retarget.BONE_SOURCES]
_CHANNEL_ITEMS = [(n, n, f"ARKit channel {n}") for n in ARKIT_NAMES]


class KINESICS_PG_channel(bpy.types.PropertyGroup):
    channel: EnumProperty(name="Channel", items=_CHANNEL_ITEMS, description="ARKit channel read from the capture")
    target: StringProperty(name="Shape key", description="The character's shape key this channel drives")
    gain: FloatProperty(name="Gain", default=1.0, soft_min=0.0, soft_max=3.0)
    offset: FloatProperty(name="Offset", default=0.0, soft_min=-1.0, soft_max=1.0)
    clamp: BoolProperty(name="Clamp", default=True, description="Keep the value within 0 to 1")
    neutral: FloatProperty(name="Neutral", default=0.0, min=0.0, max=retarget.MAX_NEUTRAL,
                           description="The channel's reading on the actor's rest face, which counts as 0 (full "
                                       "stays full); Neutral from Frame reads it from the capture")


class KINESICS_PG_bone(bpy.types.PropertyGroup):
    source: EnumProperty(name="Source", items=_SOURCE_ITEMS)
    bone: StringProperty(name="Bone", description="The armature's bone this rotation drives")
    gain: FloatVectorProperty(name="Gain", size=3, default=(1.0, 1.0, 1.0), soft_min=0.0, soft_max=2.0,
                              description="Scale of the rotation about each axis of the bone's rest frame")
    rest: FloatVectorProperty(name="Rest", size=3, default=(0.0, 0.0, 0.0), unit="ROTATION",
                              description="The source's rotation on the actor's rest face (a rotation vector in the "
                                          "face's axes), taken off every frame; Neutral from Frame reads it")


def _is_mesh(_self, ob):
    return ob.type == "MESH"


def _is_armature(_self, ob):
    return ob.type == "ARMATURE"


class KINESICS_PG_retarget(bpy.types.PropertyGroup):
    character: PointerProperty(name="Character", type=bpy.types.Object, poll=_is_mesh,
                               description="The mesh whose ARKit-style shape keys are driven")
    armature: PointerProperty(name="Armature", type=bpy.types.Object, poll=_is_armature,
                              description="The armature whose head, neck, jaw and eye bones are driven")
    source: StringProperty(name="Capture", subtype="FILE_PATH",
                           description="A Kinesics capture (.npz) or a Live Link Face take (.csv)")
    livelink_fps: FloatProperty(name="Take rate", default=0.0, min=0.0,
                                description="Frame rate of a Live Link Face take; 0 reads it from the timecodes")
    match_fps: BoolProperty(name="Match frame rate", default=True,
                            description="Set the scene's frame rate to the capture's so every frame gets a key")
    jaw_open_from_pose: BoolProperty(name="Jaw pose opens jawOpen", default=True,
                                     description="FLAME opens the jaw with a joint; let its rotation drive jawOpen")
    jaw_open_angle: FloatProperty(name="Jaw fully open", default=0.35, min=0.05, max=1.5, subtype="ANGLE")
    new_action: BoolProperty(name="Bake as New Action", default=False,
                             description="Bake into new actions named after the capture, keeping the character's "
                                         "current ones (with a fake user) for the NLA or the Action editor, instead "
                                         "of replacing the mapped curves in its current actions")
    channels: CollectionProperty(type=KINESICS_PG_channel)
    channel_index: IntProperty()
    bones: CollectionProperty(type=KINESICS_PG_bone)
    bone_index: IntProperty()

    def to_map(self) -> retarget.RetargetMap:
        return retarget.RetargetMap(
            [retarget.ChannelMap(c.channel, c.target, c.gain, c.offset, c.clamp, c.neutral) for c in self.channels],
            [retarget.BoneMap(b.source, b.bone, tuple(b.gain), tuple(b.rest)) for b in self.bones],
            self.jaw_open_from_pose, self.jaw_open_angle)

    def set_map(self, mapping: retarget.RetargetMap) -> None:
        self.channels.clear()
        for row in mapping.channels:
            item = self.channels.add()
            item.channel, item.target, item.gain, item.offset, item.clamp, item.neutral = (
                row.channel, row.target, row.gain, row.offset, row.clamp, row.neutral)
        self.bones.clear()
        for row in mapping.bones:
            item = self.bones.add()
            item.source, item.bone, item.gain, item.rest = row.source, row.bone, row.gain, row.rest
        self.jaw_open_from_pose, self.jaw_open_angle = mapping.jaw_open_from_pose, mapping.jaw_open_angle


def settings(context) -> KINESICS_PG_retarget:
    return context.scene.kinesics_retarget


# --- UI lists ---------------------------------------------------------------------------------------------

class KINESICS_UL_channels(bpy.types.UIList):
    def draw_item(self, context, layout, data, item, icon, active_data, active_property, index=0, flt_flag=0):
        row = layout.row(align=True)
        row.label(text=item.channel)
        key = data.character.data.shape_keys if data.character and data.character.data.shape_keys else None
        if key is not None:
            row.prop_search(item, "target", key, "key_blocks", text="")
        else:
            row.prop(item, "target", text="")
        row.prop(item, "gain", text="")
        row.prop(item, "offset", text="")
        row.prop(item, "neutral", text="")
        row.prop(item, "clamp", text="", icon="LOCKED" if item.clamp else "UNLOCKED")


class KINESICS_UL_bones(bpy.types.UIList):
    def draw_item(self, context, layout, data, item, icon, active_data, active_property, index=0, flt_flag=0):
        row = layout.row(align=True)
        row.prop(item, "source", text="")
        if data.armature is not None:
            row.prop_search(item, "bone", data.armature.data, "bones", text="")
        else:
            row.prop(item, "bone", text="")
        row.prop(item, "gain", text="")
        row.prop(item, "rest", text="")


# --- operators --------------------------------------------------------------------------------------------

class KINESICS_OT_retarget_detect(bpy.types.Operator):
    """Find the character's ARKit-style shape keys and the armature's head, neck, jaw and eye bones"""

    bl_idname = "kinesics.retarget_detect"
    bl_label = "Detect Mapping"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        s = settings(context)
        key = s.character.data.shape_keys if s.character is not None else None
        channels = retarget.auto_map(key.key_blocks.keys()) if key is not None else []
        bones = retarget.guess_bones(s.armature.data.bones.keys()) if s.armature is not None else []
        s.set_map(retarget.RetargetMap(channels, bones, s.jaw_open_from_pose, s.jaw_open_angle))
        if not channels and not bones:
            self.report({"WARNING"}, "No ARKit-style shape keys or head bones found; add rows by hand")
        else:
            self.report({"INFO"}, f"Mapped {len({c.channel for c in channels})} of 52 ARKit channels "
                                  f"and {len(bones)} bones")
        return {"FINISHED"}


class KINESICS_OT_retarget_row(bpy.types.Operator):
    """Add a row to, or remove the selected row from, the channel or bone mapping"""

    bl_idname = "kinesics.retarget_row"
    bl_label = "Edit Mapping Row"
    bl_options = {"REGISTER", "UNDO"}
    collection: EnumProperty(name="List", items=[("channels", "Channels", "The shape-key mapping"),
                                                  ("bones", "Bones", "The bone mapping")])
    action: EnumProperty(name="Action", items=[("ADD", "Add", "Add a row"),
                                               ("REMOVE", "Remove", "Remove the selected row")])

    @classmethod
    def description(cls, context, properties):
        row = "channel" if properties.collection == "channels" else "bone"
        return f"Add a {row} row" if properties.action == "ADD" else f"Remove the selected {row} row"

    def execute(self, context):
        s = settings(context)
        rows, index_name = getattr(s, self.collection), self.collection[:-1] + "_index"
        if self.action == "ADD":
            rows.add()
            setattr(s, index_name, len(rows) - 1)
        elif 0 <= getattr(s, index_name) < len(rows):
            rows.remove(getattr(s, index_name))
            setattr(s, index_name, min(getattr(s, index_name), len(rows) - 1))
        return {"FINISHED"}


class KINESICS_OT_retarget_preset_save(bpy.types.Operator, ExportHelper):
    """Save the channel and bone mapping as a JSON preset"""

    bl_idname = "kinesics.retarget_preset_save"
    bl_label = "Save Mapping Preset"
    filename_ext = ".json"
    filter_glob: StringProperty(default="*.json", options={"HIDDEN"})

    def execute(self, context):
        try:
            with open(self.filepath, "w") as fh:
                fh.write(settings(context).to_map().to_json())
        except OSError as err:
            self.report({"ERROR"}, f"{self.filepath}: cannot be written ({err.strerror})")
            return {"CANCELLED"}
        return {"FINISHED"}


class KINESICS_OT_retarget_preset_load(bpy.types.Operator, ImportHelper):
    """Load a channel and bone mapping saved as a JSON preset"""

    bl_idname = "kinesics.retarget_preset_load"
    bl_label = "Load Mapping Preset"
    bl_options = {"REGISTER", "UNDO"}
    filter_glob: StringProperty(default="*.json", options={"HIDDEN"})

    def execute(self, context):
        try:
            with open(self.filepath) as fh:
                mapping = retarget.RetargetMap.from_json(fh.read())
        except OSError as err:
            self.report({"ERROR"}, f"{self.filepath}: cannot be read ({err.strerror})")
            return {"CANCELLED"}
        except KinesicsError as err:
            self.report({"ERROR"}, f"{self.filepath}: {err}")
            return {"CANCELLED"}
        settings(context).set_map(mapping)
        return {"FINISHED"}


def _matched_fps(s: KINESICS_PG_retarget, capture: dict) -> float | None:
    """The frame rate a bake gives the scene (the capture's, with Match frame rate), or None to keep the scene's."""
    return float(capture["fps"]) if s.match_fps and "fps" in capture else None


def _bake(operator, context, path: str) -> set[str]:
    """Load `path` (a capture or a Live Link Face take) and bake it onto the chosen character."""
    s = settings(context)
    render = context.scene.render
    rate = render.fps, render.fps_base
    try:
        capture = retarget.load_source(bpy.path.abspath(path), s.livelink_fps or None)
        fps = _matched_fps(s, capture)
        if fps:
            render.fps, render.fps_base = max(1, round(fps)), max(1, round(fps)) / fps
        take = bpy.path.display_name_from_filepath(path) if s.new_action else None
        report = retarget.bake(capture, s.character, s.to_map(), s.armature, context.scene, take=take)
    except KinesicsError as err:
        render.fps, render.fps_base = rate  # a refused bake leaves the scene as it was
        operator.report({"ERROR"}, str(err))
        return {"CANCELLED"}
    operator.report({"WARNING"} if report.skipped else {"INFO"}, report.summary())
    return {"FINISHED"}


class KINESICS_OT_retarget_neutral(bpy.types.Operator):
    """Read the actor's rest face from the capture at the current frame: each shape-key channel's reading there
    counts as 0 from now on (full stays full), and each bone's rotation there as its rest pose. Go to a frame
    where the face is relaxed and looks ahead first"""

    bl_idname = "kinesics.retarget_neutral"
    bl_label = "Neutral from Frame"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        s = settings(context)
        return bool(s.source) and (len(s.channels) > 0 or len(s.bones) > 0)

    def execute(self, context):
        s, scene = settings(context), context.scene
        try:
            capture = retarget.load_source(bpy.path.abspath(s.source), s.livelink_fps or None)
            fps = _matched_fps(s, capture) or scene.render.fps / scene.render.fps_base
            row = retarget.capture_row_at(capture, fps, scene.frame_start, scene.frame_current)
            s.set_map(retarget.with_neutral(s.to_map(), capture, row, s.armature))
        except KinesicsError as err:
            self.report({"ERROR"}, str(err))
            return {"CANCELLED"}
        moved = sum(c.neutral > 0.05 for c in s.channels)
        self.report({"INFO"}, f"Neutral read from capture frame {int(capture['frame_index'][row])}; "
                              f"{moved} channels read above 0.05 there")
        return {"FINISHED"}


class KINESICS_OT_retarget_bake(bpy.types.Operator):
    """Bake the capture onto the character's shape keys and bones as plain keyframes"""

    bl_idname = "kinesics.retarget_bake"
    bl_label = "Bake onto Character"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        s = settings(context)
        return bool(s.source) and (s.character is not None or s.armature is not None)

    def execute(self, context):
        return _bake(self, context, settings(context).source)


class KINESICS_OT_export_fbx(bpy.types.Operator, ExportHelper):
    """Export the character (or the selected objects) to FBX with its shape-key and bone animation baked"""

    bl_idname = "kinesics.export_fbx"
    bl_label = "Export FBX"
    filename_ext = ".fbx"
    filter_glob: StringProperty(default="*.fbx", options={"HIDDEN"})

    def execute(self, context):
        s = settings(context)
        objects = [ob for ob in (s.character, s.armature) if ob is not None] or list(context.selected_objects)
        try:
            result = export_fbx.export_fbx(self.filepath, objects, context.scene)
        except KinesicsError as err:
            self.report({"ERROR"}, str(err))
            return {"CANCELLED"}
        for warning in result.warnings:
            self.report({"WARNING"}, warning)
        self.report({"INFO"}, f"Exported {', '.join(result.objects)} (frames {result.frames[0]}-{result.frames[1]}) "
                              f"to {os.path.basename(self.filepath)}")
        return {"FINISHED"}


class KINESICS_OT_livelink_import(bpy.types.Operator, ImportHelper):
    """Apply a Live Link Face CSV take (iPhone) to the character with the current mapping"""

    bl_idname = "kinesics.livelink_import"
    bl_label = "Import Live Link Face CSV"
    bl_options = {"REGISTER", "UNDO"}
    filter_glob: StringProperty(default="*.csv", options={"HIDDEN"})

    def execute(self, context):
        s = settings(context)
        s.source = self.filepath
        if s.character is None and s.armature is None:
            self.report({"WARNING"}, "Take selected as the capture; choose a character to bake it onto")
            return {"FINISHED"}
        return _bake(self, context, self.filepath)


class KINESICS_OT_livelink_export(bpy.types.Operator, ExportHelper):
    """Write the capture's ARKit curves and head and eye rotations as a Live Link Face CSV take"""

    bl_idname = "kinesics.livelink_export"
    bl_label = "Export Live Link Face CSV"
    filename_ext = ".csv"
    filter_glob: StringProperty(default="*.csv", options={"HIDDEN"})

    @classmethod
    def poll(cls, context):
        return bool(settings(context).source)

    def execute(self, context):
        s = settings(context)
        try:
            livelink.export_capture(retarget.load_source(bpy.path.abspath(s.source), s.livelink_fps or None),
                                    self.filepath)
        except KinesicsError as err:
            self.report({"ERROR"}, str(err))
            return {"CANCELLED"}
        except OSError as err:
            self.report({"ERROR"}, f"{self.filepath}: cannot be written ({err.strerror})")
            return {"CANCELLED"}
        return {"FINISHED"}


# --- panels -----------------------------------------------------------------------------------------------

def _rows(layout, list_id: str, data, prop: str, index: str) -> None:
    """An editable list with its add and remove buttons."""
    row = layout.row()
    row.template_list(list_id, "", data, prop, data, index, rows=4)
    col = row.column(align=True)
    for action, icon in (("ADD", "ADD"), ("REMOVE", "REMOVE")):
        op = col.operator("kinesics.retarget_row", text="", icon=icon)
        op.collection, op.action = prop, action


class KINESICS_PT_retarget(KinesicsPanel, bpy.types.Panel):
    bl_label = "Retarget"
    bl_idname = "KINESICS_PT_retarget"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context):
        s = settings(context)
        layout = self.layout
        layout.prop(s, "source")
        if s.source.lower().endswith(".csv"):
            layout.prop(s, "livelink_fps")
        layout.prop(s, "character")
        layout.prop(s, "armature")
        row = layout.row(align=True)
        row.operator("kinesics.retarget_detect", icon="VIEWZOOM")
        row.operator("kinesics.retarget_preset_load", text="", icon="FILEBROWSER")
        row.operator("kinesics.retarget_preset_save", text="", icon="FILE_TICK")
        layout.label(text=f"Shape keys ({len(s.channels)})")
        _rows(layout, "KINESICS_UL_channels", s, "channels", "channel_index")
        layout.operator("kinesics.retarget_neutral", icon="SHAPEKEY_DATA")
        layout.label(text=f"Bones ({len(s.bones)})")
        _rows(layout, "KINESICS_UL_bones", s, "bones", "bone_index")
        col = layout.column(align=True)
        col.prop(s, "jaw_open_from_pose")
        col.prop(s, "jaw_open_angle")
        col.prop(s, "match_fps")
        col.prop(s, "new_action")
        layout.operator("kinesics.retarget_bake", icon="KEYINGSET")



class KINESICS_PT_export(KinesicsPanel, bpy.types.Panel):
    bl_label = "Export"
    bl_idname = "KINESICS_PT_export"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context):
        col = self.layout.column(align=True)
        col.operator("kinesics.export_fbx", icon="EXPORT")
        col.operator("kinesics.livelink_export", icon="EXPORT")
        col.operator("kinesics.livelink_import", icon="IMPORT")


classes = (KINESICS_PG_channel, KINESICS_PG_bone, KINESICS_PG_retarget, KINESICS_UL_channels, KINESICS_UL_bones,
           KINESICS_OT_retarget_detect, KINESICS_OT_retarget_row,
           KINESICS_OT_retarget_preset_save, KINESICS_OT_retarget_preset_load, KINESICS_OT_retarget_neutral,
           KINESICS_OT_retarget_bake,
           KINESICS_OT_export_fbx, KINESICS_OT_livelink_import, KINESICS_OT_livelink_export,
           KINESICS_PT_retarget, KINESICS_PT_export)


def register() -> None:
    """Called by the package after it registers `classes`."""
    bpy.types.Scene.kinesics_retarget = PointerProperty(type=KINESICS_PG_retarget)


def unregister() -> None:
    del bpy.types.Scene.kinesics_retarget
