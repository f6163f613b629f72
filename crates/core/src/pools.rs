//! Agent pools (DESIGN §3.5): an operator's bounds and pinned target, the pool's agents and
//! work, and the scaling signal an autoscaler follows.
//!
//! The signal, `desired_agents`: the jobs the pool holds (queued, claimed and running) divided
//! by the mean capacity of its connected agents ([`DEFAULT_AGENT_CAPACITY`] when none is
//! connected), rounded up; at least one more than the connected agents when a due job has waited
//! longer than [`BACKLOG_WAIT`]; the pinned target instead, when there is one; always within the
//! pool's bounds.

use std::collections::BTreeMap;
use std::time::Duration;

use switchyard_types::{
    Agent, AgentStatus, Error, Pool, PoolScale, PoolSettings, Principal, QueueStats, Result,
    Violations,
};

use crate::agents::Agents;

/// The slots assumed per agent when a pool has no connected agent to measure.
pub const DEFAULT_AGENT_CAPACITY: u32 = 4;

/// How long a due job may wait before the signal asks for one more agent.
pub const BACKLOG_WAIT: Duration = Duration::from_secs(30);

impl Agents {
    /// The caller's pools: every pool that has settings, agents or work, by name.
    pub async fn pools(&self, who: &Principal) -> Result<Vec<Pool>> {
        let (settings, agents, stats) = self.pool_inputs(who).await?;
        let mut names: BTreeMap<String, ()> = BTreeMap::new();
        names.extend(settings.iter().map(|s| (s.pool.clone(), ())));
        names.extend(agents.iter().map(|a| (a.pool.clone(), ())));
        names.extend(stats.iter().map(|s| (s.pool.clone(), ())));
        Ok(names
            .into_keys()
            .map(|name| summarise(&name, &settings, &agents, &stats))
            .collect())
    }

    /// One of the caller's pools (the defaults, with no agents or work, for a pool never used).
    pub async fn pool(&self, who: &Principal, name: &str) -> Result<Pool> {
        check_name(name)?;
        let (settings, agents, stats) = self.pool_inputs(who).await?;
        Ok(summarise(name, &settings, &agents, &stats))
    }

    /// Changes a pool's bounds or target.
    pub async fn scale(&self, who: &Principal, name: &str, change: &PoolScale) -> Result<Pool> {
        check_name(name)?;
        let current = self
            .store()
            .pool_settings(&who.tenant)
            .await?
            .into_iter()
            .find(|s| s.pool == name)
            .unwrap_or_else(|| PoolSettings::defaults(name));
        let next = apply(current, change)?;
        self.store().set_pool_settings(&who.tenant, &next).await?;
        tracing::info!(pool = name, min = next.min_agents, max = next.max_agents, target = ?next.target_agents, by = %who.subject, "pool scaled");
        self.pool(who, name).await
    }

    async fn pool_inputs(
        &self,
        who: &Principal,
    ) -> Result<(Vec<PoolSettings>, Vec<Agent>, Vec<QueueStats>)> {
        let settings = self.store().pool_settings(&who.tenant).await?;
        let agents = self.list(who, None).await?;
        let stats = self.queue().stats(who).await?;
        Ok((settings, agents, stats))
    }
}

fn check_name(name: &str) -> Result<()> {
    let mut v = Violations::default();
    v.name("pool", name);
    v.finish()
}

/// `current` changed by `change`, checked: `min <= target <= max <= MAX_AGENTS`.
fn apply(current: PoolSettings, change: &PoolScale) -> Result<PoolSettings> {
    if change.follow_demand && change.target_agents.is_some() {
        return Err(Error::invalid(
            "follow_demand",
            "cannot be set together with target_agents",
        ));
    }
    let next = PoolSettings {
        min_agents: change.min_agents.unwrap_or(current.min_agents),
        max_agents: change.max_agents.unwrap_or(current.max_agents),
        target_agents: if change.follow_demand {
            None
        } else {
            change.target_agents.or(current.target_agents)
        },
        ..current
    };
    let mut v = Violations::default();
    if next.max_agents > PoolSettings::MAX_AGENTS {
        v.add(
            "max_agents",
            format!("must be at most {}", PoolSettings::MAX_AGENTS),
        );
    }
    if next.min_agents > next.max_agents {
        v.add("min_agents", "must not exceed max_agents");
    }
    if let Some(target) = next.target_agents
        && !(next.min_agents..=next.max_agents).contains(&target)
    {
        v.add("target_agents", "must be between min_agents and max_agents");
    }
    v.finish()?;
    Ok(next)
}

/// Pool `name` from its settings, the tenant's agents and the queue's figures.
fn summarise(
    name: &str,
    settings: &[PoolSettings],
    agents: &[Agent],
    stats: &[QueueStats],
) -> Pool {
    let settings = settings
        .iter()
        .find(|s| s.pool == name)
        .cloned()
        .unwrap_or_else(|| PoolSettings::defaults(name));
    let mine: Vec<&Agent> = agents
        .iter()
        .filter(|a| a.pool == name && a.status != AgentStatus::Terminated)
        .collect();
    let connected: Vec<&&Agent> = mine
        .iter()
        .filter(|a| {
            matches!(
                a.status,
                AgentStatus::Healthy
                    | AgentStatus::Degraded
                    | AgentStatus::Unhealthy
                    | AgentStatus::Terminating
            )
        })
        .collect();
    let capacity: u32 = connected.iter().map(|a| a.capacity).sum();
    let running: u32 = connected.iter().map(|a| a.running).sum();
    let work = stats.iter().filter(|s| s.pool == name);
    let (mut queued, mut held, mut oldest) = (0u64, 0u64, 0f64);
    for s in work {
        queued += s.queued;
        held += s.claimed + s.running;
        oldest = oldest.max(s.oldest_queued_age_seconds);
    }
    let connected_count = u32::try_from(connected.len()).unwrap_or(u32::MAX);
    let desired = desired_agents(
        &settings,
        queued + held,
        queued,
        oldest,
        connected_count,
        capacity,
    );
    Pool {
        agents: u32::try_from(mine.len()).unwrap_or(u32::MAX),
        connected: connected_count,
        capacity,
        running,
        queued,
        oldest_wait_seconds: oldest,
        desired_agents: desired,
        settings,
    }
}

/// The scaling signal; see the module docs.
fn desired_agents(
    settings: &PoolSettings,
    demand: u64,
    queued: u64,
    oldest_wait_seconds: f64,
    connected: u32,
    capacity: u32,
) -> u32 {
    let wanted = match settings.target_agents {
        Some(target) => target,
        None => {
            let per_agent = capacity
                .checked_div(connected)
                .map_or(DEFAULT_AGENT_CAPACITY, |mean| mean.max(1));
            let by_demand =
                u32::try_from(demand.div_ceil(u64::from(per_agent))).unwrap_or(u32::MAX);
            if queued > 0 && oldest_wait_seconds > BACKLOG_WAIT.as_secs_f64() {
                by_demand.max(connected.saturating_add(1))
            } else {
                by_demand
            }
        }
    };
    wanted.clamp(settings.min_agents, settings.max_agents)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bounds(min: u32, max: u32, target: Option<u32>) -> PoolSettings {
        PoolSettings {
            pool: "build".into(),
            min_agents: min,
            max_agents: max,
            target_agents: target,
        }
    }

    #[test]
    fn the_signal_follows_demand_backlog_and_bounds() {
        let free = bounds(0, 100, None);
        // Ten jobs, no agent yet: 10 / 4 slots each, rounded up.
        assert_eq!(desired_agents(&free, 10, 10, 0.0, 0, 0), 3);
        // Two agents of 8 slots hold 16 jobs with 4 waiting: 20 / 8 -> 3.
        assert_eq!(desired_agents(&free, 20, 4, 1.0, 2, 16), 3);
        // Nothing to do: none wanted, unless the floor says otherwise.
        assert_eq!(desired_agents(&free, 0, 0, 0.0, 2, 8), 0);
        assert_eq!(desired_agents(&bounds(1, 100, None), 0, 0, 0.0, 2, 8), 1);
        // A backlog older than BACKLOG_WAIT asks for one more than connected.
        assert_eq!(desired_agents(&free, 4, 1, 31.0, 3, 12), 4);
        // The ceiling holds, and a pinned target wins within the bounds.
        assert_eq!(desired_agents(&bounds(0, 2, None), 100, 100, 0.0, 0, 0), 2);
        assert_eq!(
            desired_agents(&bounds(0, 10, Some(5)), 100, 100, 99.0, 0, 0),
            5
        );
    }

    #[test]
    fn scaling_keeps_min_target_max_in_order() {
        let current = bounds(1, 10, None);
        let pinned = apply(
            current.clone(),
            &PoolScale {
                target_agents: Some(4),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(pinned.target_agents, Some(4));
        let widened = apply(
            pinned.clone(),
            &PoolScale {
                max_agents: Some(20),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!((widened.max_agents, widened.target_agents), (20, Some(4)));
        let freed = apply(
            widened,
            &PoolScale {
                follow_demand: true,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(freed.target_agents, None);
        for bad in [
            PoolScale {
                min_agents: Some(11),
                ..Default::default()
            },
            PoolScale {
                target_agents: Some(11),
                ..Default::default()
            },
            PoolScale {
                max_agents: Some(PoolSettings::MAX_AGENTS + 1),
                ..Default::default()
            },
            PoolScale {
                target_agents: Some(2),
                follow_demand: true,
                ..Default::default()
            },
        ] {
            assert!(apply(current.clone(), &bad).is_err(), "{bad:?}");
        }
    }
}
