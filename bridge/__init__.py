"""Kinesics bridge: the capture worker process and the client Blender uses to talk to it over a local socket.

Client side (`protocol`, `client`, `accumulator`, `auth`, `errors`): standard library and numpy only, since it
runs inside Blender's Python, where `bridge` is a subpackage of the extension (it reaches `core` through
`_core`). Worker side (`worker`, `jobs`): runs as the top-level package `bridge` in the worker's own
environment with torch and MediaPipe (`python -m bridge.worker`).
"""

PROTOCOL_VERSION = 1
