"""Recording v3.0 datasets: `writer.DatasetWriter` (create/resume, add frames, save episodes), with
frame checking (`frames`), crash-safe file primitives (`fsio`), background video packing (`packer`),
recovery of an interrupted writer (`recovery`) and the closing meta files every v3.0 writer commits
with (`commit`). One package so the commit protocol (info.json last) is defined in one place.
"""
