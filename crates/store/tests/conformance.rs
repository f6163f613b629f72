//! The store conformance suite on both adapters: SQLite in memory, PostgreSQL in a fresh
//! database per test.

use std::sync::Arc;

use switchyard_store::QueueStore;

mod sqlite {
    use super::*;

    async fn make() -> Arc<dyn QueueStore> {
        Arc::new(
            switchyard_store::sqlite::SqliteStore::connect("sqlite::memory:", true)
                .await
                .unwrap(),
        )
    }

    switchyard_store::store_conformance_suite!(make);
}

mod postgres {
    use super::*;

    async fn make() -> Arc<dyn QueueStore> {
        let url = switchyard_testkit::postgres_database().await;
        Arc::new(
            switchyard_store::postgres::PgStore::connect(&url, true)
                .await
                .unwrap(),
        )
    }

    switchyard_store::store_conformance_suite!(make);
}
