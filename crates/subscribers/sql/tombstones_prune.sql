-- Forgets at most $2 tombstones of rows deleted more than $1 seconds ago, oldest first; the
-- caller repeats until fewer come back, so that no one statement holds many locks.
DELETE FROM deleted_players
 WHERE id IN (SELECT id FROM deleted_players
               WHERE deleted_at < now() - make_interval(secs => $1)
               ORDER BY deleted_at
               LIMIT $2)
