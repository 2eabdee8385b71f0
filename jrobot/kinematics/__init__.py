"""Robot kinematics (jax-free): the SO-101 in LeRobot's conventions."""
