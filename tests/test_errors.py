"""One SampanError hierarchy: every deliberate error has a category, an exit code and a message for a person;
the CLI's one error path turns them into one line (never a traceback), SAMPAN_DEBUG=1 shows the traceback."""

from __future__ import annotations

import ast
import importlib
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from sampan import errors
from sampan.cli.error_path import ErrorHandlingGroup, treat_as_usage
from sampan.errors import ExitCode, exit_code_for, user_message

SRC = Path(__file__).resolve().parents[1] / "src" / "sampan"

# (module, class, category): the concrete errors and the category each belongs to
CONCRETE = [
    ("sampan.config", "ConfigError", errors.ConfigError),
    ("sampan.data", "DataValidationError", errors.DataError),
    ("sampan.privacy.ledger", "BudgetExceeded", errors.BudgetError),
    ("sampan.core", "PartyError", errors.PartyError),
    ("sampan.core", "RunCancelled", errors.CancelledError),
    ("sampan.runtime.store", "StoreError", errors.StoreError),
    ("sampan.wire", "WireError", errors.ProtocolError),
    ("sampan.crypto.channel", "ChannelError", errors.ProtocolError),
    ("sampan.crypto.shamir", "ShamirError", errors.ProtocolError),
    ("sampan.crypto.identity", "IdentityError", errors.ProtocolError),
    ("sampan.transport.grpc_envelope", "EnvelopeError", errors.ProtocolError),
    ("sampan.transport.grpc_client", "FatalRejection", errors.PartyError),
    ("sampan.deploy.allow", "JobRefused", errors.PartyError),
    ("sampan.deploy.cert_checks", "CertError", errors.ConfigError),
    ("sampan.deploy.keyfiles", "KeyFileError", errors.ConfigError),
    ("sampan.privacy.party_policy", "PolicyRefused", errors.PartyError),
    ("sampan.privacy.secagg.params", "SecAggAbort", errors.ProtocolError),
    ("sampan.runtime.audit_run", "AuditError", errors.ConfigError),
    ("sampan.runtime.capabilities", "CapabilityError", errors.ConfigError),
    ("sampan.horizontal.secure_rounds", "FederationError", errors.ConfigError),
    ("sampan.synth.table", "TableError", errors.DataError),
    ("sampan.synth.model", "ModelError", errors.DataError),
    ("sampan.synth.schema", "SchemaError", errors.ConfigError),
    ("sampan.synth.constraints", "ConstraintError", errors.ConfigError),
    ("sampan.synth.programmable", "TargetError", errors.ConfigError),
    ("sampan.vertical.rows", "RowRuleError", errors.PartyError),
    ("sampan.vertical.psi_points", "PsiError", errors.ProtocolError),
]


@pytest.mark.parametrize(("module", "name", "category"), CONCRETE, ids=[c[1] for c in CONCRETE])
def test_every_concrete_error_has_its_category(module: str, name: str, category: type) -> None:
    cls = getattr(importlib.import_module(module), name)
    assert issubclass(cls, category) and issubclass(cls, errors.SampanError)
    assert exit_code_for(cls.__new__(cls)) == category.exit_code


def test_builtin_bases_are_kept() -> None:
    """Callers that caught ValueError / RuntimeError / KeyError before still catch the same errors."""
    from sampan.config import ConfigError
    from sampan.core import PartyError
    from sampan.data import DataValidationError
    from sampan.deploy.allow import JobRefused
    from sampan.privacy.ledger import BudgetExceeded
    from sampan.runtime.store import StoreError
    from sampan.wire import WireError

    assert issubclass(ConfigError, ValueError) and issubclass(DataValidationError, ValueError)
    assert issubclass(BudgetExceeded, RuntimeError) and issubclass(PartyError, RuntimeError)
    assert issubclass(StoreError, RuntimeError) and issubclass(WireError, ValueError)
    assert issubclass(JobRefused, PermissionError)


def test_exit_codes_are_distinct_per_failure_kind() -> None:
    assert [c.exit_code for c in (errors.ConfigError, errors.DataError, errors.StoreError)] == [2, 2, 2]
    assert (errors.PartyError.exit_code, errors.BudgetError.exit_code, errors.ProtocolError.exit_code,
            errors.CancelledError.exit_code) == (3, 4, 5, 130)
    assert exit_code_for(FileNotFoundError(2, "No such file or directory", "x.toml")) == ExitCode.USAGE
    assert exit_code_for(PermissionError(13, "Permission denied", "key.pem")) == ExitCode.USAGE
    assert exit_code_for(KeyboardInterrupt()) == ExitCode.CANCELLED
    assert exit_code_for(ZeroDivisionError()) == ExitCode.INTERNAL


def test_user_messages_name_the_thing_at_fault() -> None:
    assert user_message(FileNotFoundError(2, "No such file or directory", "runs/x.toml")) == \
        "runs/x.toml: No such file or directory"
    assert user_message(errors.DataError("party 'bank_a', column 'sector': 3 unknown")) == \
        "party 'bank_a', column 'sector': 3 unknown"
    pydantic = pytest.importorskip("pydantic")

    class Section(pydantic.BaseModel):
        rounds: int = pydantic.Field(ge=1)

    with pytest.raises(pydantic.ValidationError) as info:
        Section(rounds=0)
    text = user_message(info.value)
    assert "rounds" in text and "\n" not in text and "https://" not in text


def test_errors_module_is_stdlib_only() -> None:
    """Lower layers import sampan.errors: it must import nothing from Sampan and nothing heavy."""
    tree = ast.parse((SRC / "errors.py").read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module}
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}, imported


# --- the CLI's one error path -----------------------------------------------------------------------------

def _app(exc: BaseException) -> typer.Typer:
    app = typer.Typer(cls=ErrorHandlingGroup, add_completion=False, pretty_exceptions_enable=False)

    @app.command()
    def boom() -> None:
        raise exc

    @app.command()
    def usage() -> None:
        with treat_as_usage(ValueError):
            raise ValueError("n_trees must be >= 1, got 0")

    return app


CASES = [
    (errors.ConfigError("run.toml: training.learning_rat: extra inputs are not permitted"), 2, "training.learning_rat"),
    (errors.DataError("party 'bank_a': file 'a.csv': column 'sector' needs its categories"), 2, "column 'sector'"),
    (errors.StoreError("no run 'nope'"), 2, "no run 'nope'"),
    (errors.PartyError("party 'bank_b' did not answer within 30 s"), 3, "party 'bank_b'"),
    (errors.BudgetError("party 'bank_a' would spend ε=1.2 > budget ε=1"), 4, "would spend"),
    (errors.ProtocolError("signature of 'bank_c' does not verify"), 5, "does not verify"),
    (errors.CancelledError("run abc cancelled"), 130, "cancelled"),
    (FileNotFoundError(2, "No such file or directory", "data/bank.csv"), 2, "data/bank.csv"),
    (KeyboardInterrupt(), 130, "interrupted"),
]


@pytest.mark.parametrize(("exc", "code", "phrase"), CASES, ids=[type(c[0]).__name__ for c in CASES])
def test_a_user_error_is_one_line_and_its_exit_code(exc: BaseException, code: int, phrase: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SAMPAN_DEBUG", raising=False)
    result = CliRunner().invoke(_app(exc), ["boom"])
    assert result.exit_code == code, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and phrase in lines[0], result.output
    assert "Traceback" not in result.output


def test_an_unexpected_error_is_one_line_naming_it_and_exit_1(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SAMPAN_DEBUG", raising=False)
    result = CliRunner().invoke(_app(ZeroDivisionError("division by zero")), ["boom"])
    assert result.exit_code == 1
    assert "internal error: ZeroDivisionError: division by zero (at test_errors.py:" in result.output
    assert "SAMPAN_DEBUG=1" in result.output and "Traceback" not in result.output


def test_sampan_debug_shows_the_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAMPAN_DEBUG", "1")
    result = CliRunner().invoke(_app(errors.ConfigError("bad field")), ["boom"])
    assert isinstance(result.exception, errors.ConfigError)  # re-raised: the runner holds the traceback


def test_treat_as_usage_turns_a_parameter_check_into_exit_2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SAMPAN_DEBUG", raising=False)
    result = CliRunner().invoke(_app(ValueError("unused")), ["usage"])
    assert result.exit_code == 2 and result.output.strip() == "error: n_trees must be >= 1, got 0"


def test_click_usage_errors_keep_their_own_message() -> None:
    result = CliRunner().invoke(_app(ValueError("unused")), ["boom", "--no-such-option"])
    assert result.exit_code == 2 and "No such option" in result.output
