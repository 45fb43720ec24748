"""Temporary passwords that meet Entra's complexity rules (8-256 characters, at least three of
upper, lower, digit, symbol) with every class present, and no look-alike characters."""

from __future__ import annotations

import secrets

from bot.logs import register_secret

UPPER = "ABCDEFGHJKLMNPQRSTUVWXYZ"
LOWER = "abcdefghijkmnopqrstuvwxyz"
DIGITS = "23456789"
SYMBOLS = "!#$%&*+-=?@"


def generate_password(length: int = 16) -> str:
    if length < 12:
        raise ValueError("temporary passwords are at least 12 characters")
    pools = (UPPER, LOWER, DIGITS, SYMBOLS)
    chars = [secrets.choice(pool) for pool in pools]
    everything = "".join(pools)
    chars += [secrets.choice(everything) for _ in range(length - len(chars))]
    # Fisher-Yates with a CSPRNG so the guaranteed classes are not always first.
    for i in range(len(chars) - 1, 0, -1):
        j = secrets.randbelow(i + 1)
        chars[i], chars[j] = chars[j], chars[i]
    password = "".join(chars)
    register_secret(password)  # never logged, in any form, from here on
    return password
