"""The catalogue: every test by id, and which run in each profile (quick, standard, full)."""

from __future__ import annotations

from sampan.errors import ConfigError
from sampan.verify.catalogue.base import PROFILES, Test

__all__ = ["all_tests", "tests_for", "get_test"]


def all_tests() -> list[Test]:
    """Every test, catalogue order: functional, performance, security."""
    from sampan.verify.catalogue.functional import FUNCTIONAL
    from sampan.verify.catalogue.performance import PERFORMANCE
    from sampan.verify.catalogue.security import SECURITY

    tests = [*FUNCTIONAL, *PERFORMANCE, *SECURITY]
    ids = [t.id for t in tests]
    dupes = {i for i in ids if ids.count(i) > 1}
    assert not dupes, f"duplicate test ids {dupes}"
    return tests


def get_test(test_id: str) -> Test:
    for test in all_tests():
        if test.id == test_id:
            return test
    raise ConfigError(f"no test with id {test_id!r} in the catalogue")


def tests_for(profile: str, only: list[str] | None = None) -> list[Test]:
    """The tests of ``profile``; ``only`` (ids or id prefixes like "S-TLS") narrows them, in catalogue order."""
    if profile not in PROFILES:
        raise ConfigError(f"profile must be one of {', '.join(PROFILES)}, not {profile!r}")
    tests = [t for t in all_tests() if profile in t.profiles]
    if only:
        known = {t.id for t in all_tests()}
        for name in only:
            if not any(i == name or i.startswith(name) for i in known):
                raise ConfigError(f"--only {name!r} matches no test id in the catalogue")
        tests = [t for t in all_tests() if any(t.id == n or t.id.startswith(n) for n in only)]
    return tests
