"""The verifier's test catalogue: functional (F-*), performance (P-*) and security (S-*) tests.

Each test is a `base.Test` (id, profiles, inputs, pass rule, thresholds, ``run(ctx)``); `registry` lists them
by profile. Thresholds live in `sampan.verify.thresholds`; the runner (`sampan.verify.runner`) runs them.
"""
