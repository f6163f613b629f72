//! Live activity for one watcher (`/api/ws`): the changes to jobs, agents and deployments of the
//! watcher's tenant that its scopes let it read, as the bus's activity feed numbers them, from
//! every replica. A watcher may resume after the last id it saw; one that falls behind the
//! feed is told so and dropped rather than slowing anyone down.

use std::collections::BTreeSet;
use std::sync::Arc;

use switchyard_bus::{FeedEntry, FeedId, feed};
use switchyard_types::{Error, ErrorKind, JobId, Principal, Result, Scope, Topic};
use tokio::sync::broadcast::{self, error::RecvError};
use tokio_util::sync::CancellationToken;

use crate::queue::Queue;

/// What a watcher asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WatchRequest {
    /// The topics to watch; empty: every topic the watcher may read.
    pub topics: BTreeSet<Topic>,
    /// Only this job's activity (topic `job` only).
    pub job: Option<JobId>,
    /// Resume after this id: first the kept entries that followed it, then live ones.
    pub after: Option<FeedId>,
}

/// What a watcher receives next.
#[derive(Debug, Clone, PartialEq)]
pub enum Delivery {
    /// A change it may see.
    Entry(Arc<FeedEntry>),
    /// Entries after the requested id may be missing (no longer kept, or the feed was
    /// restarted): reload what is shown, then go on.
    Gap,
}

/// Why a subscription ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The watcher fell so far behind the feed that `missed` entries were lost: it should
    /// reconnect with the last id it saw.
    TooSlow {
        /// Entries it lost.
        missed: u64,
    },
    /// The feed closed (the server is stopping).
    Closed,
}

impl std::fmt::Display for Ended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ended::TooSlow { missed } => write!(
                f,
                "too slow: {missed} events were not read in time; reconnect with the last event id seen"
            ),
            Ended::Closed => f.write_str("the server is stopping"),
        }
    }
}

/// The scope a topic needs.
pub fn scope_of(topic: Topic) -> Scope {
    match topic {
        Topic::Job => Scope::JobsRead,
        Topic::Agent => Scope::AgentsRead,
        Topic::Deployment => Scope::DeploymentsRead,
    }
}

/// One watcher's subscription: [`Subscription::next`] until it fails.
pub struct Subscription {
    who: Principal,
    topics: BTreeSet<Topic>,
    job: Option<String>,
    /// Replayed deliveries not yet handed out, in order.
    backlog: std::vec::IntoIter<Delivery>,
    live: broadcast::Receiver<Arc<FeedEntry>>,
    /// Fires when the server stops.
    closing: CancellationToken,
    /// The id of the last entry handed out (or resumed after): live entries up to it are
    /// duplicates of the replay.
    last: Option<FeedId>,
}

impl Subscription {
    /// The topics it watches.
    pub fn topics(&self) -> &BTreeSet<Topic> {
        &self.topics
    }

    /// The next delivery, waiting for one; why the subscription ended otherwise.
    pub async fn next(&mut self) -> std::result::Result<Delivery, Ended> {
        if let Some(delivery) = self.backlog.next() {
            return Ok(delivery);
        }
        loop {
            let received = tokio::select! {
                biased;
                () = self.closing.cancelled() => return Err(Ended::Closed),
                received = self.live.recv() => received,
            };
            let entry = match received {
                Ok(entry) => entry,
                Err(RecvError::Lagged(missed)) => return Err(Ended::TooSlow { missed }),
                Err(RecvError::Closed) => return Err(Ended::Closed),
            };
            if self.last.is_some_and(|last| entry.id <= last) || !self.wants(&entry) {
                continue;
            }
            self.last = Some(entry.id);
            return Ok(Delivery::Entry(entry));
        }
    }

    /// Whether the watcher may and wants to see `entry`.
    fn wants(&self, entry: &FeedEntry) -> bool {
        let activity = &entry.activity;
        activity.tenant == self.who.tenant
            && self.topics.contains(&activity.topic)
            && self.job.as_ref().is_none_or(|job| *job == activity.subject)
    }
}

/// Opens subscriptions to the activity feed.
#[derive(Clone)]
pub struct Live {
    queue: Queue,
}

impl Live {
    /// Subscriptions to the feed of `queue`'s bus, checking jobs through `queue`.
    pub fn new(queue: Queue) -> Self {
        Live { queue }
    }

    /// Checks the request and subscribes: each requested topic needs its read scope
    /// (`PermissionDenied`), a watched job must be one of the tenant's (`NotFound`), and a
    /// resume needs the feed's backend to answer (`Unavailable`).
    pub async fn watch(&self, who: &Principal, req: WatchRequest) -> Result<Subscription> {
        let topics = if req.topics.is_empty() {
            let readable: BTreeSet<Topic> = Topic::ALL
                .into_iter()
                .filter(|t| who.allows(scope_of(*t)))
                .collect();
            if req.job.is_some() {
                BTreeSet::from([Topic::Job])
                    .intersection(&readable)
                    .copied()
                    .collect()
            } else {
                readable
            }
        } else {
            req.topics
        };
        for topic in &topics {
            who.require(scope_of(*topic))?;
        }
        if topics.is_empty() {
            return Err(Error::new(
                ErrorKind::PermissionDenied,
                "no topic to watch: this needs jobs:read, agents:read or deployments:read",
            ));
        }
        if let Some(job) = req.job {
            if topics.iter().any(|t| *t != Topic::Job) {
                return Err(Error::invalid(
                    "topics",
                    "only the job topic can be watched for one job",
                ));
            }
            self.queue.get(who, job).await?;
        }
        // Subscribe before replaying, so nothing between the two is missed; duplicates are
        // skipped by id.
        let live = self.queue.activity();
        let mut subscription = Subscription {
            who: who.clone(),
            topics,
            job: req.job.map(|j| j.to_string()),
            backlog: Vec::new().into_iter(),
            live,
            closing: self.queue.closing(),
            last: req.after,
        };
        if let Some(after) = req.after {
            subscription.backlog = self.backlog(&mut subscription, after).await?.into_iter();
        }
        Ok(subscription)
    }

    /// The kept entries after `after` that `subscription` wants (page by page, at most what the
    /// feed keeps), led by a gap when some may be missing; moves its `last` to the last one.
    async fn backlog(
        &self,
        subscription: &mut Subscription,
        after: FeedId,
    ) -> Result<Vec<Delivery>> {
        let mut backlog = Vec::new();
        let mut from = after;
        let mut replayed = 0;
        loop {
            let replay = self.queue.replay(from, feed::MAX_REPLAY).await?;
            if !replay.complete {
                backlog.push(Delivery::Gap);
            }
            let full = replay.entries.len() == feed::MAX_REPLAY;
            replayed += replay.entries.len();
            for entry in replay.entries {
                from = entry.id;
                if subscription.wants(&entry) {
                    backlog.push(Delivery::Entry(entry));
                }
            }
            subscription.last = Some(from);
            if !full || replayed >= feed::RETAINED {
                return Ok(backlog);
            }
        }
    }
}
