-- The predecessor seeded its default organization with a fixed id, and its web client
-- and scripts send that id when they create a factory. Our default organization answers
-- to it too, so a plant can keep its old client while it moves over: an alias, looked up
-- wherever a request names an organization. Nothing else about existing rows changes.
CREATE TABLE organization_aliases (
    alias            uuid PRIMARY KEY,
    organization_id  uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE
);
INSERT INTO organization_aliases (alias, organization_id)
SELECT '00000000-0000-0000-0000-000000000001', id FROM organizations
WHERE name = 'Default organization'
  AND id <> '00000000-0000-0000-0000-000000000001'
ORDER BY created_at
LIMIT 1;
