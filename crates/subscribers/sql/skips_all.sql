SELECT target, id FROM skips
