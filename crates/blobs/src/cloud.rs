//! Stores in the cloud, opened from a URL `scheme://container[/prefix][?option=value…]`:
//!
//! - `s3://bucket/prefix` (or `s3a://`): an S3-compatible bucket, configured by the standard
//!   `AWS_*` variables (credentials, `AWS_REGION`, `AWS_ENDPOINT_URL` for MinIO, Ceph, R2 …).
//!   An `http://` endpoint is allowed as given.
//! - `az://container/prefix` (or `azure://`): an Azure Blob container, configured by the
//!   `AZURE_STORAGE_*` variables (account name, key or other credentials).
//!
//! The query's options override the variables (object_store's names: `endpoint`, `region`,
//! `use_emulator`, …), except credentials, which a URL must not carry: it ends up in logs.
//! Objects live under the prefix, when there is one. Buckets and containers must exist.

use std::str::FromStr;
use std::sync::Arc;

use object_store::ObjectStore;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use switchyard_types::{Error, Result};

use crate::{Blobs, LOCATION_FIELD};

/// An S3-compatible bucket.
pub(crate) fn s3(location: &str) -> Result<Blobs> {
    let (url, bucket) = parse(location, "s3://bucket/prefix")?;
    let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
    let secret = |key: &AmazonS3ConfigKey| {
        matches!(
            key,
            AmazonS3ConfigKey::AccessKeyId
                | AmazonS3ConfigKey::SecretAccessKey
                | AmazonS3ConfigKey::Token
        )
    };
    for (key, value) in options(&url, secret, "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY")? {
        builder = builder.with_config(key, value);
    }
    if builder
        .get_config_value(&AmazonS3ConfigKey::Endpoint)
        .is_some_and(|endpoint| endpoint.starts_with("http://"))
    {
        builder = builder.with_allow_http(true);
    }
    use_ring();
    let store = builder.build().map_err(|e| configure("S3", &e))?;
    under_prefix(store, &url, "s3")
}

/// An Azure Blob container.
pub(crate) fn azure(location: &str) -> Result<Blobs> {
    let (url, container) = parse(location, "az://container/prefix")?;
    let mut builder = MicrosoftAzureBuilder::from_env().with_container_name(container);
    let secret = |key: &AzureConfigKey| {
        matches!(
            key,
            AzureConfigKey::AccessKey
                | AzureConfigKey::ClientSecret
                | AzureConfigKey::SasKey
                | AzureConfigKey::Token
                | AzureConfigKey::FabricSessionToken
        )
    };
    for (key, value) in options(&url, secret, "AZURE_STORAGE_ACCOUNT_KEY")? {
        builder = builder.with_config(key, value);
    }
    use_ring();
    let store = builder.build().map_err(|e| configure("Azure Blob", &e))?;
    under_prefix(store, &url, "azure")
}

/// `location` as a URL, and its container (the host); `example` shows the form in errors.
fn parse(location: &str, example: &str) -> Result<(url::Url, String)> {
    let url = url::Url::parse(location)
        .map_err(|e| Error::invalid(LOCATION_FIELD, format!("is not a valid URL: {e}")))?;
    let container = url.host_str().unwrap_or_default().to_owned();
    if container.is_empty() {
        return Err(Error::invalid(
            LOCATION_FIELD,
            format!("needs a bucket or container: {example}"),
        ));
    }
    Ok((url, container))
}

/// The URL's query options, refusing unknown ones and those `secret` names (`variables` says
/// where they go instead).
fn options<K: FromStr>(
    url: &url::Url,
    secret: impl Fn(&K) -> bool,
    variables: &str,
) -> Result<Vec<(K, String)>> {
    url.query_pairs()
        .map(|(name, value)| {
            let key: K = name
                .parse()
                .map_err(|_| Error::invalid(LOCATION_FIELD, format!("unknown option `{name}`")))?;
            if secret(&key) {
                return Err(Error::invalid(
                    LOCATION_FIELD,
                    format!(
                        "`{name}` must not be in the URL (it would be logged); set it in the \
                         environment ({variables}, …)"
                    ),
                ));
            }
            Ok((key, value.into_owned()))
        })
        .collect()
}

/// reqwest's rustls has no provider of its own here (see Cargo.toml): use ring. A provider
/// installed earlier (by the process, or another store) is kept.
fn use_ring() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A store that could not be configured, as the operator's error.
fn configure(what: &str, e: &object_store::Error) -> Error {
    Error::invalid(
        LOCATION_FIELD,
        format!("cannot configure the {what} store: {e}"),
    )
}

/// `store` as the artifact store, under the URL's path as a prefix when it has one.
fn under_prefix<S: ObjectStore>(store: S, url: &url::Url, kind: &'static str) -> Result<Blobs> {
    let prefix = url.path().trim_matches('/');
    let store: Arc<dyn ObjectStore> = if prefix.is_empty() {
        Arc::new(store)
    } else {
        let prefix = Path::parse(prefix)
            .map_err(|e| Error::invalid(LOCATION_FIELD, format!("has an invalid prefix: {e}")))?;
        Arc::new(PrefixStore::new(store, prefix))
    };
    Ok(Blobs {
        store,
        kind,
        root: None,
    })
}
