"""Where the command line's names go, as users of ``hf download`` and ``huggingface-cli`` type
them: argparse alone either rejects names after options (``download REPO --local-dir D FILE``)
or, with ``nargs="+"`` patterns, swallows a repo given after ``--include``.

Written here, not left to argparse: argparse has no rule for a positional that may follow an
option's value. Once the repo is given, names after ``--include``/``--exclude``'s first
pattern are more patterns (``--include '*.json' '*.md'``, as huggingface-cli took them);
otherwise, and after any other option or ``--``, names are the repo, then FILES.
"""

from __future__ import annotations

import argparse

__all__ = ["place_names"]

_PATTERNS = ("include", "exclude")


def place_names(
    args: argparse.Namespace, argv: list[str], extra: list[str], parser: argparse.ArgumentParser
) -> None:
    """Set ``args``' repo, FILES and patterns from ``argv`` (what argparse left over in
    ``extra``); a usage error for an unknown option or a name with no place."""
    where: argparse.ArgumentParser | None = getattr(args, "_parser_of", None)
    if where is None:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
        return
    words = argv[argv.index(args.command) + 1 :]  # the top level's options take no value
    names: list[str] = []
    more: dict[str, list[str]] = {p: [] for p in _PATTERNS}
    pattern: str | None = None
    literal = False
    i = 0
    while i < len(words):
        word = words[i]
        i += 1
        if literal or word == "-" or not word.startswith("-"):
            if pattern and names and not literal:
                more[pattern].append(word)
            else:
                names.append(word)
            continue
        if word == "--":
            literal = True
            continue
        flag, eq, _ = word.partition("=")
        action = _action(where, flag)
        if action is None:
            where.error(f"unrecognized arguments: {word}")
            return
        if action.nargs != 0 and not eq:
            i += 1  # its value
        pattern = action.dest if action.dest in _PATTERNS else None
    files = hasattr(args, "files")
    if not names or (len(names) > 1 and not files):
        where.error(f"unrecognized arguments: {' '.join(extra)}")
        return
    args.repo = names[0]
    if files:
        args.files = names[1:]
    for name, patterns in more.items():
        if patterns:
            setattr(args, name, [*(getattr(args, name) or []), *patterns])


def _action(parser: argparse.ArgumentParser, flag: str) -> argparse.Action | None:
    """The option ``flag`` names, exactly or by a unique prefix (as argparse allows)."""
    table = {s: a for a in parser._actions for s in a.option_strings}
    if flag in table:
        return table[flag]
    if flag.startswith("--"):
        found = {a for s, a in table.items() if s.startswith(flag)}
        if len(found) == 1:
            return found.pop()
    return None
