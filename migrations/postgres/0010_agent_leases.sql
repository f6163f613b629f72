-- Agent-level leases: a job pushed to an agent over its stream names that agent
-- (`holder_agent`), and the agent's heartbeats extend `agents.lease_until`, one narrow row,
-- instead of rewriting every held job's row. The reaper takes a job only once both its own
-- lease (set at claim, the floor) and its holder's lease have run out.
ALTER TABLE agents ADD COLUMN lease_until TIMESTAMPTZ;
ALTER TABLE jobs ADD COLUMN holder_agent UUID;
