"""The `sampan` command line: one module per command group (run, deploy, registry, synth, vertical)."""

from sampan.cli.run import app, main

__all__ = ["app", "main"]
