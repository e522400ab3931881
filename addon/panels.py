"""The "Kinesics" sidebar tab of the 3D viewport: capture from video, and the head rig."""
from __future__ import annotations

import bpy

from . import session


class KinesicsPanel:
    bl_space_type = 'VIEW_3D'
    bl_region_type = 'UI'
    bl_category = "Kinesics"


def _status_line(s: session.Session) -> str:
    eta = f", {s.eta_s:.0f} s left" if s.eta_s is not None else ""
    return f"{s.done}/{s.total or '?'} frames, {s.fps:.1f} frames/s{eta}"


def _optional_row(layout, settings, name: str, operator: str, icon: str) -> None:
    """A setting used only when ticked (`use_<name>`), with the operator that reads it from the rig's take."""
    row = layout.row(align=True)
    row.prop(settings, f"use_{name}")
    sub = row.row(align=True)
    sub.active = getattr(settings, f"use_{name}")
    sub.prop(settings, name, text="")
    row.operator(operator, text="", icon=icon)


class KINESICS_PT_capture(KinesicsPanel, bpy.types.Panel):
    bl_label = "Capture from Video"

    def draw(self, context):
        layout = self.layout
        settings = context.scene.kinesics
        s = session.SESSION
        col = layout.column()
        col.enabled = not s.running
        col.prop(settings, "footage")
        col.prop(settings, "fps")
        row = col.row(align=True)
        row.prop(settings, "frame_start")
        row.prop(settings, "frame_end")
        col.prop(settings, "stride")
        col.prop(settings, "model")
        row = col.row(align=True)
        row.prop(settings, "use_lens")
        sub = row.row(align=True)
        sub.active = settings.use_lens
        sub.prop(settings, "lens_mm", text="")
        _optional_row(col, settings, "neutral_frame", "kinesics.capture_neutral", 'EYEDROPPER')
        _optional_row(col, settings, "face_from", "kinesics.face_from_take", 'USER')
        col.prop(settings, "faces")
        col.prop(settings, "smoothing")
        col.prop(settings, "expressiveness")
        col.prop(settings, "mirror_pass")
        col.prop(settings, "time_mapping")
        col.prop(settings, "show_footage")
        col.prop(settings, "footage_sound")

        if s.running:
            layout.progress(factor=s.progress, type='BAR', text=_status_line(s))
            layout.label(text=s.message, icon='TIME')
            layout.operator("kinesics.capture_cancel", icon='CANCEL')
            return
        row = layout.row(align=True)
        row.operator("kinesics.capture_start", icon='PLAY')
        row.operator("kinesics.capture_refit", text="Refit", icon='FILE_REFRESH')
        if s.state == "idle":
            return
        box = layout.box()
        icon = {'done': 'CHECKMARK', 'cancelled': 'INFO'}.get(s.state, 'ERROR')
        # Long messages (what to do) wrap over several lines.
        for i, line in enumerate(_wrap(s.message, 48)):
            box.label(text=line, icon=icon if i == 0 else 'BLANK1')
        if s.saved_path:
            box.label(text=f"Saved: {bpy.path.basename(s.saved_path)}", icon='FILE')


def _wrap(text: str, width: int) -> list[str]:
    lines, line = [], ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return lines + [line] if line else lines or [""]


class KINESICS_PT_rig(KinesicsPanel, bpy.types.Panel):
    bl_label = "Head Rig"

    def draw(self, context):
        layout = self.layout
        settings = context.scene.kinesics
        layout.prop(settings, "rig")
        layout.operator("kinesics.import_rig", icon='ARMATURE_DATA')
        layout.operator("kinesics.apply_capture", icon='IMPORT')


classes = (KINESICS_PT_capture, KINESICS_PT_rig)
