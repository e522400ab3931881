"""The `kinesics` command line: capture footage to a capture file (and a preview video), fit one again, export
one as a Live Link Face take, run the Blender add-on's worker, install ICT-FaceKit.

Heavy modules (torch, MediaPipe, the worker) are imported only by the command that needs them, so
`kinesics --help` answers at once.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, TextIO

from . import __version__
from .errors import CaptureCancelled, FootageError, KinesicsError
from .paths import outputs_named_after

EXIT_ERROR = 1
EXIT_CANCELLED = 130  # what shells report for a process ended by Ctrl-C
FBX_HINT = ("FBX is written by Blender, with the Kinesics extension enabled: blender --command kinesics export "
            "CAPTURE.npz -o OUT.fbx [--character CHARACTER.blend]")


def _at_least_one(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {value}")
    return value


def _not_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {value}")
    return value


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be above 0, not {text}")
    return value


def _not_negative(text: str) -> float:
    value = float(text)
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {text}")
    return value


def _delegate_worker(argv: list[str]) -> int:
    from bridge.worker import main as worker_main
    return worker_main(argv)


def _delegate_install_ict(argv: list[str]) -> int:
    from .ict_install import main as install_main
    return install_main(argv)


# Subcommands whose own parsers take every argument after their name.
DELEGATES = {"worker": (_delegate_worker, "run the capture worker the Blender add-on talks to"),
             "install-ict": (_delegate_install_ict, "install ICT-FaceKit (zip, folder or URL) as a head model")}


def _fit_arguments(command: argparse.ArgumentParser) -> None:
    """The arguments `capture` and `refit` share: output, model, device, lens, smoothing, expressiveness, neutral
    frame and a face shape from an earlier capture."""
    command.add_argument("-o", "--output", required=True, metavar="OUT.npz", help="the capture file to write")
    command.add_argument("--model", metavar="MODEL", default=None,
                         help="head model: FLAME generic_model.pkl, ICT-FaceKit folder or .npz "
                              "(default: the built-in rig made from the actor's own face)")
    command.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where the fit runs (default cpu)")
    lens = command.add_mutually_exclusive_group()
    lens.add_argument("--focal-px", type=_positive, default=None, metavar="F",
                      help="the lens's focal length in pixels, when known (default: estimated from the footage)")
    lens.add_argument("--lens-mm", type=_positive, default=None, metavar="MM",
                      help="the lens's 35 mm-equivalent focal length, when known (a phone's main camera is about "
                           "26; read as Blender's camera reads it: a 36 mm sensor across the longer side)")
    command.add_argument("--smoothing", type=_not_negative, default=1.0, metavar="S",
                         help="temporal smoothing against jitter (default 1; 2 is twice as smooth, 0.5 keeps faster "
                              "motion, 0 turns it off); zero-lag, so smoothing never delays the motion")
    command.add_argument("--expressiveness", type=_positive, default=1.0, metavar="E",
                         help="how readily the fit reads landmark motion as expression (default 1; 2 or 4 for "
                              "fuller expressions, with more of the landmark noise in them; 0.5 steadier); head "
                              "models only, the built-in rig follows the landmarks as they are")
    command.add_argument("--neutral-frame", type=_not_negative_int, default=None, metavar="N",
                         help="a frame (footage numbering) where the face is relaxed, mouth closed, looking ahead: "
                              "the actor's face shape and the ARKit calibration are taken from it, so that an "
                              "expression held through the opening frames (a smile) stays an expression "
                              "(default: the opening frames are taken to be mostly at rest)")
    command.add_argument("--face-from", metavar="CAPTURE.npz", default=None,
                         help="an earlier capture of the same actor (with the same --model; for the built-in rig, "
                              "any): its face is reused instead of found again, so every take of the actor has one "
                              "face (best taken from a take that shows the face relaxed and turning, refitted over "
                              "its whole length)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kinesics", description="Facial performance capture for Blender: "
                                     "video to FLAME/ICT-FaceKit/ARKit animation.")
    parser.add_argument("--version", action="version", version=f"kinesics {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    cap = commands.add_parser("capture", help="capture a face video to a capture file (.npz)",
                              description="Track the face in VIDEO and fit a head model to every selected frame.")
    cap.add_argument("video", metavar="VIDEO", nargs="+",
                     help="the footage: a video (any format OpenCV reads, e.g. H.264 MP4) or an image sequence (a "
                          "folder of frames, or one frame of a numbered series such as shot_0001.png); with several, "
                          "-o and --preview name folders and each capture is named after its video")
    _fit_arguments(cap)
    cap.add_argument("--preview", metavar="PREVIEW.mp4", default=None,
                     help="also write the footage with the fitted mesh and the landmarks drawn over it")
    cap.add_argument("--start", type=int, default=0, metavar="N", help="first frame (default 0)")
    cap.add_argument("--end", type=int, default=None, metavar="N", help="frame to stop before (default: the end)")
    cap.add_argument("--stride", type=int, default=1, metavar="N", help="use every Nth frame (default 1)")
    cap.add_argument("--faces", type=_at_least_one, default=1, metavar="N",
                     help="faces to look for in each frame (default 1, the fastest); with more than one, the "
                          "capture keeps following the person it started with")
    cap.add_argument("--fps", type=_positive, default=None, metavar="FPS",
                     help="the footage's frame rate, where it holds none (image sequences: 25 is assumed) or a "
                          "wrong one")
    cap.add_argument("--mirror-pass", action="store_true",
                     help="track every frame as it is and mirrored, in a second process, and average the two, for "
                          "twice the landmark work (without it every other frame is tracked mirrored, which "
                          "takes out most of the same bias at 20 frames/s and more)")
    ref = commands.add_parser("refit", help="fit a capture's landmarks again (another model, lens or smoothing)",
                              description="Fit the landmarks a capture file holds again, with another head model, "
                                          "lens or smoothing, and the actor's face shape from the whole clip: "
                                          "seconds, with no footage and no tracking.")
    ref.add_argument("capture", metavar="CAPTURE.npz", help="a capture file made by kinesics capture")
    _fit_arguments(ref)
    exp = commands.add_parser("export", help="write a capture as a Live Link Face take (.csv)",
                              description="Write the ARKit curves and the head and eye rotations of a capture as a "
                                          "Live Link Face CSV take (for Unreal Engine, or any tool that reads the "
                                          "app's files). " + FBX_HINT)
    exp.add_argument("capture", metavar="CAPTURE.npz", nargs="+",
                     help="a capture file made by kinesics capture or refit; with several, -o names a folder and "
                          "each take is named after its capture")
    exp.add_argument("-o", "--output", required=True, metavar="TAKE.csv", help="the Live Link Face take to write")
    for name, (_, text) in DELEGATES.items():
        commands.add_parser(name, help=text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in DELEGATES:
        return DELEGATES[argv[0]][0](argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command not in COMMANDS:
        parser.print_help(sys.stderr)
        return 2
    try:
        return COMMANDS[args.command](args)
    except KinesicsError as err:
        _say(f"kinesics: error: {err}")
        return EXIT_ERROR
    except KeyboardInterrupt:  # before or after the capture itself, where there is nothing to keep
        _say("kinesics: cancelled")
        return EXIT_CANCELLED


def _say(line: str, stream: TextIO | None = None) -> None:
    print(line, file=stream or sys.stderr, flush=True)


def _check_writable(path: Path) -> None:
    """Fail before a long capture, not after it, when the output cannot be written."""
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise KinesicsError(f"{path}: is a folder; give a file name such as {path / 'capture.npz'}")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".kinesics-write-check-"):
            pass
    except OSError as err:
        raise KinesicsError(f"{path}: cannot write there ({err.strerror or err}); choose another output path") \
            from None


class ProgressBar:
    """A plain-text progress bar on a stream: redrawn in place on a terminal, one line every 10% otherwise
    (logs and pipes stay readable)."""

    WIDTH = 24

    def __init__(self, stream: TextIO, label: str):
        self.stream, self.label = stream, label
        self.tty = stream.isatty()
        self.last_draw = 0.0
        self.last_decile = -1
        self.drawn = False

    def update(self, done: int, total: int, fps: float | None = None, eta_s: float | None = None,
               faces: int | None = None) -> None:
        total = max(total, 1)
        share = min(done / total, 1.0)
        decile = int(share * 10)
        now = time.monotonic()
        if self.tty and now - self.last_draw < 0.1 and done < total:
            return
        if not self.tty and decile == self.last_decile:
            return
        self.last_draw, self.last_decile = now, decile
        filled = int(share * self.WIDTH)
        parts = [f"{self.label} [{'#' * filled}{'.' * (self.WIDTH - filled)}] {done}/{total} frames {share:4.0%}"]
        if faces is not None:
            parts.append(f"faces {faces}")
        if fps:
            parts.append(f"{fps:.1f} fps")
        if eta_s is not None and done < total:
            parts.append(f"eta {eta_s:.0f}s")
        line = " | ".join(parts)
        if self.tty:
            self.stream.write("\r" + line + "\x1b[K")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
        self.drawn = True

    def close(self) -> None:
        if self.tty and self.drawn:
            self.stream.write("\n")
            self.stream.flush()
        self.drawn = False


@contextmanager
def _ctrl_c_sets(cancel: threading.Event) -> Iterator[None]:
    """Ctrl-C asks the capture to stop (it keeps what is finished); a second Ctrl-C interrupts at once."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers live in the main thread only
        return

    def on_sigint(signum, frame):
        if cancel.is_set():
            raise KeyboardInterrupt
        cancel.set()
        _say("\nkinesics: stopping; the frames finished so far are kept (Ctrl-C again to quit at once)")

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _say_preparing(fraction: float, message: str) -> None:
    """First use of a head model: where MediaPipe's landmarks lie on it is derived once, then cached."""
    _say(f"first use of this model, placing MediaPipe's landmarks on it (cached afterwards): {message} "
         f"({fraction:.0%})")


def capture(args: argparse.Namespace) -> int:
    """`kinesics capture`: one video to a capture file, or several (a batch) to a folder; returns the exit status.
    In a batch the model loads once, and a video that fails is reported and skipped: the others go on."""
    if args.neutral_frame is not None and len(args.video) > 1:
        raise KinesicsError("--neutral-frame names a frame of one video: capture the videos one at a time to give "
                            "each its own neutral frame")
    jobs = _batch(args.video, Path(args.output), Path(args.preview) if args.preview else None)
    for _, output, preview in jobs:  # fail before a long capture, not after it
        _check_writable(output)
        if preview:
            _check_writable(preview)
    _check_face_from(args)
    if len(jobs) == 1:
        return _capture_one(args, *jobs[0], None)[0]
    engine, failed = None, []
    for k, (video, output, preview) in enumerate(jobs):
        _say(f"[{k + 1}/{len(jobs)}] {video}")
        try:
            status, engine = _capture_one(args, video, output, preview, engine)
        except KinesicsError as err:
            _say(f"kinesics: error: {err}")
            failed.append(video)
            continue
        if status == EXIT_CANCELLED:
            return status
    print(f"captured {len(jobs) - len(failed)} of {len(jobs)} videos into {args.output}"
          + (f"; failed: {', '.join(failed)}" if failed else ""), flush=True)
    return EXIT_ERROR if failed else 0


def _batch(videos: list[str], output: Path, preview: Path | None) -> list[tuple[str, Path, Path | None]]:
    """(video, capture file, preview file) per video: see `_outputs`."""
    previews = _outputs(videos, preview, ".mp4", "video", "--preview") if preview else [None] * len(videos)
    return list(zip(videos, _outputs(videos, output, ".npz", "video"), previews))


def _outputs(sources: list[str], output: Path, suffix: str, noun: str, option: str = "-o") -> list[Path]:
    """Where each source's output goes: `output` (given with `option`) itself for one source; for several,
    `output` is a folder and each file in it is named after its source, with `suffix`."""
    if len(sources) == 1:
        return [output]
    if output.suffix.lower() == suffix:
        raise KinesicsError(f"{output}: with several {noun}s, {option} names a folder (each output is named after "
                            f"its {noun}), not a file")
    return outputs_named_after(sources, output, suffix, noun)


def _capture_one(args: argparse.Namespace, video: str, output: Path, preview: Path | None, engine
                 ) -> tuple[int, object]:
    """Capture `video` into `output` (and `preview`) with the model of `engine` (loaded here when None);
    returns the exit status and the engine, for the next video of a batch."""
    from .video import frame_numbers, probe  # OpenCV only: bad footage fails before the model loads

    info = probe(video)
    if info.n_frames > 0 and not frame_numbers(info.n_frames, args.start, args.end, args.stride):
        raise FootageError(f"{video}: the clip has {info.n_frames} frames, the range starts at frame {args.start}")
    if args.fps:
        rate = f"{args.fps:.2f} fps as given"
    elif info.rate_known:
        rate = f"{info.fps:.2f} fps"
    else:
        rate = f"no frame rate in the footage: {info.fps:.0f} fps assumed, give --fps for another"
    _say(f"footage: {video} ({info.width}x{info.height}, {rate}, {info.n_frames} frames)")

    from . import capture_file
    from .engine import CaptureEngine

    if engine is None:
        if args.model is None:
            _say("model: the built-in rig, made from the actor's own face (give --model for FLAME or ICT-FaceKit)")
        else:
            _say(f"model: {args.model}")
        engine = CaptureEngine(args.model, args.device, on_prepare=_say_preparing)
    bar = ProgressBar(sys.stderr, "capture")
    cancel = threading.Event()
    started = time.perf_counter()
    try:
        with _ctrl_c_sets(cancel):
            result = engine.run(video, args.start, args.end, args.stride, args.focal_px,
                                on_progress=lambda p: bar.update(p.done, p.total, p.fps, p.eta_s, p.faces),
                                cancel=cancel, max_faces=args.faces, lens_mm=args.lens_mm,
                                smoothing=args.smoothing, mirror_pass=args.mirror_pass, fps=args.fps,
                                neutral_frame=args.neutral_frame, expressiveness=args.expressiveness,
                                face_from=args.face_from)
    except CaptureCancelled as cancelled:
        partial = cancelled.partial or {}
        if len(partial.get("frame_index", ())) == 0:
            _say("kinesics: cancelled before any frame was finished; nothing was saved")
        else:
            capture_file.save(output, partial)
            _say(f"kinesics: cancelled; the {len(partial['frame_index'])} finished frames are saved in {output}")
        return EXIT_CANCELLED, engine
    finally:
        bar.close()
    elapsed = time.perf_counter() - started
    capture_file.save(output, result)
    if preview:
        from .preview import write_preview

        preview_bar = ProgressBar(sys.stderr, "preview")
        try:
            write_preview(result, video, str(preview), None if result["model"] == "builtin" else engine.data,
                          args.device, on_frame=preview_bar.update)
        except KinesicsError as err:
            raise KinesicsError(f"the capture is saved in {output}, but the preview failed: {err}") from None
        finally:
            preview_bar.close()
    _summary(result, output, str(preview) if preview else None, elapsed)
    return 0, engine


def refit(args: argparse.Namespace) -> int:
    """`kinesics refit`: the landmarks a capture holds, fitted again, the actor's shape from the whole clip (a
    streamed capture takes it from the opening faces, so that keys arrive early); returns the exit status."""
    from . import capture_file
    from .engine import CaptureEngine

    output = Path(args.output)
    _check_writable(output)
    source = capture_file.load(args.capture)  # a bad file fails before the model loads
    _check_face_from(args)
    width, height = (int(v) for v in source["image_size"][:2])
    _say(f"landmarks: {args.capture} ({len(source['frame_index'])} frames of {width}x{height} footage at "
         f"{float(source['fps']):.2f} fps, captured with {source['model']})")
    _say(f"model: {args.model}" if args.model else "model: the built-in rig, made from the actor's own face")
    engine = CaptureEngine(args.model, args.device, on_prepare=_say_preparing, tracks_footage=False)
    started = time.perf_counter()
    result = engine.refit(source, args.focal_px, args.lens_mm, args.smoothing, neutral_frame=args.neutral_frame,
                          expressiveness=args.expressiveness, face_from=args.face_from)
    elapsed = time.perf_counter() - started
    capture_file.save(output, result)
    _summary(result, output, None, elapsed)
    return 0


def export(args: argparse.Namespace) -> int:
    """`kinesics export`: capture files as Live Link Face takes, one, or several into a folder (one that fails is
    reported and the others go on); returns the exit status."""
    from . import capture_file, livelink

    output = Path(args.output)
    if len(args.capture) == 1 and output.suffix.lower() != ".csv":
        raise KinesicsError(f"{output}: name a .csv file (a Live Link Face take). {FBX_HINT}")
    jobs = list(zip(args.capture, _outputs(args.capture, output, ".csv", "capture")))
    for _, path in jobs:
        _check_writable(path)
    failed = []
    for capture, path in jobs:
        try:
            source = capture_file.load(capture)
            try:
                livelink.export_capture(source, path)
            except OSError as err:
                raise KinesicsError(f"{path}: cannot be written ({err.strerror or err})") from None
        except KinesicsError as err:
            if len(jobs) == 1:
                raise
            _say(f"kinesics: error: {err}")
            failed.append(capture)
            continue
        print(f"wrote {path}: {len(source['frame_index'])} frames as a Live Link Face take", flush=True)
    if failed:
        print(f"exported {len(jobs) - len(failed)} of {len(jobs)} captures; failed: {', '.join(failed)}", flush=True)
    return EXIT_ERROR if failed else 0


COMMANDS = {"capture": capture, "refit": refit, "export": export}


def _check_face_from(args: argparse.Namespace) -> None:
    """A --face-from capture that cannot be read fails before the model loads (whether it fits the model is the
    engine's to say)."""
    if args.face_from is not None:
        from . import capture_file

        capture_file.load(os.path.expanduser(args.face_from))


def _summary(result: dict, output: Path, preview: str | None, elapsed: float) -> None:
    import numpy as np

    n = len(result["frame_index"])
    faces = int(result["valid"].sum())
    lines = [f"captured {n} frames in {elapsed:.1f} s ({n / max(elapsed, 1e-9):.1f} fps); a face was found in "
             f"{faces} of them" + ("" if faces == n else f" ({n - faces} filled in from their neighbours)"),
             f"model: {result['model']}, focal length {float(np.mean(result['focal_px'])):.0f} px"
             + (f", face from {result['face_from']}" if "face_from" in result else ""),
             f"saved: {output}"]
    if preview:
        lines.append(f"preview: {preview}")
    lines += [f"warning: {w}" for w in result.get("warnings", ())]
    print("\n".join(lines), flush=True)


if __name__ == "__main__":
    sys.exit(main())
