"""Schemathesis hooks for the contract test (loaded through SCHEMATHESIS_HOOKS by run.sh).

`positive_data_acceptance` fails when the server refuses a request that /openapi.json
calls valid. The document states every limit a schema can state (lengths, ranges, item
counts, patterns, enums); what no JSON Schema can state is listed here, one rule each,
and a refusal is forgiven only when the server's problem names exactly such a rule for
every field it refuses. Anything else stays a failure.
"""

from __future__ import annotations

import ast
import json
import linecache
import pathlib
import re
import urllib.parse

import schemathesis
from hypothesis.internal import lambda_sources

# Refusals that depend on what exists or on another field, as (field, detail), both
# regular expressions matched against each entry of the problem's `errors`.
CANNOT_BE_SCHEMA = [
    # Cross-field: a SKU appears once in a request's lines (JSON Schema's uniqueItems
    # compares whole items, not one property of them).
    (r"lines\[\d+\]\.sku", r"may not appear twice"),
    # State: a channel's locations must exist.
    (r"locations\[\d+\]", r"does not exist"),
    # Cross-field: a transfer goes from one location to another.
    (r"destination", r"must differ from origin"),
    # Cross-field: a SKU has one threshold per channel.
    (r"skus\[\d+\]\.sku", r"may not appear twice"),
    # Cross-field and state: a return receipt's location goes with its disposition and
    # must exist; a line is one SKU, disposition and location.
    (r"lines\[\d+\]\.location", r"required|not allowed with missing|does not exist"),
    (r"lines\[\d+\]\.sku", r"same sku, disposition and location twice"),
    # State: a receipt or return names what the transfer, return or shipment holds, and
    # never more than is still in transit, expected, or shipped and not yet returned.
    (r"lines\[\d+\]\.sku", r"is not on (transfer|return|shipment)"),
    (r"lines\[\d+\]\.quantity", r"still in transit|still expects|returns already ask for"),
    # State: a feed or delivery cursor past the brand's newest event cannot be one the
    # server gave out.
    (r"after", r"ahead of this brand's feed"),
    # Opaque: a search cursor is a token the server made, for the same search.
    (r"query\.cursor", r"."),
    # Cross-field: the lower bound of a range is at most the upper one.
    (r"query\.price_min", r"must not exceed price_max"),
    (r"query\.created_from", r"must not be after created_to"),
    # Derived: a search's words are counted and measured after normalisation.
    (r"query\.q", r"at most \d+ words|each word at most"),
    # Address: a webhook URL must parse as a URL and must not point at a private or
    # loopback address (the document gives its scheme and length).
    (r"url", r"."),
    # JSON Schema's "integer" includes 3.0; the server's JSON parser reads integers
    # written as integers only.
    (r".*", r"invalid type: floating point `-?\d+(\.0)?(e\d+)?`, expected [iu]\d+"),
]

# Codes for a well-formed request whose content cannot be used now: another request
# already used the Idempotency-Key, an import file is not the format it says, a
# brand's bound of webhooks or channels is reached, a brand that has configured
# channels is asked about one it has not.
UNUSABLE = {"idempotency_key_reused", "unprocessable", "unknown_channel"}


def _forgiven(response) -> bool:
    try:
        problem = json.loads(response.content)
    except (ValueError, AttributeError):
        return False
    if response.status_code == 422:
        return problem.get("code") in UNUSABLE
    errors = problem.get("errors") or []
    if response.status_code != 400 or not errors:
        return False
    return all(
        any(re.fullmatch(field, e.get("field", "")) and re.search(detail, e.get("detail", "")) for field, detail in CANNOT_BE_SCHEMA)
        for e in errors
    )


def _waited_for_the_index(response) -> bool:
    """A search with a `min_lsn` the index does not reach in 2 s is 503 `not_ready`, as
    documented: the answer to a schema-valid LSN from the future."""
    try:
        problem = json.loads(response.content)
    except (ValueError, AttributeError):
        return False
    return response.status_code == 503 and problem.get("code") == "not_ready" and "did not reach lsn" in problem.get("detail", "")


# The searches read an empty parameter (`brand=`) as an absent one, a documented
# choice: the document keeps each parameter's real type (an id, a time) for clients.
SEARCHES = {"/v1/search/skus", "/v1/search/shipments"}


def _empty_search_parameter(case, response) -> bool:
    """Whether the search was sent with an empty parameter (as the server saw the URL)."""
    if case.operation.path not in SEARCHES:
        return False
    url = getattr(getattr(response, "request", None), "url", "") or ""
    sent = urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query, keep_blank_values=True)
    return any(v == "" for _, v in sent) or any(v == "" for v in (case.query or {}).values())


def _gone_cursor(response) -> bool:
    """A feed or SKU-history cursor of another journal history (`<history>.<seq>`), or
    one older than the retention, is 410 as documented: the schema can give a cursor's
    form, not whether this server's history is the one it names."""
    try:
        problem = json.loads(response.content)
    except (ValueError, AttributeError):
        return False
    return response.status_code == 410 and problem.get("code") in {"cursor_history_changed", "cursor_expired"}


def _refused_head(response) -> bool:
    """A request whose target or head is over the server's bounds is refused before the
    app reads it (414 `uri_too_long`, 431 `headers_too_large`): a refusal, which
    schemathesis' list of refusal statuses does not have."""
    try:
        problem = json.loads(response.content)
    except (ValueError, AttributeError):
        return False
    return (response.status_code, problem.get("code")) in {(414, "uri_too_long"), (431, "headers_too_large")}


@schemathesis.hook
def filter_failure(ctx, failure, case, response):
    kind = type(failure).__name__
    if kind == "AcceptedNegativeData" and _refused_head(response):
        return False
    if kind == "RejectedPositiveData" and _forgiven(response):
        return False
    if kind == "RejectedPositiveData" and _gone_cursor(response):
        return False
    if kind == "AcceptedNegativeData" and 200 <= response.status_code < 300 and _empty_search_parameter(case, response):
        return False
    if kind == "ServerError" and _waited_for_the_index(response):
        return False
    return True


def _prewarm_lambda_sources() -> None:
    """hypothesis names a filter's lambda by parsing the source of its module, the first
    time it needs the name, wherever in the stack that is. On CPython 3.11 before 3.11.9
    `ast.parse` deep in a stack can fail with `SystemError: AST constructor recursion
    depth mismatch`, which ended runs of this test at random. Parsing schemathesis'
    modules here, on a shallow stack, fills the cache so it never parses them again
    (what else hypothesis parses is cached there too, in a run that ends)."""
    root = pathlib.Path(schemathesis.__file__).parent
    sources = [lines for path in root.rglob("*.py") if "lambda" in "".join(lines := linecache.getlines(str(path)))]
    # A plain dict, shared by the worker threads: hypothesis' own cache is per thread.
    parsed = {tuple(lines): lambda_sources.extract_all_lambdas(ast.parse("".join(lines))) for lines in sources}
    lambda_sources.AST_LAMBDAS_CACHE = parsed


_prewarm_lambda_sources()
