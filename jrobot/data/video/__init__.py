"""The mp4 side of the store: streaming per-camera encoders and stream-copy concatenation (`encode`),
exact frame access by presentation timestamp (`decode`), and cutting episodes out of LeRobot's
packed files (`segments`). Separate because the writer, the reader, the editor and the validator all
need video, and none of them should carry the others' code to get it.
"""
