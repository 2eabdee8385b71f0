"""Checking a dataset and describing it: every problem with its file (`checks.validate_dataset`,
which reuses the loaders' parsing but keeps going where they stop), split into metadata checks
(`meta`), checks of what the metadata points at (`content`) and the report types (`report`); and
the JSON-able summary `data_tools.inspect` prints (`describe`).

    from jrobot.data.validate import validate_dataset, is_valid
"""

from jrobot.data.validate.checks import is_valid, validate_dataset
from jrobot.data.validate.report import Problem

__all__ = ["Problem", "is_valid", "validate_dataset"]
