"""Command-line tools for LeRobot datasets; each module is also a library call.

    python -m data_tools.inspect DATASET [--json]          what is in it, and every problem, per file
    python -m data_tools.convert_lerobot SRC --out DST     v2.0/v2.1/v3.0 -> clean v3.0 (+ --shards)
    python -m data_tools.edit {delete,select,split,merge,remove-features,rename-features} ...
    python -m data_tools.view DATASET --episode N --out DIR   plots + side-by-side MP4
    python -m data_tools.build_shards SRC --out DIR        training shards

The work is done in `jrobot.data` (`describe`, `validate`, `edit`, `rewrite`); these modules parse
arguments and print reports. DATASET/SRC may be a Hugging Face Hub id when online.
"""
