-- OneSignal's Player model: what a device and its app report about themselves (game_version,
-- device_model, device_os, ad_id, sdk, session_count, amount_spent, created_at, playtime,
-- badge_count, last_active, notification_types, test_type), kept as one object merged key by
-- key: the service shows these and decides nothing by them.
ALTER TABLE players ADD COLUMN device jsonb NOT NULL DEFAULT '{}';
-- `GET /api/v1/players?app_id=` pages through an app's subscriptions by id; `PUT
-- /api/v1/apps/{app_id}/users/{external_user_id}` finds the app's subscriptions of a user.
CREATE INDEX players_by_app ON players (app_id, id);
CREATE INDEX players_by_external_user ON players (app_id, external_user_id)
    WHERE external_user_id IS NOT NULL;
