//! `switchyard ingest FILE… [--metadata JSON] [--watch]`: uploads files and metadata over
//! `IngestService/Upload`, read from disk in 1 MiB chunks as the connection takes them (with a
//! progress line when stderr is a terminal), prints the job and the stored artifacts, and with
//! `--watch` follows the upload's status until it is COMPLETED or FAILED.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use clap::Args;
use futures::Stream;
use prost_types::Struct;
use serde_json::{Map, Value};
use switchyard_proto::convert::json_object_to_struct;
use switchyard_proto::v1 as pb;
use switchyard_proto::v1::ingest_service_client::IngestServiceClient;
use switchyard_proto::v1::upload_request::Part;
use tokio::io::AsyncReadExt as _;
use tonic::transport::Channel;

use super::client::{self, Authed};
use super::{ConnArgs, required, say, short, when};

/// A connected, authenticated `IngestService` client.
type Client = Authed<IngestServiceClient<Channel>>;

/// The size of the chunks files are sent in (the server takes up to 4 MiB).
const CHUNK: usize = 1 << 20;

/// The media type every file is sent as.
const CONTENT_TYPE: &str = "application/octet-stream";

/// `switchyard ingest`.
#[derive(Debug, Clone, Args)]
pub struct IngestArgs {
    /// The files to upload; each becomes an artifact named after the file's base name.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// The upload's metadata, a JSON object (at most 64 KiB); it goes into the job's payload.
    #[arg(long, value_name = "JSON", default_value = "{}", value_parser = parse_metadata)]
    pub metadata: Map<String, Value>,
    /// Then print the upload's status at every change until it is COMPLETED (exit status 0) or
    /// FAILED (exit status 1).
    #[arg(long)]
    pub watch: bool,
    #[command(flatten)]
    /// Server and credentials.
    pub conn: ConnArgs,
}

/// A `--metadata` value: a JSON object.
fn parse_metadata(s: &str) -> Result<Map<String, Value>, String> {
    serde_json::from_str(s).map_err(|e| format!("the metadata must be a JSON object: {e}"))
}

/// Runs `switchyard ingest`: checks the files, uploads them, prints `job <id>` and one
/// `<id> <name> <size> <sha256>` line (tab-separated) per artifact, then watches when asked.
pub async fn ingest(args: IngestArgs) -> anyhow::Result<()> {
    let files = sources(&args.files).await?;
    let mut c: Client = args
        .conn
        .open_within(None, IngestServiceClient::new)
        .await?;
    let uploaded = upload(&mut c, json_object_to_struct(args.metadata), files).await?;
    say(&format!("job {}", uploaded.job_id));
    for a in &uploaded.artifacts {
        say(&format!("{}\t{}\t{}\t{}", a.id, a.name, a.size, a.sha256));
    }
    if args.watch {
        watch(&mut c, uploaded.job_id).await
    } else {
        Ok(())
    }
}

/// A file to upload.
struct Source {
    /// Where it is.
    path: PathBuf,
    /// Its artifact name: the file's base name.
    name: String,
    /// Its size when the upload began.
    size: u64,
}

/// The files, each checked to be a readable regular file with a UTF-8 base name, before
/// anything is sent.
async fn sources(paths: &[PathBuf]) -> anyhow::Result<Vec<Source>> {
    let mut found = Vec::with_capacity(paths.len());
    for path in paths {
        let unreadable = || format!("cannot read {}", path.display());
        let file = tokio::fs::File::open(path).await.with_context(unreadable)?;
        let meta = file.metadata().await.with_context(unreadable)?;
        if !meta.is_file() {
            anyhow::bail!("cannot read {}: not a regular file", path.display());
        }
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .with_context(|| format!("cannot upload {}: its name is not UTF-8", path.display()))?;
        found.push(Source {
            path: path.clone(),
            name: name.to_owned(),
            size: meta.len(),
        });
    }
    Ok(found)
}

/// One upload: what it sends, how far it got, and why it gave up, if it did.
struct Upload {
    /// The `start` message's metadata.
    metadata: Struct,
    /// The files, in order.
    files: Vec<Source>,
    /// The progress line.
    progress: Progress,
    /// Why a file could not be read part-way.
    failed: Mutex<Option<anyhow::Error>>,
}

/// Where an upload stream is.
enum Step {
    /// Next: the `start` message.
    Start,
    /// Next: file `i`'s `file` message, or the end after the last file.
    File(usize),
    /// Next: a chunk of file `i`, open.
    Chunk(usize, tokio::fs::File),
    /// Nothing more: the stream was abandoned.
    Abandoned,
}

/// Sends the upload. When the saved session's access token was refused as expired, the
/// session is refreshed and the upload sent again from the start (the server stored nothing).
async fn upload(
    c: &mut Client,
    metadata: Struct,
    files: Vec<Source>,
) -> anyhow::Result<pb::UploadResponse> {
    let total = files.iter().map(|f| f.size).sum();
    let upload = Arc::new(Upload {
        metadata,
        files,
        progress: Progress {
            total,
            sent: AtomicU64::new(0),
            shown: std::io::stderr().is_terminal(),
        },
        failed: Mutex::new(None),
    });
    // A stream cannot be cloned for the second attempt: the credential rides on an empty
    // request, and each attempt makes its own stream from the files.
    let answer = c
        .call((), |mut svc, r| {
            let messages = messages(Arc::clone(&upload));
            async move { svc.upload(r.map(|()| messages)).await }
        })
        .await;
    upload.progress.finish();
    let failed = upload.failed.lock().ok().and_then(|mut f| f.take());
    match failed {
        Some(e) => Err(e),
        None => answer,
    }
}

/// The upload's messages, each file read from disk as the connection takes them: `start`,
/// then each file's `file` and its chunks.
fn messages(upload: Arc<Upload>) -> impl Stream<Item = pb::UploadRequest> + Send + 'static {
    upload.progress.restart();
    futures::stream::unfold(Step::Start, move |step| {
        let upload = Arc::clone(&upload);
        async move { upload.next(step).await }
    })
}

impl Upload {
    /// The message after `step` and the step after it; `None` ends the stream (the upload).
    async fn next(&self, mut step: Step) -> Option<(pb::UploadRequest, Step)> {
        loop {
            step = match step {
                Step::Start => {
                    let start = pb::UploadStart {
                        metadata: Some(self.metadata.clone()),
                    };
                    return Some((message(Part::Start(start)), Step::File(0)));
                }
                Step::File(i) => {
                    let source = self.files.get(i)?;
                    let file = match tokio::fs::File::open(&source.path).await {
                        Ok(file) => file,
                        Err(e) => return Some(self.abandon(source, e)),
                    };
                    let start = pb::FileStart {
                        name: source.name.clone(),
                        content_type: CONTENT_TYPE.to_owned(),
                    };
                    return Some((message(Part::File(start)), Step::Chunk(i, file)));
                }
                Step::Chunk(i, mut file) => {
                    let mut chunk = Vec::with_capacity(CHUNK);
                    match (&mut file).take(CHUNK as u64).read_to_end(&mut chunk).await {
                        Ok(0) => Step::File(i + 1),
                        Ok(n) => {
                            self.progress.add(n as u64);
                            return Some((message(Part::Chunk(chunk)), Step::Chunk(i, file)));
                        }
                        Err(e) => return Some(self.abandon(&self.files[i], e)),
                    }
                }
                Step::Abandoned => return None,
            }
        }
    }

    /// Gives up on a file that cannot be read: keeps the reason for the user and sends a second
    /// `start`, a bad order the server refuses, so that it stores nothing (merely ending the
    /// stream would store the files as read so far).
    fn abandon(&self, source: &Source, e: std::io::Error) -> (pb::UploadRequest, Step) {
        let reason =
            anyhow::Error::new(e).context(format!("cannot read {}", source.path.display()));
        if let Ok(mut failed) = self.failed.lock() {
            *failed = Some(reason);
        }
        let start = pb::UploadStart { metadata: None };
        (message(Part::Start(start)), Step::Abandoned)
    }
}

/// An upload message carrying `part`.
fn message(part: Part) -> pb::UploadRequest {
    pb::UploadRequest { part: Some(part) }
}

/// The upload's progress, on one line of stderr rewritten in place when stderr is a terminal.
struct Progress {
    /// Bytes to send.
    total: u64,
    /// Bytes handed to the connection so far.
    sent: AtomicU64,
    /// Whether the line is shown.
    shown: bool,
}

impl Progress {
    /// Back to nothing sent (an upload sent again).
    fn restart(&self) {
        self.sent.store(0, Ordering::Relaxed);
        self.show(0);
    }

    fn add(&self, bytes: u64) {
        let sent = self.sent.fetch_add(bytes, Ordering::Relaxed) + bytes;
        self.show(sent);
    }

    fn show(&self, sent: u64) {
        if !self.shown {
            return;
        }
        let percent = match self.total {
            0 => 100,
            total => (sent.saturating_mul(100) / total).min(100),
        };
        let mib = |bytes: u64| bytes as f64 / f64::from(1 << 20);
        // `\x1b[K` clears what a longer line left.
        eprint!(
            "\ruploaded {:.1} / {:.1} MiB ({percent}%)\x1b[K",
            mib(sent),
            mib(self.total)
        );
    }

    /// Ends the line.
    fn finish(&self) {
        if self.shown {
            eprintln!();
        }
    }
}

/// Prints the upload's status (`<time> <STATE> <progress>%`) now and at every change until
/// the server ends the stream: success once COMPLETED, an error naming the failure once FAILED.
async fn watch(c: &mut Client, job_id: String) -> anyhow::Result<()> {
    let req = pb::WatchStatusRequest {
        job_id: job_id.clone(),
    };
    let watched = c.call(req, |mut c, r| async move { c.watch_status(r).await });
    let mut stream = watched.await?;
    let mut last = None;
    loop {
        let msg = stream
            .message()
            .await
            .map_err(|s| client::status_error(&s))?;
        let Some(msg) = msg else { break };
        let status = required(msg.status, "status")?;
        say(&format!(
            "{}\t{}\t{}%",
            when(status.updated_at.as_ref()),
            state_name(status.state),
            status.progress
        ));
        last = Some(status);
    }
    let last = required(last, "status")?;
    let state = pb::IngestState::try_from(last.state).unwrap_or(pb::IngestState::Unspecified);
    match state {
        pb::IngestState::Completed => Ok(()),
        pb::IngestState::Failed if last.error.is_empty() => {
            anyhow::bail!("upload {job_id} FAILED")
        }
        pb::IngestState::Failed => anyhow::bail!("upload {job_id} FAILED: {}", last.error),
        pb::IngestState::Unspecified | pb::IngestState::Queued | pb::IngestState::Processing => {
            anyhow::bail!(
                "the server ended the watch while upload {job_id} was {}",
                state_name(last.state)
            )
        }
    }
}

/// `QUEUED` for `INGEST_STATE_QUEUED`.
fn state_name(v: i32) -> String {
    let name = pb::IngestState::try_from(v).ok().map(|s| s.as_str_name());
    short(name, "INGEST_STATE_", v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_must_be_a_json_object() {
        let map = parse_metadata(r#"{"build": 7}"#).unwrap();
        assert_eq!(map["build"], 7);
        assert!(parse_metadata("{}").unwrap().is_empty());
        for bad in ["[1]", "7", "{", ""] {
            let e = parse_metadata(bad).unwrap_err();
            assert!(e.starts_with("the metadata must be a JSON object"), "{e}");
        }
    }

    #[test]
    fn states_lose_their_prefix() {
        assert_eq!(state_name(pb::IngestState::Queued as i32), "QUEUED");
        assert_eq!(state_name(42), "UNKNOWN(42)");
    }
}
