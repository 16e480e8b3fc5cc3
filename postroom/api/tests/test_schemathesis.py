"""R59 (with R20, R21 and R23 for the API): schemathesis against a real ``postroom run``.

A throwaway server (SQLite in a temporary data directory, or a fresh PostgreSQL database on the
PostgreSQL run) is seeded with two organizations (fuzz_seed.py); everything of organization B
carries a random canary string. Schemathesis loads /api/v1/openapi.json from that server with an
API token of organization A's owner (write scope, so every operation is reachable) and calls
every operation with generated valid and invalid input, then with methods the document does not
list. Path parameters are mostly drawn from real ids — A's and B's alike — and the organization
slug is mostly A's, sometimes B's, so generated requests reach real objects and try the other
tenant's. Every answer must pass all of schemathesis's checks — no 5xx; status codes, content
types, headers and bodies as documented; valid input accepted and invalid input rejected; 405
with ``Allow`` for an undocumented method; 401 when the token is left out — and
``org_b_canary_never_answered``: nothing of B ever reaches A's caller. When the module is done,
``run_statistics`` checks that the run really reached the API (2xx answers from most operations,
405s) and that the token never reached the server's log.

Select it alone with ``pytest -m fuzz``; it is part of the default suite (two to three minutes
here). A schema-valid request may still break a business rule (a team name already taken,
inviting someone who is already a member, the last owner leaving); Postroom answers those 422
naming the field, so 422 counts as an accepted answer to valid input.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import schemathesis

from postroom.core.tests.processes import REPOSITORY, clean_environment, product_database, running_postroom
from postroom.testing.dovecot import free_port

pytestmark = pytest.mark.fuzz

MAX_EXAMPLES = 20
ID_PARAMETERS = (
    "membership_id", "team_id", "invitation_id", "mailbox_id", "conversation_id", "message_id", "attachment_id", "label_id", "outgoing_id", "response_id",
)  # fmt: skip
# The conversation list's filters, by the dictionary of real ids they draw from.
QUERY_IDS = {"team_id": "team_id", "label_id": "label_id", "assignee_id": "membership_id"}


@dataclass
class FuzzServer:
    base_url: str
    token: str
    canary: str
    ids: dict[str, list[Any]]
    log: Path
    statuses: Counter[tuple[str, str, int]] = field(default_factory=Counter)


@pytest.fixture(scope="module")
def fuzz_server() -> Iterator[FuzzServer]:
    canary = f"CANARY{secrets.token_hex(6).upper()}"
    with tempfile.TemporaryDirectory(prefix="postroom-fuzz-") as directory, product_database("fuzz") as database_url:
        data_dir = Path(directory)
        port = free_port()
        environment = clean_environment(
            data_dir,
            POSTROOM_PUBLIC_URL=f"http://127.0.0.1:{port}",
            POSTROOM_LOG_LEVEL="INFO",
            DJANGO_SETTINGS_MODULE="postroom.settings",
            **({"DATABASE_URL": database_url} if database_url else {}),
        )
        seeded = subprocess.run(
            [sys.executable, "-m", "postroom.api.tests.fuzz_seed", canary, str(free_port())],
            env=environment,
            cwd=REPOSITORY,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert seeded.returncode == 0, seeded.stderr[-3000:]
        facts = json.loads(seeded.stdout.strip().splitlines()[-1])
        log = data_dir / "console.log"
        with running_postroom("run", "--port", str(port), environment=environment, port=port, output_path=log) as process:
            process.wait_for_http()
            server = FuzzServer(base_url=f"http://127.0.0.1:{port}", token=facts["token"], canary=canary, ids=facts["ids"], log=log)
            yield server
        run_statistics(server)


def run_statistics(server: FuzzServer) -> None:
    """After the run: it reached the API, and the token never reached the log."""
    answered = {(method, path) for method, path, status in server.statuses if 200 <= status < 300}
    operations = {(method, path) for method, path, _status in server.statuses}
    assert len(operations) >= 20, sorted(operations)
    assert len(answered) >= 15, f"only {sorted(answered)} ever answered 2xx: the run did not reach the API"
    assert any(status == 405 for _method, _path, status in server.statuses), "no undocumented method was tried"
    assert any(status == 401 for _method, _path, status in server.statuses), "no request without the token was tried"
    assert server.token[11:] not in server.log.read_text(encoding="utf-8", errors="replace"), "the API token reached the server's log"


@pytest.fixture(scope="module")
def api_schema(fuzz_server: FuzzServer) -> Any:
    ids = fuzz_server.ids
    config = schemathesis.Config.from_dict(
        {
            "base-url": fuzz_server.base_url,
            "auth": {"openapi": {"ApiTokenAuth": {"bearer": fuzz_server.token}}},
            "generation": {"max-examples": MAX_EXAMPLES, "mode": "all"},
            "phases": {"stateful": {"enabled": False}},
            "checks": {"positive_data_acceptance": {"expected-statuses": ["2xx", "401", "403", "404", "422"]}},
            "dictionaries": {
                "slug": {"values": ["acme", "acme", "acme", "beta"]},
                **{name: {"values": ids[name] + ids[f"other_{name}"]} for name in ID_PARAMETERS},
            },
            "parameters": {
                **{f"path.{name}": {"dictionary": name, "probability": 0.9} for name in ("slug", *ID_PARAMETERS)},
                **{f"query.{name}": {"dictionary": dictionary, "probability": 0.5} for name, dictionary in QUERY_IDS.items()},
            },
            "request-timeout": 30,
            "seed": 59,
        }
    )
    return schemathesis.openapi.from_url(
        f"{fuzz_server.base_url}/api/v1/openapi.json",
        config=config,
        headers={"Authorization": f"Bearer {fuzz_server.token}"},
        timeout=30,
    )


def canary_check(server: FuzzServer) -> Any:
    """A schemathesis check: no answer (body or headers) contains organization B's canary. It
    also counts the answers for ``run_statistics``."""

    def org_b_canary_never_answered(
        ctx: schemathesis.CheckContext, response: schemathesis.Response, case: schemathesis.Case
    ) -> bool | None:
        server.statuses[(response.request.method or "", case.operation.path, response.status_code)] += 1
        seen = response.text + json.dumps(dict(response.headers))
        if server.canary in seen or server.canary.lower() in seen:
            raise AssertionError(f"{case.method} {case.formatted_path} answered organization B's canary")
        return None

    return org_b_canary_never_answered


@pytest.fixture(autouse=True)
def _node_id_for_schemathesis(request: pytest.FixtureRequest) -> None:
    # schemathesis 4.32's lazy loader reads ``node._nodeid``, which pytest 9.2 no longer has (the
    # id lives in ``nodeid``); it only uses it to name the sub-tests in the report.
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid


schema = schemathesis.pytest.from_fixture("api_schema")


# One test runs every operation (about 55) with its examples: some three minutes on this machine
# alone, more while the rest of the suite runs beside it; the default 300 s is for one test's worth.
@pytest.mark.timeout(900)
@schema.parametrize()
def test_r59_the_api_survives_schemathesis(case: schemathesis.Case, fuzz_server: FuzzServer) -> None:
    case.call_and_validate(additional_checks=[canary_check(fuzz_server)])
