"""jrobot's commands, one thin module each: parse the flags, call the stage that does the work, report.

Each runs as `python -m jrobot.<name>` (or `python -m jrobot.commands.<name>`) and as the console
script `jrobot-<name>`; `python -m jrobot` lists them by stage (`jrobot.__main__`). Errors a user can
cause end as one line through `jrobot.cli.run_tool`. Dataset commands live in `data_tools`.
"""
