//! Running limits, shared by both adapters: which claim candidates fit under their tenant's
//! `max_running` and their concurrency key's limit, counting the jobs already claimed or running
//! and the candidates chosen before them (in claim order).

use std::collections::{BTreeSet, HashMap};

/// SQL (both dialects) keeping out candidate `j` (joined with its `tenant_limits` row `l`) whose
/// key or tenant is visibly at its limit, so such jobs never hide claimable work behind them.
/// On PostgreSQL the snapshot may be stale: the claim re-counts under locks before it takes them.
macro_rules! under_limits {
    () => {
        "(j.concurrency_key IS NULL OR j.concurrency_limit > (
             SELECT count(*) FROM jobs r WHERE r.state IN (1, 2)
               AND r.tenant_id = j.tenant_id AND r.concurrency_key = j.concurrency_key))
         AND (l.max_running IS NULL OR l.max_running > (
             SELECT count(*) FROM jobs r WHERE r.state IN (1, 2) AND r.tenant_id = j.tenant_id))"
    };
}

use uuid::Uuid;

/// A queued job the claim would like to take, with the limits that apply to it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct Candidate {
    pub id: Uuid,
    pub tenant_id: String,
    pub concurrency_key: Option<String>,
    pub concurrency_limit: i64,
    /// The tenant's `max_running`, when it has one.
    pub max_running: Option<i64>,
}

impl Candidate {
    /// Whether a limit applies, so taking it needs the limit locks and a fresh count.
    pub(crate) fn is_constrained(&self) -> bool {
        self.concurrency_key.is_some() || self.max_running.is_some()
    }
}

/// Jobs claimed or running now, per tenant and per (tenant, concurrency key).
#[derive(Debug, Default)]
pub(crate) struct Running {
    tenants: HashMap<String, i64>,
    keys: HashMap<(String, String), i64>,
}

impl Running {
    /// Counts `n` running jobs of `tenant` with `key`.
    pub(crate) fn add(&mut self, tenant: &str, key: Option<&str>, n: i64) {
        *self.tenants.entry(tenant.to_owned()).or_default() += n;
        if let Some(key) = key {
            *self
                .keys
                .entry((tenant.to_owned(), key.to_owned()))
                .or_default() += n;
        }
    }

    /// The candidates, in the order given, that fit, taking at most `max`.
    pub(crate) fn choose(mut self, candidates: &[Candidate], max: usize) -> Vec<Uuid> {
        let mut chosen = Vec::new();
        for c in candidates {
            if chosen.len() == max {
                break;
            }
            let tenant_running = self.tenants.get(&c.tenant_id).copied().unwrap_or(0);
            if c.max_running.is_some_and(|limit| tenant_running >= limit) {
                continue;
            }
            if let Some(key) = &c.concurrency_key {
                let key_running = self.keys.get(&(c.tenant_id.clone(), key.clone())).copied();
                if key_running.unwrap_or(0) >= c.concurrency_limit {
                    continue;
                }
            }
            self.add(&c.tenant_id, c.concurrency_key.as_deref(), 1);
            chosen.push(c.id);
        }
        chosen
    }
}

/// The names of the locks a claim holds while it counts and takes `candidates`: one per limited
/// tenant and one per (tenant, key). A `BTreeSet`, so every claimer takes them in one order.
pub(crate) fn lock_names(candidates: &[Candidate]) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for c in candidates {
        if c.max_running.is_some() {
            names.insert(format!("tenant/{}", c.tenant_id));
        }
        if let Some(key) = &c.concurrency_key {
            names.insert(format!("key/{}/{key}", c.tenant_id));
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(
        tenant: &str,
        key: Option<&str>,
        key_limit: i64,
        max_running: Option<i64>,
    ) -> Candidate {
        Candidate {
            id: Uuid::new_v4(),
            tenant_id: tenant.into(),
            concurrency_key: key.map(str::to_owned),
            concurrency_limit: key_limit,
            max_running,
        }
    }

    #[test]
    fn limits_count_running_jobs_and_earlier_choices() {
        let cs = [
            cand("a", Some("db"), 2, None),
            cand("a", Some("db"), 2, None),
            cand("a", Some("db"), 2, None),
            cand("b", None, 1, Some(1)),
            cand("b", None, 1, Some(1)),
            cand("c", None, 1, None),
        ];
        let mut running = Running::default();
        running.add("a", Some("db"), 1);
        let chosen = running.choose(&cs, 10);
        assert_eq!(chosen, [cs[0].id, cs[3].id, cs[5].id]);
        assert_eq!(Running::default().choose(&cs, 2), [cs[0].id, cs[1].id]);
    }

    #[test]
    fn lock_names_are_sorted_and_cover_each_limit() {
        let cs = [
            cand("b", Some("x"), 1, Some(3)),
            cand("a", None, 1, None),
            cand("a", Some("y"), 1, None),
        ];
        let names: Vec<_> = lock_names(&cs).into_iter().collect();
        assert_eq!(names, ["key/a/y", "key/b/x", "tenant/b"]);
    }
}
