"""Kinesics core: head models, landmark embedding and the capture engine (no bpy)."""
__version__ = "0.1.0"
