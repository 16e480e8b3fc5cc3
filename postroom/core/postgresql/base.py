"""Django's PostgreSQL backend with the limit that server-side binding brings.

With ``server_side_binding`` (settings.py) psycopg sends a statement's parameters in the
protocol's Bind message, which counts them in 16 bits: a statement with more than 65,535
parameters is refused before it reaches the server. Django's own PostgreSQL backend knows no
such limit (client-side binding has none), so ``bulk_create`` and ``bulk_update`` of a few
thousand rows build one statement and fail. Here they split their rows into batches that fit,
as they do on SQLite.
"""

from __future__ import annotations

from typing import Any

from django.db.backends.postgresql import base, features, operations

# The protocol's limit on the parameters of one statement (an unsigned 16-bit count).
MAX_PARAMETERS = 65_535
# Rows per bulk_update statement, see DatabaseOperations.bulk_batch_size.
UPDATE_ROWS = 1_000


class DatabaseFeatures(features.DatabaseFeatures):
    max_query_params = MAX_PARAMETERS


class DatabaseOperations(operations.DatabaseOperations):
    def bulk_batch_size(self, fields: Any, objs: Any) -> int:
        # bulk_create binds one parameter per column and row. bulk_update passes [pk, pk,
        # *fields] and binds two per column and row (CASE WHEN pk = %s THEN %s) and the key
        # again in its IN list; two per field fits both shapes.
        size = MAX_PARAMETERS // (2 * max(1, len(fields)))
        if len(fields) >= 2 and fields[0] is fields[1]:
            # bulk_update's CASE is searched row by row, so a batch costs the square of its
            # rows. test_database's 14,000 rows of two columns, on a loaded machine: 31 s in
            # batches of 8,191 rows, 18 s of 3,000, 12-13 s of 1,000, 12 s of 250 (Python's
            # share).
            size = min(size, UPDATE_ROWS)
        return max(1, min(len(objs), size))


class DatabaseWrapper(base.DatabaseWrapper):
    features_class = DatabaseFeatures
    ops_class = DatabaseOperations
