//! Claims group-committed, whatever the database: claims that arrive while earlier ones run are
//! gathered and, per (tenant, pool, labels), served at once by the store's [`ClaimGroup`]. The
//! jobs a group takes, in claim order, are dealt round-robin to its claimants' slots, so each
//! claimant gets its share of the head of the queue and its own agent, lease and holder on
//! every job.

use std::collections::HashMap;
use std::future::Future;

use switchyard_types::{ClaimRequest, Error, Job, Labels, Result, TenantId};

use crate::rows::{RawJob, into_jobs};

/// One claim waiting for its batch.
#[derive(Debug)]
pub(crate) struct PendingClaim {
    /// The tenant to claim from (`None`: any).
    pub(crate) tenant: Option<TenantId>,
    /// What to claim, for whom.
    pub(crate) req: ClaimRequest,
}

/// How a store serves the claims of one (tenant, pool, labels) group at once.
pub(crate) trait ClaimGroup: Sync {
    /// Claims for every claim of the group: the jobs of each claim, in claim order.
    fn claim_group(
        &self,
        tenant: Option<&TenantId>,
        pool: &str,
        labels: &Labels,
        claims: &[&ClaimRequest],
    ) -> impl Future<Output = Result<Vec<Result<Vec<Job>>>>> + Send;
}

/// Serves a batch of claims: one answer per claim, in order. Groups run side by side, so one
/// waiting on a running limit's lock delays no other.
pub(crate) async fn claim_batch(
    store: &impl ClaimGroup,
    batch: Vec<PendingClaim>,
) -> Vec<Result<Vec<Job>>> {
    let mut groups: HashMap<(Option<&TenantId>, &str, &Labels), Vec<usize>> = HashMap::new();
    for (i, c) in batch.iter().enumerate() {
        groups
            .entry((c.tenant.as_ref(), c.req.pool.as_str(), &c.req.labels))
            .or_default()
            .push(i);
    }
    let groups: Vec<_> = groups.into_iter().collect();
    let claimed =
        futures::future::join_all(groups.iter().map(|((tenant, name, labels), members)| {
            let claims: Vec<&ClaimRequest> = members.iter().map(|&i| &batch[i].req).collect();
            async move { store.claim_group(*tenant, name, labels, &claims).await }
        }))
        .await;
    let mut answers: Vec<Option<Result<Vec<Job>>>> = batch.iter().map(|_| None).collect();
    for ((_, members), claimed) in groups.into_iter().zip(claimed) {
        match claimed {
            Ok(jobs) => {
                for (i, jobs) in members.into_iter().zip(jobs) {
                    answers[i] = Some(jobs);
                }
            }
            Err(e) => {
                for i in members {
                    answers[i] = Some(Err(e.clone()));
                }
            }
        }
    }
    answers
        .into_iter()
        .map(|a| a.unwrap_or_else(|| Err(Error::internal("a claim was left out of its batch"))))
        .collect()
}

/// The slots of a group: for each, the index of the claim it belongs to, dealt round-robin so
/// the first jobs of the queue are shared among the claims.
pub(crate) fn deal(claims: &[&ClaimRequest]) -> Vec<usize> {
    let rounds = claims.iter().map(|c| c.max_jobs).max().unwrap_or(0);
    (0..rounds)
        .flat_map(|round| {
            claims
                .iter()
                .enumerate()
                .filter(move |(_, c)| c.max_jobs > round)
                .map(|(i, _)| i)
        })
        .collect()
}

/// The claimed jobs of a group, each with its 1-based slot, handed to the claims owning the
/// slots: the jobs of each claim, in claim order.
pub(crate) fn hand_out(
    slots: &[usize],
    claims: usize,
    claimed: impl IntoIterator<Item = (i64, RawJob)>,
) -> Result<Vec<Result<Vec<Job>>>> {
    let mut taken: Vec<Vec<RawJob>> = (0..claims).map(|_| Vec::new()).collect();
    for (slot, job) in claimed {
        taken[slot_owner(slots, slot)?].push(job);
    }
    Ok(taken
        .into_iter()
        .map(|jobs| into_jobs(jobs, true))
        .collect())
}

/// The claim owning 1-based `slot`.
fn slot_owner(slots: &[usize], slot: i64) -> Result<usize> {
    usize::try_from(slot - 1)
        .ok()
        .and_then(|i| slots.get(i).copied())
        .ok_or_else(|| Error::internal(format!("a claim returned unknown slot {slot}")))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn claim(max_jobs: u32) -> ClaimRequest {
        ClaimRequest {
            agent_id: "a".into(),
            pool: "p".into(),
            labels: Labels::new(),
            max_jobs,
            lease: Duration::from_secs(30),
            holder: None,
        }
    }

    #[test]
    fn slots_are_dealt_round_robin() {
        let (a, b, c) = (claim(3), claim(1), claim(2));
        assert_eq!(deal(&[&a, &b, &c]), [0, 1, 2, 0, 2, 0]);
        assert_eq!(slot_owner(&[0, 1, 2, 0, 2, 0], 5).ok(), Some(2));
        assert!(slot_owner(&[0, 1], 3).is_err());
        assert!(slot_owner(&[0, 1], 0).is_err());
    }
}
