"""`python -m jrobot.train`: the training command, `jrobot.commands.train`."""

from jrobot.commands.train import launch

if __name__ == "__main__":
    launch()
