"""Operators (`kinesics.*`): thin wrappers that report errors; the work is in rig, animate and session."""
from __future__ import annotations

import bpy
import numpy as np
from bpy_extras.io_utils import ImportHelper

from ..core.errors import KinesicsError
from . import footage, models, preferences, session, takes
from .animate import apply_capture_file
from .rig import build_rig


def _object_mode(context) -> None:
    if context.mode != 'OBJECT' and context.active_object is not None:
        bpy.ops.object.mode_set(mode='OBJECT')


def _start_job(operator, context, start, *arguments) -> set[str]:
    """Start a worker job (`session.start` or `session.start_refit`, with its own `arguments`) with the
    preferences' worker, model and device; errors go to the status bar."""
    prefs = preferences.get(context)
    try:
        _object_mode(context)
        start(context.scene, preferences.worker_python(prefs),
              preferences.model_path(prefs, context.scene.kinesics.model), preferences.model_candidates(prefs),
              *arguments, device=prefs.device)
    except KinesicsError as err:
        operator.report({'ERROR'}, str(err))
        return {'CANCELLED'}
    return {'FINISHED'}


class KINESICS_OT_capture_start(bpy.types.Operator):
    """Capture the face in the footage with the worker and key it onto the rig as it streams in"""

    bl_idname = "kinesics.capture_start"
    bl_label = "Start Capture"
    bl_options = {'REGISTER'}

    @classmethod
    def poll(cls, context):
        return not session.SESSION.running

    def execute(self, context):
        return _start_job(self, context, session.start)


class KINESICS_OT_capture_refit(bpy.types.Operator, ImportHelper):
    """Fit a saved capture's landmarks again with the panel's model, lens and smoothing (no tracking: seconds),
    the actor's face shape from the whole clip, and key it onto the rig"""

    bl_idname = "kinesics.capture_refit"
    bl_label = "Refit Capture File"
    bl_options = {'REGISTER'}

    filename_ext = ".npz"
    filter_glob: bpy.props.StringProperty(default="*.npz", options={'HIDDEN'})

    @classmethod
    def poll(cls, context):
        return not session.SESSION.running

    def execute(self, context):
        return _start_job(self, context, session.start_refit, self.filepath)


class _FromShowingTake:
    """An operator that sets a capture setting from the take the rig shows (`read`: set it, say what was set)."""

    bl_options = {'REGISTER', 'UNDO'}

    @classmethod
    def poll(cls, context):
        return context.scene.kinesics.rig is not None and not session.SESSION.running

    def execute(self, context):
        try:
            message = self.read(context, context.scene.kinesics)
        except KinesicsError as err:
            self.report({'ERROR'}, str(err))
            return {'CANCELLED'}
        self.report({'INFO'}, message)
        return {'FINISHED'}


class KINESICS_OT_capture_neutral(_FromShowingTake, bpy.types.Operator):
    """Name the footage frame shown at the current frame as the actor's rest face (Neutral Frame): go to a frame
    of the rig's take where the face is relaxed, mouth closed, eyes open and looking ahead, press it, then Refit"""

    bl_idname = "kinesics.capture_neutral"
    bl_label = "Neutral from Frame"

    def read(self, context, settings) -> str:
        frame = takes.footage_frame_at(context.scene, settings.rig, context.scene.frame_current)
        settings.use_neutral_frame, settings.neutral_frame = True, frame
        return f"Neutral frame: footage frame {frame}; Refit (or capture again) to use it"


class KINESICS_OT_face_from_take(_FromShowingTake, bpy.types.Operator):
    """Reuse the actor's face from the capture of the take the rig shows: later captures and refits of this actor
    keep that face"""

    bl_idname = "kinesics.face_from_take"
    bl_label = "Face from Take"

    def read(self, context, settings) -> str:
        path = takes.showing_capture(settings.rig, "press this again")
        settings.use_face_from, settings.face_from = True, path
        return f"Actor's face: from {bpy.path.basename(path)}; captures and refits now keep it"


class KINESICS_OT_capture_cancel(bpy.types.Operator):
    """Stop the capture; the frames keyed so far are kept"""

    bl_idname = "kinesics.capture_cancel"
    bl_label = "Cancel Capture"

    @classmethod
    def poll(cls, context):
        return session.SESSION.running

    def execute(self, context):
        session.cancel()
        return {'FINISHED'}


class KINESICS_OT_import_rig(bpy.types.Operator):
    """Import the head model chosen in the Kinesics panel as a rig: mesh, shape keys and armature"""

    bl_idname = "kinesics.import_rig"
    bl_label = "Import Head Rig"
    bl_options = {'REGISTER', 'UNDO'}

    filepath: bpy.props.StringProperty(name="Model", subtype='FILE_PATH', options={'SKIP_SAVE'},
                                       description="Head-model file or folder (empty: the one chosen in the panel)")

    def execute(self, context):
        try:
            path = self.filepath or preferences.model_path(preferences.get(context), context.scene.kinesics.model)
            if path is None:
                raise KinesicsError("The built-in model comes with a capture: apply a capture made with it instead.")
            data = models.load(path)
            _object_mode(context)
            rig = build_rig(data, np.zeros(0), context.scene.collection)  # the mean identity
        except (KinesicsError, ValueError) as err:
            self.report({'ERROR'}, str(err))
            return {'CANCELLED'}
        context.scene.kinesics.rig = rig
        self.report({'INFO'}, f"Imported {rig.name}: {data.n_vertices} vertices, {data.n_expression} expressions")
        return {'FINISHED'}


class KINESICS_OT_apply_capture(bpy.types.Operator, ImportHelper):
    """Key a saved capture file (.npz) onto the rig; no worker needed"""

    bl_idname = "kinesics.apply_capture"
    bl_label = "Apply Capture File"
    bl_options = {'REGISTER', 'UNDO'}

    filename_ext = ".npz"
    filter_glob: bpy.props.StringProperty(default="*.npz", options={'HIDDEN'})

    def execute(self, context):
        settings = context.scene.kinesics
        try:
            _object_mode(context)
            track = apply_capture_file(context.scene, self.filepath, settings.rig,
                                       preferences.model_candidates(preferences.get(context)), settings.time_mapping)
        except (KinesicsError, ValueError) as err:
            self.report({'ERROR'}, str(err))
            return {'CANCELLED'}
        settings.rig = track.rig.armature
        video = bpy.path.abspath(settings.footage)
        takes.note(track.rig.armature, footage=video)
        takes.retarget_from(context.scene, self.filepath)
        if video:
            footage.present(context.scene, track.camera, video, settings.show_footage, settings.footage_sound)
        self.report({'INFO'}, f"Keyed {track.rig.armature.name} from {bpy.path.basename(self.filepath)}")
        return {'FINISHED'}


class KINESICS_OT_notify(bpy.types.Operator):
    """Show a message in the status bar (used by the capture timer)"""

    bl_idname = "kinesics.notify"
    bl_label = "Kinesics Message"
    bl_options = {'INTERNAL'}

    level: bpy.props.EnumProperty(items=[('INFO', "Info", ""), ('WARNING', "Warning", ""), ('ERROR', "Error", "")])
    message: bpy.props.StringProperty()

    def execute(self, context):
        self.report({self.level}, self.message)
        return {'FINISHED'}


classes = (KINESICS_OT_capture_start, KINESICS_OT_capture_refit, KINESICS_OT_capture_neutral,
           KINESICS_OT_face_from_take,
           KINESICS_OT_capture_cancel, KINESICS_OT_import_rig, KINESICS_OT_apply_capture, KINESICS_OT_notify)
