-- Which of these ids ($2) of app $1 were deleted.
SELECT id FROM deleted_players WHERE app_id = $1 AND id = ANY($2)
