//! Driver errors stop here: each `sqlx::Error` becomes a [`switchyard_types::Error`] whose kind
//! the edges can map, with SQLSTATEs translated and no SQL or credentials in the message.

use switchyard_types::{Error, ErrorKind};

/// Translates a driver error. Details go to the log; the message stays generic.
#[allow(
    clippy::wildcard_enum_match_arm,
    reason = "sqlx::Error is non-exhaustive; whatever is not named here is internal"
)]
pub(crate) fn from_sqlx(err: sqlx::Error) -> Error {
    match &err {
        sqlx::Error::Database(db) => match db.code().as_deref() {
            // unique_violation (Postgres) / SQLITE_CONSTRAINT_UNIQUE and _PRIMARYKEY
            Some("23505") | Some("2067") | Some("1555") => {
                Error::new(ErrorKind::AlreadyExists, "the object exists already")
            }
            // serialization_failure, deadlock_detected, SQLITE_BUSY: safe to retry
            Some("40001") | Some("40P01") | Some("5") | Some("517") => {
                Error::unavailable("the database is busy; retry")
            }
            // admin_shutdown, crash_shutdown, cannot_connect_now
            Some("57P01") | Some("57P02") | Some("57P03") => {
                Error::unavailable("the database is restarting; retry")
            }
            _ => internal(err),
        },
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
            tracing::warn!(error = %err, "database unavailable");
            Error::unavailable("the database is unavailable")
        }
        _ => internal(err),
    }
}

fn internal(err: sqlx::Error) -> Error {
    tracing::error!(error = %err, "database error");
    Error::internal(format!("database error: {err}"))
}

/// Translates a migration error.
pub(crate) fn from_migrate(err: sqlx::migrate::MigrateError) -> Error {
    tracing::error!(error = %err, "migration failed");
    Error::internal(format!("migration failed: {err}"))
}
