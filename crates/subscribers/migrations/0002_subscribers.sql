-- The subscriber store.
--
-- Replay rule: every row remembers `source_offset`, the offset of the newest topic record applied
-- to it. The consumer applies a record to a row only when the record's offset is greater, and
-- stores the new offset in the same statement (or transaction) as the change. A record replayed
-- after a crash or a rebalance therefore changes nothing. Offsets of one partition are
-- comparable, and every record of an app (so every record that touches one of its rows) is in
-- one partition, because the topic is keyed by app.

-- An app and its API key, stored as the SHA-256 of the key: the key itself is shown once.
CREATE TABLE apps (
    id           uuid        PRIMARY KEY,
    name         text        NOT NULL,
    api_key_hash bytea       NOT NULL UNIQUE,
    created_at   timestamptz NOT NULL DEFAULT now()
);

-- Subscriptions. Email subscriptions (device_type 11) created by links have an id derived from
-- the app and the address (UUIDv5), so the consumer can route to them without a lookup.
CREATE TABLE players (
    id               uuid             PRIMARY KEY,
    app_id           uuid             NOT NULL REFERENCES apps (id),
    device_type      integer          NOT NULL,
    identifier       text,
    language         text,
    timezone         integer,
    lat              double precision,
    long             double precision,
    country          text,
    tags             jsonb            NOT NULL DEFAULT '{}',
    external_user_id text,
    -- Children linked to this row; kept here so the link limit is checked without counting.
    linked_children  integer          NOT NULL DEFAULT 0,
    source_offset    bigint           NOT NULL,
    created_at       timestamptz      NOT NULL DEFAULT now(),
    updated_at       timestamptz      NOT NULL DEFAULT now()
);

-- Child subscriptions linked to a parent. A link row belongs to its parent: only the consumer's
-- queue of the parent row writes it. A child has one parent; for a moment after a crash it may
-- have two rows here, and the newest (by offset) is its parent.
CREATE TABLE links (
    parent_id     uuid   NOT NULL REFERENCES players (id),
    child_id      uuid   NOT NULL REFERENCES players (id),
    source_offset bigint NOT NULL,
    PRIMARY KEY (parent_id, child_id)
);
CREATE INDEX links_by_child ON links (child_id, source_offset DESC);

-- The newest offset at which an update for an id was dead-lettered because the id did not exist
-- in the app: lets a parent's queue tell a child that does not exist from one not created yet.
CREATE TABLE rejected_updates (
    app_id        uuid        NOT NULL,
    player_id     uuid        NOT NULL,
    source_offset bigint      NOT NULL,
    rejected_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (app_id, player_id)
);

-- The operator's skip list (PUT/DELETE /admin/skip), read by every process twice a second.
CREATE TABLE skips (
    target     text        NOT NULL CHECK (target IN ('app', 'player')),
    id         uuid        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (target, id)
);
