"""Primary keys for tenant data: UUIDv7, made by the application before the row is saved.

Made in Python (not by the database) so that an encrypted column can bind its ciphertext to its
row id before the first INSERT; time-ordered so that indexes stay append-mostly.
"""

from __future__ import annotations

import secrets
import time
import uuid


def uuid7() -> uuid.UUID:
    milliseconds = time.time_ns() // 1_000_000
    random_bits = secrets.randbits(74)
    value = (milliseconds & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76  # version
    value |= (random_bits >> 62) << 64  # 12 bits of rand_a
    value |= 0b10 << 62  # variant
    value |= random_bits & ((1 << 62) - 1)
    return uuid.UUID(int=value)
