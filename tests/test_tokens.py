"""The tokens file (SPEC 10.7): only digests are stored, a bad entry is named without its digest, and a token is
found among 1,000 as fast as among one."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from poulpe.token_cli import main as token_new
from poulpe.tokens import TokensError, TokenTable, digest_of, new_entry, parse, read

GOOD = """
[[tokens]]
name = "ci"
sha256 = "{digest}"
scopes = ["submit"]
tenant = "pay"
rate = 10
max_pending = 500
"""


def test_a_new_token_prints_once_and_its_line_holds_only_the_digest(capsys: pytest.CaptureFixture[str]) -> None:
    assert token_new(["--name", "ci", "--scopes", "submit,read", "--tenant", "pay", "--rate", "5"]) == 0
    out = capsys.readouterr().out
    token = out.split(": ", 1)[1].split("\n", 1)[0]
    table = out.split("\n\n", 1)[1]
    assert token not in table and digest_of(token) in table
    [principal] = parse(table)
    assert (principal.name, principal.tenant, principal.rate) == ("ci", "pay", 5.0)
    assert principal.scopes == {"submit", "read"}
    assert TokenTable([principal]).find(token.encode()) == principal


def test_a_bad_scope_is_refused_by_the_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert token_new(["--name", "ci", "--scopes", "everything"]) == 2
    assert "scopes must be" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (('scopes = ["submit"]', 'scopes = ["root"]'), "scopes must be"),
        (('tenant = "pay"', 'tenant = "a:b"'), "tenant must be"),
        (('tenant = "pay"', 'tenant = "cron"'), "tenant must be"),
        (('tenant = "pay"\n', ""), "give the token a tenant"),
        (("rate = 10", "rate = -1"), "rate must be"),
        (("max_pending = 500", "max_pending = 0"), "max_pending must be"),
        (("rate = 10", "rates = 10"), "unknown field 'rates'"),
        (('name = "ci"', 'name = "c i"'), "name must be"),
    ],
)
def test_a_bad_entry_is_named_and_its_digest_never_shown(change: tuple[str, str], says: str) -> None:
    digest = digest_of("t0ken")
    text = GOOD.format(digest=digest).replace(*change)
    with pytest.raises(TokensError, match=says) as refused:
        parse(text)
    assert digest not in str(refused.value) and "entry 1" in str(refused.value)


def test_a_digest_that_is_not_one_is_refused() -> None:
    with pytest.raises(TokensError, match="sha256 must be"):
        parse(GOOD.format(digest="t0ken"))


def test_the_same_token_twice_is_refused() -> None:
    text = GOOD.format(digest=digest_of("a")) + GOOD.format(digest=digest_of("a")).replace('"ci"', '"cd"')
    with pytest.raises(TokensError, match="cd has the same token as ci"):
        parse(text)


def test_a_principal_never_shows_its_digest() -> None:
    [principal] = parse(GOOD.format(digest=digest_of("t0ken")))
    assert digest_of("t0ken") not in repr(principal) and "t0ken" not in repr(principal)


def test_the_admin_token_stands_beside_the_file(tmp_path: Path) -> None:
    (tmp_path / "tokens.toml").write_text(GOOD.format(digest=digest_of("t0ken")))
    table = read(tmp_path / "tokens.toml", "admin-s3cret")
    assert table.find(b"admin-s3cret") is not None and table.find(b"admin-s3cret").scopes == {"admin"}  # type: ignore[union-attr]
    assert table.find(b"t0ken") is not None
    assert table.find(b"wrong") is None and table.find(b"") is None


def test_a_thousand_tokens_are_looked_up_as_fast_as_one() -> None:
    many = []
    for n in range(1000):
        _, entry = new_entry(f"t{n}", ["submit"])
        many.append(entry)
    token, entry = new_entry("last", ["submit"])
    table = TokenTable(parse("\n".join([*many, entry])))
    one = TokenTable(parse(entry))

    def per_lookup(t: TokenTable) -> float:
        start = time.perf_counter()
        for _ in range(2000):
            assert t.find(token.encode()) is not None
        return (time.perf_counter() - start) / 2000

    assert per_lookup(table) < 3 * per_lookup(one) + 5e-6


def test_the_poulpe_command_makes_a_token(tmp_path: Path) -> None:
    """`poulpe token new` as an operator runs it; its table, appended to a file, is a tokens file poulpe reads."""
    done = subprocess.run(
        ["poulpe", "token", "new", "--name", "pay-ci", "--scopes", "submit", "--tenant", "pay", "--max_pending", "5"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    token = done.stdout.split(": ", 1)[1].split("\n", 1)[0]
    (tmp_path / "tokens.toml").write_text(done.stdout.split("\n\n", 1)[1])
    found = read(tmp_path / "tokens.toml").find(token.encode())
    assert found is not None and (found.tenant, found.max_pending) == ("pay", 5)
