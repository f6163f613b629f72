//! The conformance suite every [`AgentStore`] adapter must pass. Each check takes fresh,
//! migrated [`Stores`] (holding only the seeded `default` tenant);
//! [`agents_conformance_suite!`](crate::agents_conformance_suite) turns the list into one
//! `#[tokio::test]` per check for an adapter's factory.

use switchyard_types::{AgentHello, AgentStatus, ErrorKind, Labels};
use uuid::Uuid;

use crate::Stores;
use crate::identity_conformance::tenant;

/// Generates one test per agent conformance check, each on stores from `$make` (an async fn
/// returning [`Stores`]).
#[macro_export]
macro_rules! agents_conformance_suite {
    ($make:path) => {
        $crate::agents_conformance_suite!(@each $make,
            agents_register_by_name_and_are_tenant_scoped,
            a_newer_stream_replaces_an_older_one, lists_filter_by_pool);
    };
    (@each $make:path, $($check:ident),+ $(,)?) => {
        $(
            #[tokio::test]
            async fn $check() {
                let stores = $make().await;
                $crate::agents_conformance::$check(&stores).await;
            }
        )+
    };
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
            .agent_heartbeat(&agent.tenant, agent.id, old.session, 2)
            .await
            .unwrap()
    );
    assert_eq!(
        agents.agent(&agent.tenant, agent.id).await.unwrap().running,
        2
    );

    let new = hello("a1");
    agents.connect_agent(&new).await.unwrap();
    assert!(
        !agents
            .agent_heartbeat(&agent.tenant, agent.id, old.session, 3)
            .await
            .unwrap(),
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
        !agents
            .agent_heartbeat(&agent.tenant, agent.id, new.session, 1)
            .await
            .unwrap(),
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
