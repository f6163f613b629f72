//! Successful completions group-committed, whatever the database: each store writes a batch in
//! one conditional statement and answers each request here from the rows it changed.

use std::collections::{HashMap, HashSet};
use std::future::Future;

use switchyard_types::{Job, JobId, Result, TenantId};
use uuid::Uuid;

use crate::rows::{Op, RawJob, db_int, explain_miss};

/// One successful completion waiting for its batch.
#[derive(Debug)]
pub(crate) struct Success {
    /// The job's tenant.
    pub(crate) tenant: TenantId,
    /// The job.
    pub(crate) id: JobId,
    /// The attempt that succeeded.
    pub(crate) attempt: u32,
    /// The process's exit code, if any.
    pub(crate) exit_code: Option<i32>,
    /// The result document, if any.
    pub(crate) result: Option<serde_json::Value>,
}

/// The requests a batch's statement writes: the first for each job and attempt. A duplicate in
/// the statement would let the database pick which one's result to store, while [`answer`]
/// tells the first it won.
pub(crate) fn distinct(batch: &[Success]) -> Vec<&Success> {
    let mut seen = HashSet::new();
    batch
        .iter()
        .filter(|s| seen.insert((s.id, s.attempt)))
        .collect()
}

/// How a store reads a job as it is now, to explain a request its batch did not change.
pub(crate) trait ReadJob: Sync {
    /// The tenant's job, if it exists.
    fn read_job(
        &self,
        tenant: &TenantId,
        id: JobId,
    ) -> impl Future<Output = Result<Option<Job>>> + Send;
}

/// The answers to a batch, in order, from the rows its statement `updated` (or the error it
/// failed with). A row answers the first request for its id and attempt; every other request
/// (stale attempt, wrong state, unknown job, a duplicate) is explained from the job as `store`
/// reads it now.
pub(crate) async fn answer(
    batch: &[Success],
    updated: Result<Vec<RawJob>>,
    store: &impl ReadJob,
) -> Vec<Result<Job>> {
    let mut updated: HashMap<Uuid, RawJob> = match updated {
        Ok(rows) => rows.into_iter().map(|r| (r.id, r)).collect(),
        Err(e) => return batch.iter().map(|_| Err(e.clone())).collect(),
    };
    let mut out = Vec::with_capacity(batch.len());
    for s in batch {
        let matches = updated
            .get(&s.id.0)
            .is_some_and(|r| r.attempt == db_int(s.attempt));
        let row = if matches {
            updated.remove(&s.id.0)
        } else {
            None
        };
        out.push(match row {
            Some(row) => Job::try_from(row),
            None => match store.read_job(&s.tenant, s.id).await {
                Ok(current) => Err(explain_miss(s.id, current, Op::Complete, s.attempt)),
                Err(e) => Err(e),
            },
        });
    }
    out
}
