DELETE FROM skips WHERE target = $1 AND id = $2
