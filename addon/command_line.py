"""`blender --command kinesics export|capture ...`: a capture baked onto a character (or onto the capture's own
head rig) and written to FBX, or a Live Link Face CSV, with no UI: for batches and pipelines. `capture` first runs
`kinesics capture` with the worker's Python on footage. The steps are the Retarget and Export panels'
(`retarget`, `animate`, `export_fbx`); this module only parses, picks and reports."""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import bpy

from ..core import livelink
from ..core.errors import KinesicsError, ModelFileError
from ..core.paths import outputs_named_after
from . import animate, export_fbx, preferences, retarget

COMMAND = "kinesics"
_handle = None


class CommandError(KinesicsError, ValueError):
    """A command line that asks for something the files given cannot do."""

    code = "command"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"blender --command {COMMAND}",
                                     description="Kinesics in Blender without its UI.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    export = commands.add_parser(
        "export", help="bake a capture onto a character (or its own head rig) and write FBX or Live Link Face CSV",
        description="Bake SOURCE onto the character in --character (its ARKit-style shape keys and head, neck, jaw "
                    "and eye bones, found by name unless --mapping gives a preset), or onto a head rig built from "
                    "the capture itself, and write it to OUTPUT (.fbx); or write SOURCE as a Live Link Face take "
                    "(.csv).")
    export.add_argument("source", metavar="SOURCE", nargs="+",
                        help="a Kinesics capture (.npz) or a Live Link Face take (.csv); with several, OUTPUT and "
                             "--save name folders, each output is named after its source, and a source that fails "
                             "is reported while the others go on")
    _output_arguments(export)
    export.add_argument("--model", action="append", default=[], metavar="PATH",
                        help="a head-model file to look for the capture's model in, before those the extension's "
                             "preferences name (may be given more than once)")
    export.add_argument("--take-rate", type=float, metavar="FPS",
                        help="frame rate of a Live Link Face take (default: read from its timecodes)")
    capture = commands.add_parser(
        "capture", help="capture videos with the worker, then export each as export does",
        description="Run `kinesics capture` on VIDEO with the worker's Python, keep each capture file beside its "
                    "output (same name, .npz), then bake and write it as the export command does. Arguments after "
                    "-- go to kinesics capture as they are (for example -- --lens-mm 26 --smoothing 2).")
    capture.add_argument("video", metavar="VIDEO", nargs="+",
                         help="the footage (a video, or one frame of an image sequence); with several, OUTPUT and "
                              "--save name folders")
    _output_arguments(capture)
    capture.add_argument("--model", metavar="PATH",
                         help="the head model to capture with (FLAME .pkl or ICT-FaceKit; default: the built-in rig "
                              "made from the actor's face)")
    capture.add_argument("--worker-python", metavar="PATH",
                         help="the Python of an environment with the worker installed (default: the extension's "
                              "Worker Python preference)")
    return parser


def _output_arguments(command: argparse.ArgumentParser) -> None:
    """Where the result goes and what it is baked onto: the same for export and capture."""
    command.add_argument("-o", "--output", required=True, metavar="OUTPUT",
                         help="OUT.fbx (the character, or the capture's head rig) or OUT.csv (a Live Link Face "
                              "take); a folder for several sources")
    command.add_argument("--format", choices=("fbx", "csv"), default="fbx",
                         help="what to write into an OUTPUT folder (default fbx)")
    command.add_argument("--character", metavar="FILE.blend",
                         help="a .blend file holding the character to bake onto (without it: the capture's own head "
                              "rig, built as the Head Rig panel builds it)")
    command.add_argument("--mesh", metavar="NAME", help="the character's mesh (default: the mesh whose shape keys "
                                                        "match the most ARKit channels)")
    command.add_argument("--armature", metavar="NAME",
                         help="the character's armature (default: the one deforming or parenting the mesh)")
    command.add_argument("--mapping", metavar="PRESET.json",
                         help="a mapping preset saved from the Retarget panel (default: found by name)")
    command.add_argument("--neutral-frame", type=int, metavar="N",
                         help="a capture frame (footage numbering) where the actor's face is at rest: each "
                              "channel's reading and each bone's rotation there count as rest, as Neutral from Frame "
                              "does")
    command.add_argument("--save", metavar="OUT.blend",
                         help="also save the baked scene as a .blend file (a folder for several sources)")


def execute(argv: list[str]) -> int:
    """Blender calls this with the arguments after `--command kinesics`; returns the exit status."""
    argv = list(argv)
    passed_on = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as stop:  # --help, or a usage error argparse has already printed
        return stop.code if isinstance(stop.code, int) else 1
    try:
        if args.command == "export" and passed_on:
            raise CommandError(f"export takes no arguments after -- ({' '.join(passed_on)})")
        if args.command == "capture":
            jobs = capture_jobs(args)
            captured = captured_files(args, jobs, passed_on)
        else:
            jobs = export_jobs(args.source, args)
            captured = [source for source, _, _ in jobs]
    except KinesicsError as err:
        print(f"kinesics: error: {err}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        print("kinesics: cancelled", file=sys.stderr, flush=True)
        return 130
    failed = len(jobs) - len(captured)  # a capture that failed: kinesics capture has said why
    for source, output, save in jobs:
        if source not in captured:
            continue
        try:
            for line in export(args, source, output, save):
                print(line, flush=True)
        except KinesicsError as err:
            failed += 1
            where = f"{source}: " if len(jobs) > 1 else ""
            print(f"kinesics: error: {where}{err}", file=sys.stderr, flush=True)
    if failed and len(jobs) > 1:
        print(f"kinesics: {failed} of {len(jobs)} sources failed", file=sys.stderr, flush=True)
    return 1 if failed else 0


def export_jobs(sources: list[str], args: argparse.Namespace) -> list[tuple[str, str, str | None]]:
    """(source, output, .blend to save or None) per source: OUTPUT itself (.fbx or .csv) for one; with several,
    OUTPUT and --save are folders (made when missing), each file named after its source."""
    output = os.path.abspath(args.output)
    save = os.path.abspath(args.save) if args.save else None
    csv = os.path.splitext(output)[1].lower() == ".csv" if len(sources) == 1 else args.format == "csv"
    if csv and args.character:
        raise CommandError("a Live Link Face take holds the curves, not a character: leave --character out, or "
                           "write .fbx")
    if len(sources) == 1:
        if os.path.splitext(output)[1].lower() not in (".fbx", ".csv"):
            raise CommandError(f"{output}: name an .fbx file (the animated character or head rig) or a .csv file "
                               "(a Live Link Face take)")
        return [(os.path.abspath(sources[0]), output, save)]
    outputs = outputs_named_after(sources, Path(output), f".{args.format}", "source")
    saves = [os.path.join(save, f"{out.stem}.blend") if save else None for out in outputs]
    for folder in (output, save):
        if folder is None:
            continue
        if os.path.splitext(folder)[1].lower() in (".fbx", ".csv", ".blend"):
            raise CommandError(f"{folder}: with several sources, -o and --save name folders, not files")
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as err:
            raise CommandError(f"{folder}: cannot be made a folder ({err.strerror})") from None
    return [(os.path.abspath(s), str(out), blend) for s, out, blend in zip(sources, outputs, saves)]


def capture_jobs(args: argparse.Namespace) -> list[tuple[str, str, str | None]]:
    """As `export_jobs`, each source the capture file that goes beside its output."""
    jobs = export_jobs(args.video, args)
    return [(os.path.splitext(output)[0] + ".npz", output, save) for _, output, save in jobs]


def captured_files(args: argparse.Namespace, jobs: list[tuple[str, str, str | None]], passed_on: list[str]
                   ) -> list[str]:
    """Run `kinesics capture` with the worker's Python on the videos, into the files `capture_jobs` named (`jobs`);
    returns those it wrote. Its progress and errors go to this terminal as it prints them."""
    from ..bridge.client import worker_environment

    python = args.worker_python or preferences.worker_python(preferences.get())
    target = jobs[0][0] if len(jobs) == 1 else os.path.dirname(jobs[0][0])
    before = {path: _stamp(path) for path, _, _ in jobs}  # a capture left from an earlier run is not this run's
    command = [python, "-m", "core.cli", "capture", *[os.path.abspath(v) for v in args.video], "-o", target]
    command += (["--model", args.model] if args.model else []) + passed_on
    try:
        process = subprocess.Popen(command, env=worker_environment())
    except OSError as err:
        raise CommandError(f"cannot run the worker's Python {python!r} ({err.strerror}): set Worker Python in the "
                           "Kinesics preferences, or give it with --worker-python") from None
    while True:
        try:
            code = process.wait()
            break
        except KeyboardInterrupt:  # Ctrl-C reached the capture too: it saves the frames it finished, then stops
            continue
    if code == 130:
        raise KeyboardInterrupt
    captured = [path for path, _, _ in jobs if _stamp(path) not in (None, before[path])]
    if not captured:
        raise CommandError("nothing was captured (kinesics capture said why above)")
    return captured


def _stamp(path: str) -> tuple[int, int] | None:
    """A file's modification time and size, None when there is none."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_mtime_ns, info.st_size


def export(args: argparse.Namespace, source_path: str, output: str, save: str | None) -> list[str]:
    """`source_path` exported to `output` as `args` ask (and the scene saved to `save`); returns the lines to
    print. Raises KinesicsError."""
    kind = os.path.splitext(output)[1].lower()  # .fbx or .csv (see export_jobs)
    source = retarget.load_source(source_path, vars(args).get("take_rate"))
    if kind == ".csv":
        _writable(livelink.export_capture, source, output)
        return [f"wrote {output}: {len(source['frame_index'])} frames as a Live Link Face take"]
    if args.character:
        lines, objects = _bake_character(args, source)
    elif "shape" in source:
        bpy.ops.wm.read_homefile(use_empty=True)  # each rig in a scene of its own (a batch builds several)
        try:
            track = animate.apply_capture_file(bpy.context.scene, source_path, None, _model_candidates(args))
        except ModelFileError as err:
            raise CommandError(f"{err} Or give the model's file with --model PATH.") from None
        lines, objects = [f"built {track.rig.armature.name} from {os.path.basename(source_path)}"], [track.rig.armature]
    else:
        raise CommandError(f"{source_path}: a Live Link Face take carries no head rig: give --character FILE.blend "
                           "to bake it onto")
    report = _writable(export_fbx.export_fbx, output, objects, bpy.context.scene)
    lines += [f"warning: {w}" for w in report.warnings]
    lines.append(f"exported {', '.join(report.objects)} (frames {report.frames[0]}-{report.frames[1]}) to {output}")
    if save:
        _writable(lambda: bpy.ops.wm.save_as_mainfile(filepath=save, copy=True))
        lines.append(f"saved {save}")
    return lines


def _model_candidates(args: argparse.Namespace) -> list[str]:
    """Where to look for a capture's head model: the files the command names (export: any number to look in;
    capture: the one it captured with), then those the extension's preferences name, as the Head Rig panel looks."""
    given = args.model if isinstance(args.model, list) else [args.model] if args.model else []
    try:
        prefs = preferences.get()
    except KeyError:  # the module loaded without the extension enabled: no preferences to read
        return given
    return given + preferences.model_candidates(prefs)


def _writable(write, *args):
    """`write(*args)`, an unwritable path reported as the command's error."""
    try:
        return write(*args)
    except (OSError, RuntimeError) as err:
        raise CommandError(f"cannot write the output ({getattr(err, 'strerror', None) or err})") from None


def _bake_character(args: argparse.Namespace, source: dict) -> tuple[list[str], list[bpy.types.Object]]:
    """Open --character, pick its mesh and armature, bake `source` onto them at the capture's frame rate."""
    path = os.path.abspath(args.character)
    if not os.path.isfile(path):
        raise CommandError(f"{args.character}: no such .blend file")
    try:
        bpy.ops.wm.open_mainfile(filepath=path)
    except RuntimeError as err:
        raise CommandError(f"{args.character}: cannot be opened as a .blend file ({err})") from None
    mesh = _mesh(args.mesh, path)
    armature = _armature(args.armature, mesh)
    mapping = _mapping(args.mapping, mesh, armature)
    if args.neutral_frame is not None:
        mapping = retarget.with_neutral(mapping, source, _row(source, args.neutral_frame), armature)
    scene = bpy.context.scene
    fps = float(source["fps"])
    scene.render.fps = max(1, round(fps))
    scene.render.fps_base = scene.render.fps / fps  # as the panel's Match frame rate: a key on every frame
    report = retarget.bake(source, mesh, mapping, armature, scene)
    return [report.summary()], [ob for ob in (mesh, armature) if ob is not None]


def _mesh(name: str | None, path: str) -> bpy.types.Object:
    """The named mesh, or the one whose shape keys match the most ARKit channels."""
    if name:
        ob = bpy.data.objects.get(name)
        if ob is None or ob.type != "MESH":
            meshes = ", ".join(sorted(o.name for o in bpy.data.objects if o.type == "MESH")) or "none"
            raise CommandError(f"{path} holds no mesh named {name!r} (its meshes: {meshes})")
        return ob
    scored = [(len({c.channel for c in retarget.auto_map(o.data.shape_keys.key_blocks.keys())}), o.name, o)
              for o in bpy.data.objects if o.type == "MESH" and o.data.shape_keys is not None]
    scored = [s for s in scored if s[0] > 0]
    if not scored:
        raise CommandError(f"{path} holds no mesh with ARKit-style shape keys (such as eyeBlinkLeft or eyeBlink_L): "
                           "name the mesh with --mesh and give a mapping preset with --mapping")
    return min(scored, key=lambda s: (-s[0], s[1]))[2]  # the most channels; by name between equals


def _armature(name: str | None, mesh: bpy.types.Object) -> bpy.types.Object | None:
    """The named armature, or the one deforming or parenting `mesh` (None when there is none)."""
    if name:
        ob = bpy.data.objects.get(name)
        if ob is None or ob.type != "ARMATURE":
            raise CommandError(f"the character's file holds no armature named {name!r}")
        return ob
    rigs = [m.object for m in mesh.modifiers if m.type == "ARMATURE" and m.object is not None]
    if mesh.parent is not None and mesh.parent.type == "ARMATURE":
        rigs.append(mesh.parent)
    return rigs[0] if rigs else None


def _mapping(preset: str | None, mesh: bpy.types.Object, armature: bpy.types.Object | None
             ) -> retarget.RetargetMap:
    """The preset, or the channels and bones found by name (Detect Mapping)."""
    if preset:
        try:
            with open(preset) as fh:
                return retarget.RetargetMap.from_json(fh.read())
        except OSError as err:
            raise CommandError(f"{preset}: cannot be read ({err.strerror})") from None
    keys = mesh.data.shape_keys.key_blocks.keys() if mesh.data.shape_keys is not None else []
    bones = retarget.guess_bones(armature.data.bones.keys()) if armature is not None else []
    return retarget.RetargetMap(retarget.auto_map(keys), bones)


def _row(source: dict, frame: int) -> int:
    """The capture row of footage frame `frame`."""
    rows = [i for i, f in enumerate(source["frame_index"]) if int(f) == frame]
    if not rows:
        first, last = int(source["frame_index"][0]), int(source["frame_index"][-1])
        raise CommandError(f"--neutral-frame {frame} is not a frame of the capture (it holds frames {first}-{last})")
    return rows[0]


def register() -> None:
    global _handle
    _handle = bpy.utils.register_cli_command(COMMAND, execute)


def unregister() -> None:
    global _handle
    if _handle is not None:
        bpy.utils.unregister_cli_command(_handle)
        _handle = None
