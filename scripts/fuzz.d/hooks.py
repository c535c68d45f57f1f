"""Schemathesis hooks for scripts/fuzz.

Generated requests name random apps (in bodies, queries and paths), so every subscriber request with a well-formed body would
stop at the app check (403) and never reach Kafka and the consumer. Where a generated `app_id`
is a well-formed UUID, these hooks put in the app whose key the run uses; malformed ones stay as
they are, so the negative cases keep their point. The accepted updates then travel through Kafka
to the consumer, and scripts/fuzz fails if the consumer dead-letters any of them as `invalid` or
`malformed`: an update the API acknowledged must be one the consumer can apply.
"""

import os
import uuid

import schemathesis

APP = os.environ["FUZZ_APP_ID"]


def _ours(value):
    if not isinstance(value, str):
        return value
    try:
        uuid.UUID(value)
    except ValueError:
        return value
    return APP


@schemathesis.hook
def map_body(ctx, body):
    if isinstance(body, dict) and "app_id" in body:
        body["app_id"] = _ours(body["app_id"])
    return body


@schemathesis.hook
def map_query(ctx, query):
    if isinstance(query, dict) and "app_id" in query:
        query["app_id"] = _ours(query["app_id"])
    return query


@schemathesis.hook
def map_path_parameters(ctx, path_parameters):
    if isinstance(path_parameters, dict) and "app_id" in path_parameters:
        path_parameters["app_id"] = _ours(path_parameters["app_id"])
    return path_parameters
