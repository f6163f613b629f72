-- An operator's drain of an agent (status TERMINATING while connected): it keeps its running
-- jobs and takes no new work until undrained. Kept apart from `status`, which its streams rewrite.
ALTER TABLE agents ADD COLUMN draining BOOLEAN NOT NULL DEFAULT false;
