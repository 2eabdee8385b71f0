"""Coverage-guided fuzz harnesses (atheris) for jrobot's parsers of untrusted input; see README.md."""
