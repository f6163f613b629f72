//! The artifact store beyond the local directory: uploads kept in an S3-compatible bucket (a
//! real server, `moto`, started by `scripts/services`), the orphan sweep of content no record
//! names, and the upload time limit that makes that sweep safe.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use serde_json::json;

use crate::ingest::{
    assert_nothing_stored, chunks, content, counter, file, files_under, form, ingest_client,
    server, sha256_hex, start, upload_rest,
};
use crate::support::{Server, eventually, send, temp_path};

/// The keys and sizes in `bucket` under `prefix` (S3's ListObjectsV2, read off its XML).
async fn objects(bucket: &str, prefix: &str) -> Vec<(String, u64)> {
    let xml = reqwest::get(format!(
        "{}/{bucket}?list-type=2&prefix={prefix}",
        switchyard_testkit::s3_endpoint()
    ))
    .await
    .unwrap()
    .text()
    .await
    .unwrap();
    let field = |entry: &str, tag: &str| -> String {
        let open = format!("<{tag}>");
        let from = entry.find(&open).unwrap() + open.len();
        entry[from..from + entry[from..].find('<').unwrap()].to_owned()
    };
    xml.split("<Contents>")
        .skip(1)
        .map(|entry| (field(entry, "Key"), field(entry, "Size").parse().unwrap()))
        .collect()
}

#[tokio::test]
async fn uploads_are_kept_in_an_s3_bucket_and_served_from_it() {
    let bucket = switchyard_testkit::s3_bucket().await;
    let url = format!("s3://{bucket}/switchyard/artifacts");
    let endpoint = switchyard_testkit::s3_endpoint();
    // Signed requests, with credentials from the standard variables, as in production.
    let s = Server::start(
        crate::support::Db::Sqlite,
        &[
            ("SWITCHYARD_ARTIFACTS_URL", url.as_str()),
            ("AWS_ENDPOINT_URL", endpoint.as_str()),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", "switchyard-test"),
            ("AWS_SECRET_ACCESS_KEY", "switchyard-test-secret"),
        ],
    )
    .await;
    // Larger than one 5 MiB part, so it goes up as a multipart upload.
    let big = content(11 * 1024 * 1024 + 5, 3);
    let small = b"release notes".to_vec();
    let (status, body) = upload_rest(
        &s,
        form(
            r#"{"build": 7}"#,
            &[("app.tar", big.clone()), ("notes.txt", small.clone())],
        ),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let artifacts = body["data"]["artifacts"].as_array().unwrap().clone();
    assert_eq!(artifacts[0]["sha256"], sha256_hex(&big));

    let mut stored = objects(&bucket, "switchyard/artifacts/").await;
    stored.sort_by_key(|(_, size)| *size);
    assert_eq!(stored.len(), 2, "{stored:?}");
    assert_eq!(stored[0].1, small.len() as u64);
    assert_eq!(stored[1].1, big.len() as u64);
    for (key, _) in &stored {
        assert!(
            key.starts_with("switchyard/artifacts/default/"),
            "generated keys under the prefix: {key}"
        );
        assert!(!key.contains("app.tar") && !key.contains("notes"), "{key}");
    }

    for (artifact, expected) in artifacts.iter().zip([&big, &small]) {
        let id = artifact["id"].as_str().unwrap();
        let got = s
            .client
            .get(s.url(&format!("/api/ingest/artifacts/{id}/content")))
            .send()
            .await
            .unwrap();
        assert_eq!(got.status(), 200);
        assert_eq!(got.bytes().await.unwrap().as_ref(), expected.as_slice());
    }
}

/// Writes `bytes` at `path` (creating its directories), last modified `age` ago.
fn plant(path: &Path, bytes: &[u8], age: Duration) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
    let file = std::fs::File::options().write(true).open(path).unwrap();
    file.set_modified(SystemTime::now() - age).unwrap();
}

#[tokio::test]
async fn two_replicas_sweep_orphans_once_and_keep_recorded_and_young_content() {
    let dir = temp_path("sy-it-orphans-");
    let url = dir.display().to_string();
    // Uploads may take 30 s, so content younger than a minute is never an orphan.
    let (a, b) = Server::replicas(&[
        ("SWITCHYARD_ARTIFACTS_URL", url.as_str()),
        ("SWITCHYARD_UPLOAD_TIMEOUT_SECONDS", "30"),
        ("SWITCHYARD_ARTIFACT_SWEEP_SECONDS", "1"),
        ("SWITCHYARD_ARTIFACT_ORPHAN_SWEEP_SECONDS", "1"),
    ])
    .await;
    let (status, body) = upload_rest(&a, form("{}", &[("kept.bin", content(4096, 1))])).await;
    assert_eq!(status, 201, "{body}");
    let kept = body["data"]["artifacts"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // The recorded artifact is an hour old too: being recorded is what keeps it.
    for path in files_under(&dir) {
        let file = std::fs::File::options().write(true).open(&path).unwrap();
        file.set_modified(SystemTime::now() - Duration::from_secs(3600))
            .unwrap();
    }

    // What a replica that died mid-upload leaves: a complete file no record names, and the
    // staging file of a write it never finished; plus a young orphan, maybe an upload running.
    let month = dir.join("default/2026/01");
    let orphan = month.join("0190f3a8-7b2c-7def-8abc-0123456789ab");
    let staging = month.join("0190f3a8-7b2c-7def-8abc-0123456789ac#2");
    let young = dir.join("default/2026/02/0190f3a8-7b2c-7def-8abc-0123456789ad");
    plant(&orphan, &content(10_000, 2), Duration::from_secs(3600));
    plant(&staging, &content(7_000, 3), Duration::from_secs(3600));
    plant(&young, &content(5_000, 4), Duration::ZERO);

    eventually("orphans swept", Duration::from_secs(20), async || {
        if orphan.exists() || staging.exists() {
            Err(format!("{:?}", files_under(&dir)))
        } else {
            Ok(())
        }
    })
    .await;
    assert!(!month.exists(), "the emptied month directory goes too");
    assert!(
        young.exists(),
        "content younger than twice the upload limit stays"
    );
    let got = a
        .client
        .get(a.url(&format!("/api/ingest/artifacts/{kept}/content")))
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 200, "recorded content stays");
    assert_eq!(
        got.bytes().await.unwrap().as_ref(),
        content(4096, 1).as_slice()
    );

    // Each orphan was deleted once, by whichever replica had the turn.
    let (mut objects, mut staged) = (0.0, 0.0);
    for s in [&a, &b] {
        let text = s.anon.get(s.url("/metrics")).send().await.unwrap();
        let text = text.text().await.unwrap();
        objects += counter(
            &text,
            r#"switchyard_artifact_orphans_deleted_total{kind="object"}"#,
        );
        staged += counter(
            &text,
            r#"switchyard_artifact_orphans_deleted_total{kind="staging"}"#,
        );
    }
    assert!(
        (objects - 1.0).abs() < f64::EPSILON,
        "{objects} objects deleted"
    );
    assert!(
        (staged - 1.0).abs() < f64::EPSILON,
        "{staged} staging files deleted"
    );
}

#[tokio::test]
async fn an_upload_slower_than_its_limit_is_refused_and_stores_nothing() {
    let (s, dir) = server(&[("SWITCHYARD_UPLOAD_TIMEOUT_SECONDS", "1")]).await;
    let mut c = ingest_client(&s).await;
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    tx.send(start(json!({}))).await.unwrap();
    tx.send(file("slow.bin")).await.unwrap();
    for m in chunks(&content(200_000, 5), 100_000) {
        tx.send(m).await.unwrap();
    }
    // The client stalls with the stream open: the server gives up after its limit.
    let started = Instant::now();
    let err = c
        .upload(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err:?}");
    assert!(err.message().contains("at most 1 s"), "{}", err.message());
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_nothing_stored(&s, &dir).await;
    drop(tx);

    // Over REST, a body that stops arriving gets the same answer.
    let (body_tx, body_rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(1);
    let boundary = "sy-slow-boundary";
    body_tx
        .send(Ok(format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"metadata\"\r\n\r\n{{}}\r\n\
             --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"slow.bin\"\r\n\
             Content-Type: application/octet-stream\r\n\r\n"
        )
        .into_bytes()))
        .await
        .unwrap();
    let (status, body, _) = send(
        s.client
            .post(s.url("/api/ingest"))
            .header(
                "content-type",
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(reqwest::Body::wrap_stream(
                tokio_stream::wrappers::ReceiverStream::new(body_rx),
            )),
    )
    .await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["errors"][0]["code"], "too_large", "{body}");
    assert_nothing_stored(&s, &dir).await;
    drop(body_tx);
}
