-- Deleted subscriptions. Applying a delete removes the row from `players` and leaves its
-- tombstone here, with the app it belonged to and the offset of the delete: the replay rule goes
-- on from it, so a create replayed after a crash finds the delete already applied, and a later
-- update (or create) of the id is refused (`deleted_player`) instead of bringing the row back.
CREATE TABLE deleted_players (
    id            uuid        PRIMARY KEY,
    app_id        uuid        NOT NULL,
    source_offset bigint      NOT NULL,
    deleted_at    timestamptz NOT NULL DEFAULT now()
);

-- A link row belongs to its parent's queue, but a deleted child leaves its own queue first: the
-- link goes when the parent's queue applies the delete (the router sends it there too), in the
-- parent's order. Until then the link names a child that is no longer in `players`.
ALTER TABLE links DROP CONSTRAINT links_child_id_fkey;
