"""Calibration files in LeRobot's JSON schema and directory layout.

A file maps motor names (in bus order) to `{"id", "drive_mode", "homing_offset", "range_min",
"range_max"}`, all ints, written as JSON with indent 4 (draccus' output). Files live at
`<calibration root>/robots/<name>/<id>.json` and `.../teleoperators/<name>/<id>.json`, where the root is
`$HF_LEROBOT_CALIBRATION`, else `$HF_LEROBOT_HOME/calibration`, else `$HF_HOME/lerobot/calibration`
(`~/.cache/huggingface/lerobot/calibration`). LeRobot <= 0.4.2 used `so101_follower`/`so100_follower`
folder names, 0.4.3+ uses `so_follower`; jrobot reads both, so existing files are used as they are.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from jrobot.hw.errors import CalibrationError

logger = logging.getLogger(__name__)

ROBOTS = "robots"
TELEOPERATORS = "teleoperators"
_FIELDS = ("id", "drive_mode", "homing_offset", "range_min", "range_max")


@dataclasses.dataclass(frozen=True)
class MotorCalibration:
    """One motor's calibration, field for field LeRobot's `MotorCalibration`."""

    id: int
    drive_mode: int
    homing_offset: int
    range_min: int
    range_max: int


def hf_home() -> Path:
    """huggingface_hub's HF_HOME rule: $HF_HOME, else $XDG_CACHE_HOME/huggingface, else ~/.cache/huggingface."""
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
    return Path(cache, "huggingface").expanduser()


def calibration_root() -> Path:
    """Where LeRobot keeps calibration files (see the module docstring for the precedence)."""
    if os.environ.get("HF_LEROBOT_CALIBRATION"):
        return Path(os.environ["HF_LEROBOT_CALIBRATION"]).expanduser()
    if os.environ.get("HF_LEROBOT_HOME"):
        return Path(os.environ["HF_LEROBOT_HOME"]).expanduser() / "calibration"
    return hf_home() / "lerobot" / "calibration"


def calibration_candidates(
    kind: str, folder_names: Sequence[str], device_id: str | None, calibration_dir: str | Path | None = None
) -> list[Path]:
    """Paths a calibration file may be at, in order of preference.

    An explicit `calibration_dir` wins (only that folder is searched); otherwise every folder name is
    tried under `<root>/<kind>/`. A None id is the file `None.json`, as in LeRobot.
    """
    if kind not in (ROBOTS, TELEOPERATORS):
        raise ValueError(f"kind must be {ROBOTS!r} or {TELEOPERATORS!r}, got {kind!r}")
    fname = f"{device_id}.json"
    if calibration_dir is not None:
        return [Path(calibration_dir).expanduser() / fname]
    root = calibration_root() / kind
    return [root / name / fname for name in folder_names]


def find_calibration_file(
    kind: str, folder_names: Sequence[str], device_id: str | None, calibration_dir: str | Path | None = None
) -> Path | None:
    """The calibration file to use, or None if there is none.

    When several folders hold a file for this id (e.g. a user upgraded LeRobot and copied files), the
    most recently modified one is used and a warning names them all.
    """
    found = [p for p in calibration_candidates(kind, folder_names, device_id, calibration_dir) if p.is_file()]
    if not found:
        return None
    if len(found) > 1:
        contents = {p.read_bytes() for p in found}
        newest = max(found, key=lambda p: p.stat().st_mtime)
        if len(contents) > 1:
            logger.warning(
                "several calibration files for id %r differ: %s; using the newest, %s",
                device_id,
                ", ".join(map(str, found)),
                newest,
            )
        return newest
    return found[0]


def _int_field(path: Path, motor: str, key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise CalibrationError(f"{path}: motor {motor!r} key {key!r} must be an integer, got {value!r}")
    return value


def parse_calibration(data: Any, *, source: str | Path = "<calibration>") -> dict[str, MotorCalibration]:
    """Validate a decoded calibration JSON object; errors name the file, motor, key and value."""
    path = Path(source)
    if not isinstance(data, dict) or not data:
        raise CalibrationError(f"{path}: expected a JSON object mapping motor names to calibrations")
    out: dict[str, MotorCalibration] = {}
    for motor, entry in data.items():
        if not isinstance(entry, dict):
            raise CalibrationError(f"{path}: motor {motor!r} must map to an object, got {entry!r}")
        missing = [k for k in _FIELDS if k not in entry]
        extra = [k for k in entry if k not in _FIELDS]
        if missing or extra:
            raise CalibrationError(
                f"{path}: motor {motor!r} has missing keys {missing} / unknown keys {extra}; expected {list(_FIELDS)}"
            )
        vals = {k: _int_field(path, motor, k, entry[k]) for k in _FIELDS}
        cal = MotorCalibration(**vals)
        if not -2047 <= cal.homing_offset <= 2047:
            raise CalibrationError(
                f"{path}: motor {motor!r} homing_offset={cal.homing_offset} is outside -2047..2047"
            )
        for key in ("range_min", "range_max"):
            if not 0 <= getattr(cal, key) <= 4095:
                raise CalibrationError(
                    f"{path}: motor {motor!r} {key}={getattr(cal, key)} is outside 0..4095"
                )
        if cal.range_min >= cal.range_max:
            raise CalibrationError(
                f"{path}: motor {motor!r} range_min={cal.range_min} must be below range_max={cal.range_max}"
            )
        if cal.drive_mode not in (0, 1):
            raise CalibrationError(f"{path}: motor {motor!r} drive_mode={cal.drive_mode} must be 0 or 1")
        out[str(motor)] = cal
    return out


def load_calibration(
    path: str | Path, motor_ids: Mapping[str, int] | None = None
) -> dict[str, MotorCalibration]:
    """Read a LeRobot calibration file; with `motor_ids`, also check the motor names and ids match."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise CalibrationError(f"cannot read calibration file {path}: {e}") from e
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:  # RecursionError: nested too deep
        raise CalibrationError(f"calibration file {path} is not valid JSON: {e}") from e
    cal = parse_calibration(data, source=path)
    if motor_ids is not None:
        check_motors(cal, motor_ids, source=path)
    return cal


def check_motors(
    cal: Mapping[str, MotorCalibration], motor_ids: Mapping[str, int], *, source: str | Path
) -> None:
    missing = [m for m in motor_ids if m not in cal]
    extra = [m for m in cal if m not in motor_ids]
    if missing or extra:
        raise CalibrationError(
            f"{source}: calibration motors do not match the arm: missing {missing}, unexpected {extra}"
        )
    for m, id_ in motor_ids.items():
        if cal[m].id != id_:
            raise CalibrationError(f"{source}: motor {m!r} has id {cal[m].id} but the arm uses id {id_}")


def calibration_to_json(cal: Mapping[str, MotorCalibration]) -> str:
    """The exact text LeRobot (draccus, JSON, indent 4) writes for this calibration."""
    return json.dumps({m: dataclasses.asdict(c) for m, c in cal.items()}, indent=4)


def save_calibration(path: str | Path, cal: Mapping[str, MotorCalibration]) -> Path:
    """Write atomically (temp file + rename) so an interrupted save never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(calibration_to_json(cal))
    os.replace(tmp, path)
    return path


def same_calibration(
    a: Mapping[str, MotorCalibration], b: Mapping[str, MotorCalibration], motors: Iterable[str]
) -> bool:
    """Whether the homing offsets and ranges agree for `motors` (drive_mode is not stored in servos)."""
    for m in motors:
        if m not in a or m not in b:
            return False
        x, y = a[m], b[m]
        if (x.homing_offset, x.range_min, x.range_max) != (y.homing_offset, y.range_min, y.range_max):
            return False
    return True
