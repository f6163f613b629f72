//! `GET /ws`: live activity over a WebSocket (DESIGN §3.2, §3.7). The query chooses what to
//! watch; the request is checked before the upgrade, so a refusal is an ordinary error
//! envelope (400, 401, 403, 404). See docs/api.md for the frames.
//!
//! Browsers cannot set `Authorization` on a WebSocket: they offer the subprotocols
//! `switchyard.v1` and `bearer.<token>`, and the auth layer reads the credential from the
//! latter (the server answers with `switchyard.v1`).

use std::collections::BTreeSet;
use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade, close_code};
use axum::response::Response;
use bytes::Bytes;
use futures::{FutureExt as _, SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::json;
use switchyard_core::{Delivery, Ended, FeedEntry, Live, Subscription, WatchRequest};
use switchyard_types::{Error, Topic};
use utoipa_axum::router::OpenApiRouter;

use crate::AppState;
use crate::envelope::ApiError;
use crate::extract::ApiQuery;
use crate::principal::Caller;

/// The subprotocol the server speaks (answered when the client offers it).
pub const PROTOCOL: &str = "switchyard.v1";
/// How often the server pings an idle client (a dead one is found when the ping fails).
const PING_EVERY: Duration = Duration::from_secs(20);
/// How long one frame may take to leave: a client slower than this is dropped.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// The most deliveries sent in one write (those waiting when the first is sent).
const MAX_BATCH: usize = 64;
/// The largest message a client may send (it has nothing to say but close).
const MAX_CLIENT_MESSAGE: usize = 4 * 1024;

/// The route (not in the OpenAPI document: it is not a JSON operation).
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().route("/ws", axum::routing::get(watch))
}

/// The query of `GET /ws`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WatchQuery {
    /// Comma-separated topics (`jobs,agents,deployments`); default: every readable one.
    topics: Option<String>,
    /// Only this job's activity.
    job_id: Option<String>,
    /// Resume after this event id.
    last_event_id: Option<String>,
}

impl WatchQuery {
    fn request(self) -> Result<WatchRequest, Error> {
        let mut topics = BTreeSet::new();
        for name in self.topics.iter().flat_map(|t| t.split(',')) {
            let name = name.trim();
            if name.is_empty() {
                continue;
            }
            let topic = Topic::parse(name).ok_or_else(|| {
                Error::invalid(
                    "topics",
                    format!("unknown topic {name:?}; known: jobs, agents, deployments"),
                )
            })?;
            topics.insert(topic);
        }
        let job = self
            .job_id
            .map(|id| {
                id.parse()
                    .map_err(|_| Error::invalid("job_id", "must be a job id (a UUID)"))
            })
            .transpose()?;
        let after = self.last_event_id.map(|id| id.parse()).transpose()?;
        Ok(WatchRequest { topics, job, after })
    }
}

/// Checks the subscription, then upgrades to a WebSocket that carries it.
async fn watch(
    State(state): State<AppState>,
    Caller(who): Caller,
    ApiQuery(query): ApiQuery<WatchQuery>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let request = query.request()?;
    let upgrade = upgrade.map_err(|e| {
        Error::invalid(
            "upgrade",
            format!("this route speaks WebSocket only: {}", e.body_text()),
        )
    })?;
    let subscription = Live::new(state.queue.clone()).watch(&who, request).await?;
    Ok(upgrade
        .protocols([PROTOCOL])
        .max_message_size(MAX_CLIENT_MESSAGE)
        .on_upgrade(move |socket| serve(socket, subscription)))
}

/// Sends the subscription's deliveries until it ends, the client leaves or is too slow.
async fn serve(socket: WebSocket, mut subscription: Subscription) {
    let (mut to_client, mut from_client) = socket.split();
    let topics: Vec<&str> = subscription.topics().iter().map(|t| t.as_str()).collect();
    let hello = json!({ "type": "subscribed", "topics": topics });
    if send(
        &mut to_client,
        vec![Message::Text(hello.to_string().into())],
    )
    .await
    .is_err()
    {
        return;
    }
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + PING_EVERY, PING_EVERY);
    loop {
        let mut ended = None;
        let batch = tokio::select! {
            delivery = subscription.next() => match delivery {
                Ok(delivery) => {
                    // Deliveries already waiting go out with it, in one write.
                    let mut batch = vec![Message::Text(frame(&delivery))];
                    while batch.len() < MAX_BATCH {
                        match subscription.next().now_or_never() {
                            Some(Ok(delivery)) => batch.push(Message::Text(frame(&delivery))),
                            Some(Err(end)) => {
                                ended = Some(end);
                                break;
                            }
                            None => break,
                        }
                    }
                    batch
                }
                Err(end) => {
                    ended = Some(end);
                    Vec::new()
                }
            },
            incoming = from_client.next() => match incoming {
                Some(Ok(Message::Close(_)) | Err(_)) | None => return,
                // Pongs and anything else the client says are ignored.
                Some(Ok(_)) => continue,
            },
            _ = ping.tick() => vec![Message::Ping(Default::default())],
        };
        if !batch.is_empty() && send(&mut to_client, batch).await.is_err() {
            return;
        }
        if let Some(end) = ended {
            let code = match end {
                Ended::TooSlow { .. } => close_code::AGAIN,
                Ended::Closed => close_code::AWAY,
            };
            let close = CloseFrame {
                code,
                reason: Utf8Bytes::from(end.to_string()),
            };
            let _ = send(&mut to_client, vec![Message::Close(Some(close))]).await;
            return;
        }
    }
}

/// Sends `messages` and flushes them once, all within [`SEND_TIMEOUT`]; `Err` when the client
/// is gone or too slow.
async fn send<S>(to_client: &mut S, messages: Vec<Message>) -> Result<(), ()>
where
    S: futures::Sink<Message> + Unpin,
{
    let sent = async {
        for message in messages {
            to_client.feed(message).await?;
        }
        to_client.flush().await
    };
    match tokio::time::timeout(SEND_TIMEOUT, sent).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) | Err(_) => Err(()),
    }
}

/// A delivery as its JSON frame. An event's frame is encoded once per entry and the same bytes
/// go to every watcher it reaches.
fn frame(delivery: &Delivery) -> Utf8Bytes {
    match delivery {
        Delivery::Entry(entry) => Utf8Bytes::try_from(entry.encoded(event_frame))
            .expect("an event frame is encoded from a String"),
        Delivery::Gap => Utf8Bytes::from_static(GAP_FRAME),
    }
}

/// The frame that tells a resuming watcher that events after its id are no longer kept.
const GAP_FRAME: &str = r#"{"type":"gap","message":"events after last_event_id are no longer kept: reload, then go on"}"#;

/// An entry's `event` frame.
fn event_frame(entry: &FeedEntry) -> Bytes {
    let a = &entry.activity;
    let frame = json!({
        "type": "event",
        "id": entry.id.to_string(),
        "topic": a.topic.as_str(),
        "subject": a.subject,
        "state": a.state,
        "at": a.at,
        "data": a.data,
    });
    Bytes::from(frame.to_string())
}
