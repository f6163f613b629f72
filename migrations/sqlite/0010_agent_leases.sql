-- Agent-level leases; see the PostgreSQL migration of the same number.
ALTER TABLE agents ADD COLUMN lease_until INTEGER;
ALTER TABLE jobs ADD COLUMN holder_agent TEXT;
