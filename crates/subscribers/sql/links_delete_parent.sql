-- Every link of a parent being deleted (app $1, parent $2); the children it had.
DELETE FROM links WHERE app_id = $1 AND parent_id = $2 RETURNING child_id
