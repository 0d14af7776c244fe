"""Tests of sampan.qr (issue 20). A package so that names such as test_registry.py do not clash with tests/."""
