//! The conformance suite every [`AgentStore`] adapter must pass. Each check takes fresh,
//! migrated [`Stores`] (holding only the seeded `default` tenant);
//! [`agents_conformance_suite!`](crate::agents_conformance_suite) turns the list into one
//! `#[tokio::test]` per check for an adapter's factory (on a multi-threaded runtime for the
//! races).

use std::sync::Arc;
use std::time::Duration;

use switchyard_types::{
    Agent, AgentHello, AgentStatus, Enrollment, Error, ErrorKind, Labels, NewRegistrationToken,
    PoolSettings, RegistrationToken, RegistrationTokenId,
};
use uuid::Uuid;

use crate::identity_conformance::tenant;
use crate::{AgentStore, Beat, Stores, StreamBeat};

/// Generates one test per agent conformance check, each on stores from `$make` (an async fn
/// returning [`Stores`]); the races run on a multi-threaded runtime (`@each`'s second argument:
/// the arguments of `#[tokio::test]`).
#[macro_export]
macro_rules! agents_conformance_suite {
    ($make:path) => {
        $crate::agents_conformance_suite!(@each $make, (),
            agents_register_by_name_and_are_tenant_scoped,
            a_newer_stream_replaces_an_older_one, lists_filter_by_pool,
            registration_tokens_are_listed_newest_first_and_tenant_scoped,
            a_token_enrolls_one_agent_once, invalid_expired_and_revoked_tokens_enroll_nobody,
            a_name_clash_with_a_live_agent_leaves_the_token_unused,
            re_enrollment_over_a_deregistered_agent_gets_a_new_id,
            enrolled_agents_connect_by_id_in_their_pool_until_deregistered,
            deregistered_agents_stay_terminated,
            drains_states_and_unary_heartbeats_are_recorded,
            pool_settings_are_stored_per_tenant,
            batched_heartbeats_answer_each_stream_in_order,
            an_agents_heartbeats_keep_the_jobs_it_holds_leased);
        $crate::agents_conformance_suite!(@each $make,
            (flavor = "multi_thread", worker_threads = 4),
            concurrent_enrollments_with_one_token_enroll_once);
    };
    (@each $make:path, $runtime:tt, $($check:ident),+ $(,)?) => {
        $(
            #[tokio::test $runtime]
            async fn $check() {
                let stores = $make().await;
                $crate::agents_conformance::$check(&stores).await;
            }
        )+
    };
}

/// A healthy stream's heartbeat holding `running` jobs.
fn beat(running: u32) -> Beat {
    Beat {
        running,
        status: AgentStatus::Healthy,
        lease: Duration::from_secs(30),
    }
}

/// A `Hello` of agent `name` in tenant `default`, pool `build`, on a new stream.
pub fn hello(name: &str) -> AgentHello {
    AgentHello {
        id: None,
        tenant: tenant("default"),
        name: name.to_owned(),
        pool: "build".to_owned(),
        labels: Labels::from([("os".to_owned(), "linux".to_owned())]),
        capacity: 4,
        version: "1.2.3".to_owned(),
        session: Uuid::new_v4(),
    }
}

/// Registration creates the agent once per name (reconnects keep the id), and another tenant
/// neither sees nor finds it.
pub async fn agents_register_by_name_and_are_tenant_scoped(stores: &Stores) {
    let agents = &*stores.agents;
    let first = agents.connect_agent(&hello("a1")).await.unwrap();
    assert_eq!(first.status, AgentStatus::Healthy);
    assert_eq!((first.capacity, first.running), (4, 0));
    assert_eq!(first.labels.get("os").map(String::as_str), Some("linux"));
    let mut again = hello("a1");
    again.capacity = 8;
    let second = agents.connect_agent(&again).await.unwrap();
    assert_eq!(second.id, first.id, "a reconnect keeps the id");
    assert_eq!(second.capacity, 8);
    assert_eq!(second.created_at, first.created_at);
    assert_eq!(agents.agent(&first.tenant, first.id).await.unwrap(), second);

    stores
        .identity
        .create_tenant(&tenant("acme"), "Acme")
        .await
        .unwrap();
    let acme = tenant("acme");
    let err = agents.agent(&acme, first.id).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotFound);
    assert!(agents.list_agents(&acme, None).await.unwrap().is_empty());
    let mut theirs = hello("a1");
    theirs.tenant = acme.clone();
    let theirs = agents.connect_agent(&theirs).await.unwrap();
    assert_ne!(theirs.id, first.id, "names are per tenant");

    let mut unknown = hello("a1");
    unknown.tenant = tenant("nobody");
    let err = agents.connect_agent(&unknown).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotFound, "{err:?}");
}

/// Heartbeats and the disconnect of a replaced stream change nothing; the newest stream's do.
pub async fn a_newer_stream_replaces_an_older_one(stores: &Stores) {
    let agents = &*stores.agents;
    let old = hello("a1");
    let agent = agents.connect_agent(&old).await.unwrap();
    assert!(
        agents
            .agent_heartbeat(&agent.tenant, agent.id, old.session, &beat(2))
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(
        agents.agent(&agent.tenant, agent.id).await.unwrap().running,
        2
    );

    let new = hello("a1");
    agents.connect_agent(&new).await.unwrap();
    assert!(
        agents
            .agent_heartbeat(&agent.tenant, agent.id, old.session, &beat(3))
            .await
            .unwrap()
            .is_none(),
        "the replaced stream's heartbeat is refused"
    );
    agents
        .disconnect_agent(&agent.tenant, agent.id, old.session, AgentStatus::Offline)
        .await
        .unwrap();
    let now = agents.agent(&agent.tenant, agent.id).await.unwrap();
    assert_eq!((now.status, now.running), (AgentStatus::Healthy, 0));

    agents
        .disconnect_agent(&agent.tenant, agent.id, new.session, AgentStatus::Offline)
        .await
        .unwrap();
    let gone = agents.agent(&agent.tenant, agent.id).await.unwrap();
    assert_eq!(gone.status, AgentStatus::Offline);
    assert!(
        agents
            .agent_heartbeat(&agent.tenant, agent.id, new.session, &beat(1))
            .await
            .unwrap()
            .is_none(),
        "a closed stream's heartbeat is refused"
    );
}

/// Lists show the tenant's agents, of one pool when asked.
pub async fn lists_filter_by_pool(stores: &Stores) {
    let agents = &*stores.agents;
    agents.connect_agent(&hello("a1")).await.unwrap();
    let mut deploy = hello("d1");
    deploy.pool = "deploy".to_owned();
    agents.connect_agent(&deploy).await.unwrap();
    let default = tenant("default");
    let all = agents.list_agents(&default, None).await.unwrap();
    let mut names: Vec<_> = all.iter().map(|a| a.name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["a1", "d1"]);
    let only = agents.list_agents(&default, Some("deploy")).await.unwrap();
    assert_eq!(only.len(), 1);
    assert_eq!(only[0].name, "d1");
    assert!(
        agents
            .list_agents(&default, Some("none"))
            .await
            .unwrap()
            .is_empty()
    );
}

/// A registration token of `tenant_name`, pool `build`, valid for an hour, with a random digest.
pub fn registration_token(tenant_name: &str) -> NewRegistrationToken {
    let id = RegistrationTokenId::new_v4();
    let mut digest = [0; 32];
    digest[..16].copy_from_slice(id.as_bytes());
    digest[16..].copy_from_slice(Uuid::new_v4().as_bytes());
    NewRegistrationToken {
        id,
        tenant: tenant(tenant_name),
        pool: "build".to_owned(),
        digest,
        created_by: "user:test".to_owned(),
        ttl: Duration::from_secs(3600),
    }
}

/// An enrollment of an agent called `name` (labelled `os=linux`) with `token`'s secret.
pub fn enrollment(token: &NewRegistrationToken, name: &str) -> Enrollment {
    Enrollment {
        token: token.id,
        digest: token.digest,
        name: name.to_owned(),
        labels: Labels::from([("os".to_owned(), "linux".to_owned())]),
    }
}

/// Stores `spec`.
async fn create(agents: &dyn AgentStore, spec: &NewRegistrationToken) -> RegistrationToken {
    agents.create_registration_token(spec).await.unwrap()
}

/// Creates a token of tenant `default` and enrolls agent `name` with it.
async fn enrolled(agents: &dyn AgentStore, name: &str) -> Agent {
    let spec = registration_token("default");
    create(agents, &spec).await;
    agents
        .enroll_agent(&enrollment(&spec, name))
        .await
        .unwrap()
        .1
}

/// The token of `spec` as listed now.
async fn stored(agents: &dyn AgentStore, spec: &NewRegistrationToken) -> RegistrationToken {
    agents
        .list_registration_tokens(&spec.tenant)
        .await
        .unwrap()
        .into_iter()
        .find(|t| t.id == spec.id)
        .expect("listed")
}

/// Asserts `err` is of `kind` and its message contains `words`.
#[track_caller]
fn assert_refused(err: Error, kind: ErrorKind, words: &str) {
    assert_eq!(err.kind, kind, "{err:?}");
    assert!(err.message.contains(words), "{err:?} should say {words:?}");
}

/// Tokens are created for an existing tenant only, expire `ttl` after their creation, are
/// listed newest first (revoked ones included) by their tenant only, and are revoked once:
/// revoking again keeps the first time, and another tenant's token is `NotFound`.
pub async fn registration_tokens_are_listed_newest_first_and_tenant_scoped(stores: &Stores) {
    let agents = &*stores.agents;
    let acme = tenant("acme");
    stores.identity.create_tenant(&acme, "Acme").await.unwrap();

    let spec = registration_token("default");
    let first = create(agents, &spec).await;
    assert_eq!(
        (first.id, first.tenant.as_str(), first.pool.as_str()),
        (spec.id, "default", "build")
    );
    assert_eq!(first.created_by, "user:test");
    assert!((chrono::Utc::now() - first.created_at).num_seconds().abs() < 60);
    assert_eq!(
        first.expires_at - first.created_at,
        chrono::Duration::hours(1)
    );
    assert_eq!(
        (first.used_at, first.agent_id, first.revoked_at),
        (None, None, None)
    );
    let second = create(agents, &registration_token("default")).await;
    let theirs = create(agents, &registration_token("acme")).await;

    let dup = agents.create_registration_token(&spec).await.unwrap_err();
    assert_eq!(dup.kind, ErrorKind::AlreadyExists, "{dup:?}");
    let orphan = agents
        .create_registration_token(&registration_token("nowhere"))
        .await
        .unwrap_err();
    assert_eq!(orphan.kind, ErrorKind::NotFound, "{orphan:?}");

    let default = tenant("default");
    let foreign = agents.revoke_registration_token(&acme, first.id).await;
    assert_eq!(foreign.unwrap_err().kind, ErrorKind::NotFound);
    let unknown = agents
        .revoke_registration_token(&default, RegistrationTokenId::new_v4())
        .await;
    assert_eq!(unknown.unwrap_err().kind, ErrorKind::NotFound);
    let revoked = agents
        .revoke_registration_token(&default, first.id)
        .await
        .unwrap();
    let at = revoked.revoked_at.expect("revoked");
    assert_eq!(
        revoked,
        RegistrationToken {
            revoked_at: Some(at),
            ..first.clone()
        }
    );
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(
        agents
            .revoke_registration_token(&default, first.id)
            .await
            .unwrap(),
        revoked,
        "idempotent: the first revocation's time is kept"
    );

    assert_eq!(
        agents.list_registration_tokens(&default).await.unwrap(),
        [second, revoked],
        "newest first, revoked included"
    );
    assert_eq!(
        agents.list_registration_tokens(&acme).await.unwrap(),
        [theirs]
    );
    assert!(
        agents
            .list_registration_tokens(&tenant("nowhere"))
            .await
            .unwrap()
            .is_empty()
    );
}

/// An enrollment creates an `OFFLINE` agent, with no capacity, version or stream, in the
/// token's tenant and pool, and marks the token used by it; a second use is refused.
pub async fn a_token_enrolls_one_agent_once(stores: &Stores) {
    let agents = &*stores.agents;
    let acme = tenant("acme");
    stores.identity.create_tenant(&acme, "Acme").await.unwrap();
    let mut spec = registration_token("acme");
    spec.pool = "deploy".to_owned();
    create(agents, &spec).await;

    let (token, agent) = agents.enroll_agent(&enrollment(&spec, "a1")).await.unwrap();
    assert_eq!(
        (&agent.tenant, agent.name.as_str(), agent.pool.as_str()),
        (&acme, "a1", "deploy")
    );
    assert_eq!(agent.labels.get("os").map(String::as_str), Some("linux"));
    assert_eq!(agent.status, AgentStatus::Offline);
    assert_eq!(
        (agent.capacity, agent.running, agent.version.as_str()),
        (0, 0, "")
    );
    assert_eq!(agents.agent(&acme, agent.id).await.unwrap(), agent);
    assert_eq!(token.agent_id, Some(agent.id));
    let used_at = token.used_at.expect("used");
    assert!((chrono::Utc::now() - used_at).num_seconds().abs() < 60);
    assert_eq!(token.revoked_at, None);
    assert_eq!(stored(agents, &spec).await, token);
    let theirs = agents.agent(&tenant("default"), agent.id).await;
    assert_eq!(theirs.unwrap_err().kind, ErrorKind::NotFound);

    let again = agents.enroll_agent(&enrollment(&spec, "a2")).await;
    assert_refused(
        again.unwrap_err(),
        ErrorKind::Unauthenticated,
        "already used",
    );
    assert_eq!(stored(agents, &spec).await, token, "unchanged");
    assert_eq!(agents.list_agents(&acme, None).await.unwrap(), [agent]);
}

/// An unknown token, a wrong secret, an expired token and a revoked one are
/// `Unauthenticated`, and enroll nobody; the wrong secret leaves the token usable.
pub async fn invalid_expired_and_revoked_tokens_enroll_nobody(stores: &Stores) {
    let agents = &*stores.agents;
    let default = tenant("default");

    let unknown = registration_token("default");
    let err = agents.enroll_agent(&enrollment(&unknown, "a1")).await;
    assert_refused(err.unwrap_err(), ErrorKind::Unauthenticated, "not valid");

    create(agents, &unknown).await;
    let mut wrong = enrollment(&unknown, "a1");
    wrong.digest[31] ^= 1;
    let err = agents.enroll_agent(&wrong).await;
    assert_refused(err.unwrap_err(), ErrorKind::Unauthenticated, "not valid");
    assert_eq!(stored(agents, &unknown).await.used_at, None);

    let mut expired = registration_token("default");
    expired.ttl = Duration::ZERO;
    create(agents, &expired).await;
    let err = agents.enroll_agent(&enrollment(&expired, "a1")).await;
    assert_refused(err.unwrap_err(), ErrorKind::Unauthenticated, "expired");

    let revoked = registration_token("default");
    create(agents, &revoked).await;
    agents
        .revoke_registration_token(&default, revoked.id)
        .await
        .unwrap();
    let err = agents.enroll_agent(&enrollment(&revoked, "a1")).await;
    assert_refused(err.unwrap_err(), ErrorKind::Unauthenticated, "was revoked");

    assert!(agents.list_agents(&default, None).await.unwrap().is_empty());
    for spec in [&expired, &revoked] {
        assert_eq!(stored(agents, spec).await.used_at, None);
    }
    // The right secret still works.
    let (token, _) = agents
        .enroll_agent(&enrollment(&unknown, "a1"))
        .await
        .unwrap();
    assert!(token.used_at.is_some());
}

/// An enrollment under the name of a live agent (connected by name, or enrolled and offline) is
/// `AlreadyExists` and leaves the token unused: it then enrolls another name.
pub async fn a_name_clash_with_a_live_agent_leaves_the_token_unused(stores: &Stores) {
    let agents = &*stores.agents;
    let connected = agents.connect_agent(&hello("a1")).await.unwrap();
    let offline = enrolled(agents, "a2").await;
    let spec = registration_token("default");
    create(agents, &spec).await;
    for live in [&connected, &offline] {
        let err = agents.enroll_agent(&enrollment(&spec, &live.name)).await;
        assert_refused(err.unwrap_err(), ErrorKind::AlreadyExists, &live.name);
        assert_eq!(stored(agents, &spec).await.used_at, None, "still unused");
        assert_eq!(
            &agents.agent(&live.tenant, live.id).await.unwrap(),
            live,
            "unchanged"
        );
    }
    let (token, agent) = agents.enroll_agent(&enrollment(&spec, "a3")).await.unwrap();
    assert_eq!(
        (token.agent_id, agent.name.as_str()),
        (Some(agent.id), "a3")
    );
}

/// Enrolling under the name of a deregistered agent replaces it by a new agent, with a new id;
/// the old id is gone.
pub async fn re_enrollment_over_a_deregistered_agent_gets_a_new_id(stores: &Stores) {
    let agents = &*stores.agents;
    let default = tenant("default");
    let old = enrolled(agents, "a1").await;
    let mut session = hello("a1");
    session.id = Some(old.id);
    agents.connect_agent(&session).await.unwrap();
    agents.deregister_agent(&default, old.id).await.unwrap();

    let new = enrolled(agents, "a1").await;
    assert_ne!(new.id, old.id, "a new agent");
    assert_eq!(
        (new.name.as_str(), new.status),
        ("a1", AgentStatus::Offline)
    );
    assert_eq!((new.capacity, new.version.as_str()), (0, ""));
    let gone = agents.agent(&default, old.id).await.unwrap_err();
    assert_eq!(gone.kind, ErrorKind::NotFound);
    assert_eq!(
        agents.list_agents(&default, None).await.unwrap(),
        std::slice::from_ref(&new)
    );
    // The old certificate names an agent that no longer exists.
    let err = agents.connect_agent(&session).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotFound, "{err:?}");
    assert_eq!(agents.agent(&default, new.id).await.unwrap(), new);
}

/// An enrolled agent connects by id: in its tenant and pool only, keeping its enrolled name,
/// and not once deregistered.
pub async fn enrolled_agents_connect_by_id_in_their_pool_until_deregistered(stores: &Stores) {
    let agents = &*stores.agents;
    let acme = tenant("acme");
    stores.identity.create_tenant(&acme, "Acme").await.unwrap();
    let enrolled = enrolled(agents, "a1").await;
    let mut cert = hello("ignored");
    cert.id = Some(enrolled.id);
    cert.capacity = 8;

    let agent = agents.connect_agent(&cert).await.unwrap();
    assert_eq!((agent.id, agent.name.as_str()), (enrolled.id, "a1"));
    assert_eq!(agent.status, AgentStatus::Healthy);
    assert_eq!((agent.capacity, agent.version.as_str()), (8, "1.2.3"));
    assert_eq!(agent.created_at, enrolled.created_at);
    assert!(
        agents
            .agent_heartbeat(&agent.tenant, agent.id, cert.session, &beat(1))
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        agents
            .list_agents(&agent.tenant, None)
            .await
            .unwrap()
            .iter()
            .all(|a| a.name != "ignored"),
        "no agent of the hello's name"
    );

    let mut elsewhere = cert.clone();
    elsewhere.pool = "deploy".to_owned();
    elsewhere.session = Uuid::new_v4();
    let err = agents.connect_agent(&elsewhere).await.unwrap_err();
    assert_refused(err, ErrorKind::PermissionDenied, "pool");
    let mut foreign = cert.clone();
    foreign.tenant = acme.clone();
    let err = agents.connect_agent(&foreign).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotFound, "{err:?}");
    let mut unknown = cert.clone();
    unknown.id = Some(Uuid::new_v4());
    let err = agents.connect_agent(&unknown).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotFound, "{err:?}");
    let now = agents.agent(&agent.tenant, agent.id).await.unwrap();
    assert_eq!((now.pool.as_str(), now.running), ("build", 1), "unchanged");

    agents
        .deregister_agent(&agent.tenant, agent.id)
        .await
        .unwrap();
    let mut back = cert.clone();
    back.session = Uuid::new_v4();
    let err = agents.connect_agent(&back).await.unwrap_err();
    assert_refused(err, ErrorKind::PermissionDenied, "deregistered");
    let gone = agents.agent(&agent.tenant, agent.id).await.unwrap();
    assert_eq!(gone.status, AgentStatus::Terminated);
    // Nor can a token agent take its name: an enrolled agent's row is its certificate's.
    let mut by_name = hello(&agent.name);
    by_name.pool = agent.pool.clone();
    let err = agents.connect_agent(&by_name).await.unwrap_err();
    assert_refused(err, ErrorKind::PermissionDenied, "enrolled");
    let still = agents.agent(&agent.tenant, agent.id).await.unwrap();
    assert_eq!(still.status, AgentStatus::Terminated, "unchanged");
}

/// A drain survives the agent's reconnects and is reported to its heartbeats; a stream records
/// its agent's state; a unary heartbeat marks it seen and healthy; neither touches another
/// tenant's or a deregistered agent.
pub async fn drains_states_and_unary_heartbeats_are_recorded(stores: &Stores) {
    let agents = &*stores.agents;
    let acme = tenant("acme");
    stores.identity.create_tenant(&acme, "Acme").await.unwrap();
    let first = hello("a1");
    let agent = agents.connect_agent(&first).await.unwrap();
    assert!(!agent.draining);
    let tenant = agent.tenant.clone();
    assert_eq!(
        agents
            .agent_heartbeat(&tenant, agent.id, first.session, &beat(1))
            .await
            .unwrap(),
        Some(false)
    );

    let drained = agents
        .set_agent_draining(&tenant, agent.id, true)
        .await
        .unwrap();
    assert!(drained.draining);
    let deaf = Beat {
        running: 0,
        status: AgentStatus::Degraded,
        lease: Duration::from_secs(30),
    };
    assert_eq!(
        agents
            .agent_heartbeat(&tenant, agent.id, first.session, &deaf)
            .await
            .unwrap(),
        Some(true),
        "the stream learns of the drain"
    );
    assert_eq!(
        agents.agent(&tenant, agent.id).await.unwrap().status,
        AgentStatus::Degraded
    );
    let again = hello("a1");
    let back = agents.connect_agent(&again).await.unwrap();
    assert!(back.draining, "a reconnect keeps the drain");
    assert_eq!(back.status, AgentStatus::Healthy);
    let undrained = agents
        .set_agent_draining(&tenant, agent.id, false)
        .await
        .unwrap();
    assert!(!undrained.draining);

    let foreign = agents.set_agent_draining(&acme, agent.id, true).await;
    assert_eq!(foreign.unwrap_err().kind, ErrorKind::NotFound);
    assert_eq!(
        agents.touch_agent(&acme, agent.id).await.unwrap_err().kind,
        ErrorKind::NotFound
    );

    agents
        .disconnect_agent(&tenant, agent.id, again.session, AgentStatus::Offline)
        .await
        .unwrap();
    let before = agents.agent(&tenant, agent.id).await.unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let touched = agents.touch_agent(&tenant, agent.id).await.unwrap();
    assert_eq!(touched.status, AgentStatus::Healthy);
    assert!(touched.last_heartbeat_at > before.last_heartbeat_at);

    agents.deregister_agent(&tenant, agent.id).await.unwrap();
    for refused in [
        agents
            .set_agent_draining(&tenant, agent.id, true)
            .await
            .unwrap_err(),
        agents.touch_agent(&tenant, agent.id).await.unwrap_err(),
    ] {
        assert_eq!(refused.kind, ErrorKind::Conflict, "{refused}");
    }
}

/// Deregistering is idempotent and tenant-scoped; afterwards the agent's stream is refused at
/// its next heartbeat and its disconnect leaves it `TERMINATED`. (An agent registered by name
/// may still come back by name: only enrolled agents are revocable.)
pub async fn deregistered_agents_stay_terminated(stores: &Stores) {
    let agents = &*stores.agents;
    let acme = tenant("acme");
    stores.identity.create_tenant(&acme, "Acme").await.unwrap();
    let stream = hello("a1");
    let agent = agents.connect_agent(&stream).await.unwrap();
    let tenant = agent.tenant.clone();

    let foreign = agents.deregister_agent(&acme, agent.id).await.unwrap_err();
    assert_eq!(foreign.kind, ErrorKind::NotFound);
    let unknown = agents.deregister_agent(&tenant, Uuid::new_v4()).await;
    assert_eq!(unknown.unwrap_err().kind, ErrorKind::NotFound);
    assert_eq!(
        agents.agent(&tenant, agent.id).await.unwrap(),
        agent,
        "unchanged"
    );

    let gone = agents.deregister_agent(&tenant, agent.id).await.unwrap();
    assert_eq!(gone.status, AgentStatus::Terminated);
    assert_eq!(
        gone,
        Agent {
            status: AgentStatus::Terminated,
            ..agent.clone()
        }
    );
    assert_eq!(
        agents.deregister_agent(&tenant, agent.id).await.unwrap(),
        gone,
        "idempotent"
    );
    assert!(
        agents
            .agent_heartbeat(&tenant, agent.id, stream.session, &beat(3))
            .await
            .unwrap()
            .is_none(),
        "the deregistered agent's stream ends at its next heartbeat"
    );
    agents
        .disconnect_agent(&tenant, agent.id, stream.session, AgentStatus::Offline)
        .await
        .unwrap();
    assert_eq!(agents.agent(&tenant, agent.id).await.unwrap(), gone);

    let back = agents.connect_agent(&hello("a1")).await.unwrap();
    assert_eq!((back.id, back.status), (agent.id, AgentStatus::Healthy));
}

/// Eight enrollments with one token at once: exactly one enrolls its agent, the others find
/// the token used.
pub async fn concurrent_enrollments_with_one_token_enroll_once(stores: &Stores) {
    const TASKS: usize = 8;
    let agents: Arc<dyn AgentStore> = stores.agents.clone();
    let spec = registration_token("default");
    create(&*agents, &spec).await;
    // Warm up: a pooled adapter opens a connection per task now, so the race below is not
    // serialised by connection set-up.
    let warm = (0..TASKS).map(|_| agents.list_registration_tokens(&spec.tenant));
    for listed in futures::future::join_all(warm).await {
        listed.unwrap();
    }
    let start = Arc::new(tokio::sync::Barrier::new(TASKS));
    let mut tasks = Vec::new();
    for i in 0..TASKS {
        let (agents, start) = (agents.clone(), start.clone());
        let enrollment = enrollment(&spec, &format!("a{i}"));
        tasks.push(tokio::spawn(async move {
            start.wait().await;
            agents.enroll_agent(&enrollment).await
        }));
    }
    let mut winners = Vec::new();
    for task in tasks {
        match task.await.expect("task") {
            Ok((token, agent)) => winners.push((token, agent)),
            Err(err) => assert_refused(err, ErrorKind::Unauthenticated, "already used"),
        }
    }
    let [(token, agent)] = winners.as_slice() else {
        panic!("{} enrollments succeeded", winners.len());
    };
    assert_eq!(token.agent_id, Some(agent.id));
    assert_eq!(&stored(&*agents, &spec).await, token);
    assert_eq!(
        agents.list_agents(&spec.tenant, None).await.unwrap(),
        std::slice::from_ref(agent)
    );
}

/// Pool settings are created, replaced and listed by name, per tenant.
pub async fn pool_settings_are_stored_per_tenant(stores: &Stores) {
    let agents = &*stores.agents;
    let acme = tenant("acme");
    stores.identity.create_tenant(&acme, "Acme").await.unwrap();
    let default = tenant("default");
    assert!(agents.pool_settings(&default).await.unwrap().is_empty());
    let build = PoolSettings {
        pool: "build".into(),
        min_agents: 1,
        max_agents: 8,
        target_agents: Some(3),
    };
    assert_eq!(
        agents.set_pool_settings(&default, &build).await.unwrap(),
        build
    );
    let deploy = PoolSettings::defaults("deploy");
    agents.set_pool_settings(&default, &deploy).await.unwrap();
    let unpinned = PoolSettings {
        target_agents: None,
        max_agents: 9,
        ..build.clone()
    };
    assert_eq!(
        agents.set_pool_settings(&default, &unpinned).await.unwrap(),
        unpinned
    );
    assert_eq!(
        agents.pool_settings(&default).await.unwrap(),
        vec![unpinned, deploy]
    );
    assert!(agents.pool_settings(&acme).await.unwrap().is_empty());
    let nobody = agents
        .set_pool_settings(&tenant("nobody"), &build)
        .await
        .unwrap_err();
    assert_eq!(nobody.kind, ErrorKind::NotFound);
}

/// One batch of heartbeats answers each stream in order: a drained agent `Some(true)`, a live
/// one `Some(false)`, a replaced stream `None`; the replaced stream's row is left alone.
pub async fn batched_heartbeats_answer_each_stream_in_order(stores: &Stores) {
    let agents = &*stores.agents;
    let (a, b) = (hello("a1"), hello("b1"));
    let agent_a = agents.connect_agent(&a).await.unwrap();
    let agent_b = agents.connect_agent(&b).await.unwrap();
    agents
        .set_agent_draining(&agent_b.tenant, agent_b.id, true)
        .await
        .unwrap();
    let replaced = hello("a1");
    agents.connect_agent(&replaced).await.unwrap();
    let beat_of = |h: &AgentHello, id, running| StreamBeat {
        tenant: h.tenant.clone(),
        id,
        session: h.session,
        beat: beat(running),
    };
    let answers = agents
        .agent_heartbeats(&[
            beat_of(&replaced, agent_a.id, 2),
            beat_of(&b, agent_b.id, 3),
            beat_of(&a, agent_a.id, 9),
        ])
        .await
        .unwrap();
    assert_eq!(answers, vec![Some(false), Some(true), None]);
    let a_now = agents.agent(&agent_a.tenant, agent_a.id).await.unwrap();
    assert_eq!(a_now.running, 2, "the replaced stream changed nothing");
    assert_eq!(
        agents
            .agent(&agent_b.tenant, agent_b.id)
            .await
            .unwrap()
            .running,
        3
    );
    assert!(agents.agent_heartbeats(&[]).await.unwrap().is_empty());
}

/// A job claimed through an agent's stream (`holder`) stays leased while the agent's lease,
/// extended by its heartbeats, lives, although its own lease ran out; once the agent's lease
/// lapses the reaper takes it.
pub async fn an_agents_heartbeats_keep_the_jobs_it_holds_leased(stores: &Stores) {
    use switchyard_types::{JobState, Priority};
    let agents = &*stores.agents;
    let stream = hello("holder");
    let agent = agents.connect_agent(&stream).await.unwrap();
    let job = stores
        .queue
        .enqueue(vec![crate::conformance::new_job(
            "default",
            "build",
            Priority::Normal,
        )])
        .await
        .unwrap()
        .remove(0);
    let mut req = crate::conformance::claim_req("build", 1);
    req.lease = Duration::from_millis(50);
    req.holder = Some(agent.id);
    let claimed = stores.queue.claim(None, &req).await.unwrap();
    assert_eq!(claimed.len(), 1);
    let beat_with = |lease| StreamBeat {
        tenant: stream.tenant.clone(),
        id: agent.id,
        session: stream.session,
        beat: Beat {
            running: 1,
            status: AgentStatus::Healthy,
            lease,
        },
    };
    agents
        .agent_heartbeats(&[beat_with(Duration::from_secs(60))])
        .await
        .unwrap();
    // Past the job's own lease (by a margin for the database clock), the agent's still runs.
    let own_lease = claimed[0].lease_expires_at.unwrap() + chrono::Duration::milliseconds(20);
    while chrono::Utc::now() < own_lease {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let reaped = stores
        .queue
        .reap_expired(100, Duration::ZERO)
        .await
        .unwrap();
    assert!(reaped.is_empty(), "the holder's lease lives");
    let held = stores.queue.get(&job.tenant, job.id).await.unwrap();
    assert_eq!(held.state, JobState::Claimed);
    // Reads show the lease the reaper goes by: the agent's, about a minute from now.
    let shown = |job: &switchyard_types::Job| {
        (job.lease_expires_at.unwrap() - chrono::Utc::now()).num_seconds()
    };
    assert!((55..=60).contains(&shown(&held)), "lease shown {held:?}");
    let filter = switchyard_types::JobFilter {
        limit: 10,
        ..Default::default()
    };
    let listed = stores.queue.list(&job.tenant, &filter).await.unwrap();
    assert!(
        (55..=60).contains(&shown(&listed[0])),
        "lease listed {listed:?}"
    );

    agents
        .agent_heartbeats(&[beat_with(Duration::ZERO)])
        .await
        .unwrap();
    let reaped = crate::conformance::wait_reaped(&*stores.queue).await;
    assert_eq!(reaped.requeued, 1, "the holder's lease lapsed");
}
