//! The artifacts conformance suite on both adapters: SQLite in memory, PostgreSQL in a fresh
//! database per test.

mod sqlite {
    async fn make() -> switchyard_store::Stores {
        switchyard_store::open("sqlite::memory:", true)
            .await
            .unwrap()
    }

    switchyard_store::artifacts_conformance_suite!(make);
}

mod postgres {
    async fn make() -> switchyard_store::Stores {
        let url = switchyard_testkit::postgres_database().await;
        switchyard_store::open(&url, true).await.unwrap()
    }

    switchyard_store::artifacts_conformance_suite!(make);
}
