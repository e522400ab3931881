"""Per-scene capture settings (`scene.kinesics`)."""
from __future__ import annotations

import bpy

from .rig import is_rig

MODEL_ITEMS = [
    ('FLAME', "FLAME", "The FLAME model file set in the preferences"),
    ('ICT', "ICT-FaceKit", "The ICT-FaceKit folder set in the preferences (ARKit-named shape keys)"),
    ('BUILTIN', "Built-in", "The head model that ships with the capture worker"),
]
TIME_ITEMS = [
    ('CAPTURE', "Capture Rate", "Set the scene's frame rate and range from the capture: one key per video frame"),
    ('SCENE', "Scene Rate", "Keep the scene's frame rate: keys sit at the exact capture times, in between "
                            "frames are interpolated"),
]


def _rig_poll(self, obj) -> bool:
    return is_rig(obj)


def _new_footage(self, context) -> None:
    """A neutral frame belongs to the footage it was read from: other footage starts without one."""
    self.use_neutral_frame = False


class KinesicsSceneSettings(bpy.types.PropertyGroup):
    footage: bpy.props.StringProperty(name="Footage", subtype='FILE_PATH', update=_new_footage,
                                      description="Video of the face to capture, or one frame of an image "
                                                  "sequence (shot_0001.png stands for every shot_NNNN.png beside it)")
    frame_start: bpy.props.IntProperty(name="Start", min=0, default=0,
                                       description="First video frame to capture (0 is the first)")
    frame_end: bpy.props.IntProperty(name="End", min=0, default=0,
                                     description="Video frame to stop before (0: to the end of the video)")
    stride: bpy.props.IntProperty(name="Every", min=1, default=1, description="Capture every n-th frame")
    model: bpy.props.EnumProperty(name="Head Model", items=MODEL_ITEMS, default='FLAME')
    use_lens: bpy.props.BoolProperty(name="Known Lens", default=False,
                                     description="Give the camera's focal length instead of estimating it from the "
                                                 "face (landmarks pin it down only weakly)")
    lens_mm: bpy.props.FloatProperty(name="Focal Length", min=1.0, soft_max=300.0, default=26.0, unit='CAMERA',
                                     description="35 mm-equivalent focal length of the footage's lens (a phone's "
                                                 "main camera is about 26 mm), as a Blender camera with a 36 mm "
                                                 "sensor reads it")
    faces: bpy.props.IntProperty(name="Faces", min=1, max=8, default=1,
                                 description="Faces to look for in each frame: 1 is fastest; with more, the capture "
                                             "keeps following the person it started with")
    smoothing: bpy.props.FloatProperty(name="Smoothing", min=0.0, soft_max=4.0, default=1.0, step=10,
                                       description="Temporal smoothing against jitter: 1 is the default, 2 twice as "
                                                   "smooth, 0.5 keeps faster motion, 0 is off. It never delays "
                                                   "the motion (it looks ahead as well as back)")
    expressiveness: bpy.props.FloatProperty(name="Expressiveness", min=0.1, soft_max=4.0, default=1.0, step=10,
                                            description="How readily the fit reads landmark motion as expression: "
                                                        "1 is the default, 2 or 4 give fuller expressions (with "
                                                        "more of the landmark noise in them), 0.5 steadier. Head "
                                                        "models only: the built-in rig follows the landmarks")
    use_neutral_frame: bpy.props.BoolProperty(name="Neutral Frame", default=False,
                                              description="Name a video frame where the face is at rest: the "
                                                          "actor's face shape and the ARKit calibration come from "
                                                          "it, so an expression held through the opening frames (a "
                                                          "smile) stays an expression instead of becoming the face")
    neutral_frame: bpy.props.IntProperty(name="Neutral Frame", min=0, default=0,
                                         description="Video frame (0 is the first) where the face is relaxed, the "
                                                     "mouth closed and the eyes open, looking ahead")
    use_face_from: bpy.props.BoolProperty(name="Actor's Face", default=False,
                                          description="Reuse the actor's face from an earlier capture instead of "
                                                      "finding it again: every take of the actor gets one face")
    face_from: bpy.props.StringProperty(name="Actor's Face", subtype='FILE_PATH',
                                        description="An earlier capture (.npz) of the same actor, with the same "
                                                    "head model (for the built-in rig, any), best one that shows "
                                                    "the face relaxed and turning")
    fps: bpy.props.FloatProperty(name="Frame Rate", min=0.0, soft_max=240.0, default=0.0,
                                 description="The footage's frame rate where it holds none (an image sequence, "
                                             "where 25 is assumed) or a wrong one; 0 reads it from the footage")
    mirror_pass: bpy.props.BoolProperty(name="Mirror Pass", default=False,
                                        description="Track every frame as it is and mirrored, in a second process, and "
                                                    "average the two, for twice the landmark work. Without it, "
                                                    "every other frame is tracked mirrored, which takes out most "
                                                    "of the same bias at 20 frames/s and more")
    time_mapping: bpy.props.EnumProperty(name="Timing", items=TIME_ITEMS, default='CAPTURE')
    show_footage: bpy.props.BoolProperty(name="Footage Behind Camera", default=True,
                                         description="Show the footage as the capture camera's background")
    footage_sound: bpy.props.BoolProperty(name="Footage Sound", default=True,
                                          description="Put the footage's sound in the scene's sequencer, in time "
                                                      "with the keys, to judge the lip sync as the scene plays")
    rig: bpy.props.PointerProperty(name="Rig", type=bpy.types.Object, poll=_rig_poll,
                                   description="Head rig the capture is keyed onto (a new one when empty)")


classes = (KinesicsSceneSettings,)


def register() -> None:
    bpy.types.Scene.kinesics = bpy.props.PointerProperty(type=KinesicsSceneSettings)


def unregister() -> None:
    del bpy.types.Scene.kinesics
