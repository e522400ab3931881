"""The footage beside the keyed rig: its picture behind the capture camera and its sound in the scene's
sequencer, both in time with the keys, so that an animator judges the fit and the lip sync as they play."""
from __future__ import annotations

import bpy

from .animate import FIRST_FRAME
from .camera_space import show_footage

SOUND_TAG = "kinesics_footage"  # marks the sound strip a capture placed, so the next capture replaces it


def strips(scene: bpy.types.Scene):
    """The strips of `scene`'s sequencer (made when it has none): 'strips' since Blender 4.4, 'sequences' before."""
    editor = scene.sequence_editor or scene.sequence_editor_create()
    return editor.strips if hasattr(editor, "strips") else editor.sequences


def add_sound(scene: bpy.types.Scene, video: str, first_frame: int = FIRST_FRAME):
    """Put `video`'s sound in `scene`'s sequencer with the footage's start at scene frame `first_frame`,
    replacing the one an earlier capture placed. Returns the sound strip, or None when the footage is silent."""
    placed = strips(scene)
    for old in [s for s in placed if s.get(SOUND_TAG)]:
        placed.remove(old)
    channel = max((s.channel for s in placed), default=0) + 1  # above the user's own strips
    strip = placed.new_sound(name=f"{bpy.path.display_name_from_filepath(video)} sound", filepath=video,
                             channel=channel, frame_start=first_frame)
    if strip.sound.samplerate == 0:  # a video without a sound track still loads, as a silent sound
        sound = strip.sound
        placed.remove(strip)
        if sound.users == 0:
            bpy.data.sounds.remove(sound)
        return None
    strip[SOUND_TAG] = True
    return strip


def present(scene: bpy.types.Scene, camera: bpy.types.Object, video: str, picture: bool, sound: bool) -> None:
    """Show the footage behind `camera` and/or play its sound with the scene, as the user chose."""
    if picture:
        show_footage(camera, video, FIRST_FRAME)
    if sound:
        add_sound(scene, video)
