-- The chaos run's record of every write of a subscription row, installed in the run's own
-- database after the service's migrations. The trigger runs inside the consumer's transaction,
-- so exactly the committed writes are recorded; the consumer locks the row before writing it, so
-- a row's writes get their `n` in commit order. `seq` is the sequence number the run's traffic
-- puts in tag `seq`.
CREATE TABLE chaos_history (
    n             bigserial   PRIMARY KEY,
    player_id     uuid        NOT NULL,
    seq           bigint,
    source_offset bigint      NOT NULL,
    at            timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE FUNCTION chaos_record() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO chaos_history (player_id, seq, source_offset)
    VALUES (NEW.id, (NEW.tags ->> 'seq')::bigint, NEW.source_offset);
    RETURN NEW;
END
$$;

CREATE TRIGGER chaos_history AFTER INSERT OR UPDATE ON players
    FOR EACH ROW EXECUTE FUNCTION chaos_record();
