-- Whether an agent was enrolled; see the PostgreSQL migration of the same number.
ALTER TABLE agents ADD COLUMN enrolled INTEGER NOT NULL DEFAULT 0;
