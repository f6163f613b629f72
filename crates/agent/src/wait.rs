//! Waiting on something that may not be there: a `select!` branch whose deadline or future is
//! absent never fires.

use tokio::time::Instant;

/// Sleeps until `deadline`; forever without one.
pub(crate) async fn until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The output of `future`; never, without one.
pub(crate) async fn on<F: Future + Unpin>(future: Option<&mut F>) -> F::Output {
    match future {
        Some(future) => future.await,
        None => std::future::pending().await,
    }
}
