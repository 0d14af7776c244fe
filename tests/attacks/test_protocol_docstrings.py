"""Every protocol module states what each role learns (issue 11): the receipt repeats these sections."""

from __future__ import annotations

import importlib

import pytest

PROTOCOL_MODULES = [
    "sampan.horizontal.party",
    "sampan.horizontal.workflow",
    "sampan.horizontal.secure_rounds",
    "sampan.horizontal.secure_inputs",
    "sampan.horizontal.gbdt_workflow",
    "sampan.horizontal.capability",
    "sampan.horizontal.local_comparison",
    "sampan.horizontal.holdout_split",
    "sampan.privacy.mods",
    "sampan.privacy.admission",
    "sampan.privacy.local_comparison_mod",
    "sampan.privacy.wrappers",
    "sampan.privacy.dp3",
    "sampan.privacy.dpsgd",
    "sampan.privacy.secagg",
    "sampan.privacy.secagg.client",
    "sampan.privacy.secagg.client_base",
    "sampan.privacy.secagg.unmasking",
    "sampan.privacy.secagg.server",
    "sampan.crypto.identity",
    "sampan.vertical.party",
    "sampan.vertical.psi",
    "sampan.vertical.psi_party",
    "sampan.vertical.secure_lr",
    "sampan.vertical.secure_lr_base",
    "sampan.vertical.secure_lr_batch",
    "sampan.vertical.secure_lr_party",
    "sampan.vertical.histograms",
    "sampan.vertical.gbdt",
    "sampan.vertical.gbdt_views",
    "sampan.vertical.woe",
    "sampan.vertical.scoring",
    "sampan.serve.session",
    "sampan.synth.fit",
    "sampan.synth.domain",
    "sampan.synth.aggregate",
    "sampan.synth.coordinator",
    "sampan.synth.party",
    "sampan.synth.workflow",
    "sampan.checks.party",
    "sampan.checks.privacy",
    "sampan.checks.workflow",
]


@pytest.mark.parametrize("name", PROTOCOL_MODULES)
def test_protocol_module_says_what_each_role_learns(name: str) -> None:
    doc = importlib.import_module(name).__doc__ or ""
    assert "what each role learns" in doc.lower(), f"{name}: docstring needs a 'What each role learns' section"
