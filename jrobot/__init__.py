"""jrobot: a JAX/Flax robot-learning stack for low-cost arms (SO-101), interoperable with LeRobot."""

__version__ = "0.1.0"
