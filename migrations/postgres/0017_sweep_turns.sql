-- Turns of periodic work that one replica at a time does for all (the artifact store's orphan
-- sweep): a replica runs the task only when it moves `next_at` forward, so each period's turn
-- goes to one replica.
CREATE TABLE sweep_turns (
    task    text        PRIMARY KEY,
    next_at timestamptz NOT NULL
);
