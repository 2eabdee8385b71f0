"""Recording and the everyday arm tools around it; nothing here imports jax (a recording laptop needs none).

- `record`: the record loop (observe, teleoperate, send, write), the reset phase, the dataset writer
- `teleoperate`: the follower follows a teleoperator, torque handled on every way out
- `replay`: a recorded episode's actions through the runtime's safety path, and the tracking report
- `joint_limits`: joint and end-effector ranges found by moving the leader, and their file
- `devices`: the `--robot.type` / `--teleop.type` choices, turned into hardware or simulated devices
- `keyboard`: the terminal's keys (episode control, keyboard end-effector teleoperation, over SSH too)
"""
