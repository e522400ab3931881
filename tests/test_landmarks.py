"""MediaPipe tracking on real footage: with several people in shot, the capture keeps its person."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from core.landmarks import FaceMeshTracker
from core.video import read_frames


def test_tracker_keeps_the_person_it_started_with(footage: Path):
    """A second, larger face walks into the right of the frame; the tracker stays on the first one."""
    talking = [frame for _, frame in read_frames(footage / "frontal_talking_512.mp4", 0, 16)]
    happy = [frame for _, frame in read_frames(footage / "happy_1080p.mp4", 0, 16)]
    import mediapipe as mp

    tracker = FaceMeshTracker(max_faces=2)
    counter = mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=2, refine_landmarks=True)
    centres, faces_seen = [], []
    for i, (left, right) in enumerate(zip(talking, happy)):
        canvas = np.zeros((512, 1024, 3), np.uint8)
        canvas[:, :512] = left
        if i >= 6:  # the newcomer: the middle of the 1080p frame, face filling more of its half
            canvas[:, 512:] = cv2.resize(right[:, 420:1500], (512, 512))
        lms = tracker(canvas)
        assert lms is not None, f"no face in frame {i}"
        centres.append(lms[:, 0].mean() * 1024)
        faces_seen.append(len(counter.process(cv2.cvtColor(canvas, cv2.COLOR_BGR2RGB)).multi_face_landmarks or []))
    tracker.close()
    counter.close()
    assert max(faces_seen[6:]) == 2, "MediaPipe sees both faces once the second arrives"
    assert max(centres) < 512, f"the capture jumped to the newcomer: centre x up to {max(centres):.0f} px"
