-- Turns of periodic work done by one replica at a time (embedded SQLite); see the PostgreSQL
-- migration of the same number. `next_at` is in milliseconds since the Unix epoch.
CREATE TABLE sweep_turns (
    task    TEXT    PRIMARY KEY,
    next_at INTEGER NOT NULL
);
