"""argparse that answers a mistyped flag with the flag it most likely meant: `--wokers 4` → did you mean --workers?"""

from __future__ import annotations

import argparse
import difflib
from collections.abc import Iterator
from typing import NoReturn

_UNKNOWN = "unrecognized arguments: "


class HintingParser(argparse.ArgumentParser):
    """Subcommands' parsers are made of the same class (argparse's default), so they hint too."""

    def error(self, message: str) -> NoReturn:
        if message.startswith(_UNKNOWN):
            hints = [hint for word in message[len(_UNKNOWN) :].split() if (hint := self.closest(word))]
            if hints:
                message += "; did you mean " + ", ".join(dict.fromkeys(hints)) + "?"
        super().error(message)

    def closest(self, word: str) -> str | None:
        """The known flag nearest to `word` (a flag, `--flag=value` too), or None when none is near."""
        if not word.startswith("-"):
            return None
        flag = word.split("=", 1)[0]
        known = sorted(set(_option_strings(self)))
        match = difflib.get_close_matches(flag, known, n=1, cutoff=0.7)
        return match[0] if match else None


def _option_strings(parser: argparse.ArgumentParser) -> Iterator[str]:
    """Every flag of `parser` and of its subcommands (argparse reports a subcommand's unknown flags on its parent)."""
    for action in parser._actions:
        yield from (option for option in action.option_strings if option.startswith("--"))
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _option_strings(sub)
