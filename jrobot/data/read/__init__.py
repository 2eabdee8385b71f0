"""Reading datasets as numpy: `open_dataset` / `Dataset` (random access with LeRobot's semantics,
sequential per-episode iteration), the per-frame columns (`frame_table`) and resolving a folder or
Hugging Face Hub id (`hub`). Kept apart from writing so a consumer that only reads (training-shard
building, notebooks) imports no writer machinery.
"""
