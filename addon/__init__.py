"""The Kinesics Blender extension: sidebar tab "Kinesics", head-rig import, capture keyframing, and the
`blender --command kinesics` command line.

Each module in MODULES holds a `classes` tuple and optionally register()/unregister() for what classes
cannot express (scene properties, timers). Adding a module is a one-line edit of MODULES.
"""
from __future__ import annotations

import bpy

from . import command_line, operators, panels, preferences, properties, retarget_ui, session, takes, takes_ui

MODULES = (
    preferences,
    properties,
    takes,
    operators,
    panels,
    takes_ui,
    retarget_ui,
    command_line,
)


def register() -> None:
    for module in MODULES:
        for cls in getattr(module, "classes", ()):
            bpy.utils.register_class(cls)
        if hasattr(module, "register"):
            module.register()


def unregister() -> None:
    session.shutdown()
    for module in reversed(MODULES):
        if hasattr(module, "unregister"):
            module.unregister()
        for cls in reversed(getattr(module, "classes", ())):
            bpy.utils.unregister_class(cls)
