-- Links carry their app. A child is named by an id any app can write in an update; a link is
-- found, and followed, only within the app that owns both rows, whatever a message claims.
ALTER TABLE links ADD COLUMN app_id uuid;
UPDATE links l SET app_id = p.app_id FROM players p WHERE p.id = l.parent_id;
-- A link whose child belongs to another app than its parent cannot be legitimate: it goes, and
-- its parent's count of children with it.
UPDATE players p
   SET linked_children = p.linked_children - foreign_links.n
  FROM (SELECT l.parent_id, count(*) AS n
          FROM links l JOIN players c ON c.id = l.child_id
         WHERE c.app_id <> l.app_id
         GROUP BY l.parent_id) AS foreign_links
 WHERE p.id = foreign_links.parent_id;
DELETE FROM links l USING players c WHERE c.id = l.child_id AND c.app_id <> l.app_id;
ALTER TABLE links ALTER COLUMN app_id SET NOT NULL;
DROP INDEX links_by_child;
CREATE INDEX links_by_child ON links (app_id, child_id, source_offset DESC);
