"""Real hardware: Feetech servo bus, calibration, SO-101 follower/leader, OpenCV cameras (no jax).

Modules: `feetech` (FeetechBus, Motor), `calibration` (LeRobot calibration files), `normalization`
(LeRobot's position units), `calibration_procedure`, `so101` (SO101Follower, SO101Leader and their
configs), `opencv_camera`, `safety` (torque off on every kind of exit), `factory` (types for the CLI),
`ports`, `prompts`, `errors`, `tables`, `encoding`. Nothing is imported here, so using the bus does
not pull in OpenCV.
"""
