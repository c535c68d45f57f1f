"""OneSignal's own Python SDK (onesignal-python-api, pinned in sdk-version) against the service.

Run by crates/subscribers/tests/onesignal_sdk.rs with ONESIGNAL_HOST (the service's /api/v1),
APP_ID and APP_KEY. Every call goes through the SDK's typed methods and models: an answer its
models cannot parse raises, and the script exits non-zero. Prints one JSON object per line,
what the Rust test checks against the database:
  {"step": ..., ...}
"""

import json
import os
import sys
import time

import onesignal
from onesignal.api import default_api
from onesignal.exceptions import NotFoundException
from onesignal.model.player import Player
from onesignal.model.update_player_tags_request_body import UpdatePlayerTagsRequestBody

APP = os.environ["APP_ID"]
ORDERED_UPDATES = 1000


def report(**fields):
    print(json.dumps(fields), flush=True)


def check(cond, what):
    if not cond:
        sys.exit(f"failed: {what}")


def until(what, probe, seconds=60):
    """probe() until it returns something truthy; a 404 counts as not yet."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            got = probe()
        except NotFoundException:
            got = None
        if got:
            return got
        check(time.monotonic() < deadline, f"{what} within {seconds}s")
        time.sleep(0.05)


config = onesignal.Configuration(host=os.environ["ONESIGNAL_HOST"], app_key=os.environ["APP_KEY"])
with onesignal.ApiClient(config) as client:
    api = default_api.DefaultApi(client)

    # Create, with the fields the SDK's model carries.
    created = api.create_player(
        Player(
            device_type=1, app_id=APP, identifier="token-1", language="en", timezone=-28800,
            game_version="1.0", device_model="Pixel 8", device_os="14", ad_id="ad-1",
            sdk="python-sdk", session_count=1, amount_spent=1.5, playtime=10, badge_count=0,
            last_active=1_700_000_000, notification_types=1, test_type=1, long=-87.6, lat=41.9,
            country="US", external_user_id="sdk-user",
            tags={"level": 3, "vip": True, "name": "Jon"},
        )
    )
    check(created.success, "create answers success")
    device = created.id
    shown = until("the create applied", lambda: api.get_player(APP, device))
    check(shown.game_version == "1.0" and shown.session_count == 1, f"fields kept: {shown}")
    check(shown.tags == {"level": "3", "vip": "true", "name": "Jon"}, f"tags as strings: {shown.tags}")
    check(isinstance(shown.created_at, int), "created_at in Unix seconds")
    report(step="created", id=device)

    # Update, as the SDK sends it (device_type always there); "" deletes a tag.
    updated = api.update_player(
        device, Player(device_type=1, app_id=APP, language="fr", tags={"level": 4, "name": ""})
    )
    check(updated.success, "update answers success")
    shown = until("the update applied", lambda: (p := api.get_player(APP, device)).language == "fr" and p)
    check(shown.tags == {"level": "4", "vip": "true"}, f"tags after update: {shown.tags}")
    report(step="updated", id=device)

    # List.
    page = api.get_players(APP, limit=300, offset=0)
    check(page.total_count >= 1 and page.limit == 300 and page.offset == 0, f"page: {page}")
    check(device in [p.id for p in page.players], "the device is listed")
    report(step="listed", total_count=page.total_count)

    # Tags by external user id.
    edited = api.update_player_tags(
        APP, "sdk-user",
        update_player_tags_request_body=UpdatePlayerTagsRequestBody(tags={"from_user": "yes", "vip": None}),
    )
    check(edited.success, "tags by external user id answer success")
    shown = until("the user's tags applied", lambda: (p := api.get_player(APP, device)).tags.get("from_user") and p)
    check(shown.tags == {"level": "4", "from_user": "yes"}, f"tags by user: {shown.tags}")
    report(step="user_tags", id=device)

    # 1,000 updates of one device in a row: the last one must win.
    ordered = api.create_player(Player(device_type=0, app_id=APP)).id
    until("the ordered device created", lambda: api.get_player(APP, ordered))
    for i in range(ORDERED_UPDATES):
        answer = api.update_player(
            ordered, Player(device_type=0, app_id=APP, session_count=i, tags={"n": i})
        )
        check(answer.success, f"update {i} answers success")
    report(step="ordered", id=ordered, last=ORDERED_UPDATES - 1)

    # Delete.
    doomed = api.create_player(Player(device_type=5, app_id=APP)).id
    until("the doomed device created", lambda: api.get_player(APP, doomed))
    deleted = api.delete_player(APP, doomed)
    check(deleted.success, "delete answers success")
    report(step="deleted", id=doomed)
