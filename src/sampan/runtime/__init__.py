"""The one runner: run lifecycle (create, checkpoint, resume, register, receipt, report), the run store, the audit log.

Capability packages (horizontal, vertical, synth) are reached only by name, through `capabilities.py`.

May import: anything below it (the capability packages, sampan.config, the libraries, sampan.transport, sampan.core).
"""
