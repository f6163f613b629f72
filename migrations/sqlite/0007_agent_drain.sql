-- An operator's drain of an agent; see the PostgreSQL migration of the same number.
ALTER TABLE agents ADD COLUMN draining INTEGER NOT NULL DEFAULT 0;
