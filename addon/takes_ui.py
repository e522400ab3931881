"""The rig's takes in the Kinesics tab: a list, Show and Delete (the logic is in takes)."""
from __future__ import annotations

import os

import bpy
from bpy.props import IntProperty

from ..core.errors import KinesicsError
from . import footage, models, preferences, takes
from .panels import KinesicsPanel
from .rig import is_rig, reshape_rig


def _rig(context) -> bpy.types.Object | None:
    rig_obj = context.scene.kinesics.rig
    return rig_obj if is_rig(rig_obj) else None


class KINESICS_UL_takes(bpy.types.UIList):
    def draw_item(self, context, layout, data, item, icon, active_data, active_propname, index):
        showing = takes.current(data.id_data) == index
        row = layout.row(align=True)
        row.prop(item, "name", text="", emboss=False, icon='CHECKMARK' if showing else 'ACTION')
        row.label(text=f"{item.frame_start}-{item.frame_end}")


def _reshaper(context, rig_obj: bpy.types.Object):
    """reshape(shape) for takes.use: the rig's model (from its own record or the preferences' paths)."""
    candidates = preferences.model_candidates(preferences.get(context))
    header = {"model": rig_obj.get("kinesics_model_source", ""), "model_hash": rig_obj.get("kinesics_model_hash", "")}
    return lambda shape: reshape_rig(rig_obj, models.for_capture(header, candidates), shape)


class KINESICS_OT_take_show(bpy.types.Operator):
    """Show the selected take on the rig: its keys, camera, frame rate and range, face shape and footage; the
    Retarget panel's source becomes its capture file"""

    bl_idname = "kinesics.take_show"
    bl_label = "Show Take"
    bl_options = {'REGISTER', 'UNDO'}

    index: IntProperty(name="Take", default=-1, options={'SKIP_SAVE'},
                       description="Index of the take (-1: the one selected in the list)")

    @classmethod
    def poll(cls, context):
        rig_obj = _rig(context)
        return rig_obj is not None and len(rig_obj.kinesics.takes) > 0

    def execute(self, context):
        rig_obj = _rig(context)
        index = self.index if self.index >= 0 else rig_obj.kinesics.active_take
        if not 0 <= index < len(rig_obj.kinesics.takes):
            self.report({'ERROR'}, f"{rig_obj.name} has no take {index}")
            return {'CANCELLED'}
        scene, settings = context.scene, context.scene.kinesics
        try:
            take = takes.use(scene, rig_obj, index, _reshaper(context, rig_obj))
        except (KinesicsError, ValueError) as err:
            self.report({'ERROR'}, f"Take '{rig_obj.kinesics.takes[index].name}' keeps the rig's face shape: {err}")
            take = takes.use(scene, rig_obj, index)
        video = bpy.path.abspath(take.footage)
        camera = rig_obj.get("kinesics_camera")
        if video and os.path.exists(video) and camera is not None:
            footage.present(scene, camera, video, settings.show_footage, settings.footage_sound)
        takes.retarget_from(scene, take.capture_file)
        scene.frame_set(scene.frame_start)
        return {'FINISHED'}


class KINESICS_OT_take_delete(bpy.types.Operator):
    """Delete the selected take and its actions (its capture file stays on disk)"""

    bl_idname = "kinesics.take_delete"
    bl_label = "Delete Take"
    bl_options = {'REGISTER', 'UNDO'}

    @classmethod
    def poll(cls, context):
        rig_obj = _rig(context)
        return rig_obj is not None and 0 <= rig_obj.kinesics.active_take < len(rig_obj.kinesics.takes)

    def execute(self, context):
        rig_obj = _rig(context)
        name = rig_obj.kinesics.takes[rig_obj.kinesics.active_take].name
        takes.remove(rig_obj, rig_obj.kinesics.active_take)
        self.report({'INFO'}, f"Deleted take '{name}'")
        return {'FINISHED'}


class KINESICS_PT_takes(KinesicsPanel, bpy.types.Panel):
    bl_label = "Takes"
    bl_parent_id = "KINESICS_PT_rig"

    @classmethod
    def poll(cls, context):
        return _rig(context) is not None

    def draw(self, context):
        rig_obj = _rig(context)
        row = self.layout.row()
        row.template_list("KINESICS_UL_takes", "", rig_obj.kinesics, "takes", rig_obj.kinesics, "active_take", rows=3)
        col = row.column(align=True)
        col.operator("kinesics.take_show", text="", icon='PLAY')
        col.operator("kinesics.take_delete", text="", icon='X')


classes = (KINESICS_UL_takes, KINESICS_OT_take_show, KINESICS_OT_take_delete, KINESICS_PT_takes)
