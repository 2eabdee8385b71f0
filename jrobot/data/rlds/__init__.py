"""RLDS datasets (Open X-Embodiment) in and out: read with tensorflow-datasets, written as LeRobot v3.0."""
