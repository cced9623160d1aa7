//! Audit anchors in S3 under Object Lock (compliance mode): once written, no one — not
//! amictl, not the bucket's owner, not the account's root user — can change or delete a
//! checkpoint before its retention date, so the database's writers cannot rewrite them.

use anchor::{AnchorError, AnchorStore, Checkpoint, MAX_CHECKPOINT_BYTES, Stored};
use aws_sdk_s3::primitives::{ByteStream, DateTime};
use aws_sdk_s3::types::{ObjectLockEnabled, ObjectLockMode};

use crate::error::sdk_message;

/// Checkpoints under `s3://bucket/prefix/`.
pub struct S3Store {
    rt: tokio::runtime::Runtime,
    client: aws_sdk_s3::Client,
    bucket: String,
    prefix: String,
    retention_days: u32,
}

impl S3Store {
    /// A store at `url` (`s3://bucket[/prefix]`), with credentials and endpoint from the
    /// standard chain (the account amictl runs as).
    pub fn new(url: &str, region: &str, retention_days: u32) -> Result<S3Store, AnchorError> {
        let bad = |message: String| AnchorError::Store { store: url.to_string(), message };
        let rest = url.strip_prefix("s3://").ok_or_else(|| bad("not an s3:// URL".into()))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| bad(format!("cannot start the async runtime: {e}")))?;
        let base = rt.block_on(
            aws_config::defaults(aws_config::BehaviorVersion::latest())
                .region(aws_config::Region::new(region.to_string()))
                .load(),
        );
        // An endpoint override (a private endpoint, an emulator) takes bucket names in the path.
        let path_style =
            std::env::var_os("AWS_ENDPOINT_URL").is_some() || std::env::var_os("AWS_ENDPOINT_URL_S3").is_some();
        let conf = aws_sdk_s3::config::Builder::from(&base).force_path_style(path_style).build();
        Ok(S3Store {
            rt,
            client: aws_sdk_s3::Client::from_conf(conf),
            bucket: bucket.to_string(),
            prefix: prefix.trim_matches('/').to_string(),
            retention_days,
        })
    }

    fn key(&self, name: &str) -> String {
        if self.prefix.is_empty() { name.to_string() } else { format!("{}/{name}", self.prefix) }
    }

    fn err(&self, what: &str, e: impl std::fmt::Display) -> AnchorError {
        AnchorError::Store { store: self.describe(), message: format!("{what}: {e}") }
    }
}

impl AnchorStore for S3Store {
    fn describe(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.prefix)
    }

    fn put(&self, cp: &Checkpoint) -> Result<String, AnchorError> {
        self.rt.block_on(async {
            // An anchor anyone could delete proves nothing: refuse a bucket without Object Lock.
            let lock = self
                .client
                .get_object_lock_configuration()
                .bucket(&self.bucket)
                .send()
                .await
                .map_err(|e| self.err("GetObjectLockConfiguration", sdk_message(&e)))?;
            let enabled = lock
                .object_lock_configuration()
                .and_then(|c| c.object_lock_enabled())
                .is_some_and(|e| *e == ObjectLockEnabled::Enabled);
            if !enabled {
                return Err(self.err(
                    "refused",
                    "the bucket has no Object Lock; create it with Object Lock enabled (anchors there could be deleted)",
                ));
            }
            let key = self.key(&cp.name());
            let until = std::time::SystemTime::now() + std::time::Duration::from_secs(u64::from(self.retention_days) * 86_400);
            let body = serde_json::to_vec_pretty(cp).map_err(|e| self.err("encode", e))?;
            self.client
                .put_object()
                .bucket(&self.bucket)
                .key(&key)
                .content_type("application/json")
                .object_lock_mode(ObjectLockMode::Compliance)
                .object_lock_retain_until_date(DateTime::from(until))
                .body(ByteStream::from(body))
                .send()
                .await
                .map_err(|e| self.err("PutObject", sdk_message(&e)))?;
            Ok(format!("s3://{}/{key}", self.bucket))
        })
    }

    fn names(&self) -> Result<Vec<String>, AnchorError> {
        self.rt.block_on(async {
            let prefix = if self.prefix.is_empty() { String::new() } else { format!("{}/", self.prefix) };
            let mut names = Vec::new();
            let mut pages = self.client.list_objects_v2().bucket(&self.bucket).prefix(&prefix).into_paginator().send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| self.err("ListObjectsV2", sdk_message(&e)))?;
                for o in page.contents() {
                    if let Some(k) = o.key().and_then(|k| k.strip_prefix(&prefix)).filter(|k| k.ends_with(".json")) {
                        names.push(k.to_string());
                    }
                }
            }
            names.sort_by(|a, b| a.rsplit('/').next().cmp(&b.rsplit('/').next()).then(a.cmp(b)));
            Ok(names)
        })
    }

    fn get(&self, name: &str) -> Result<Stored, AnchorError> {
        self.rt.block_on(async {
            let key = self.key(name);
            let out = self
                .client
                .get_object()
                .bucket(&self.bucket)
                .key(&key)
                .send()
                .await
                .map_err(|e| self.err("GetObject", sdk_message(&e)))?;
            let locked_until = (out.object_lock_mode() == Some(&ObjectLockMode::Compliance))
                .then(|| out.object_lock_retain_until_date().map(|d| d.to_string()))
                .flatten();
            if out.content_length().unwrap_or_default() as u64 > MAX_CHECKPOINT_BYTES {
                return Ok(Stored {
                    location: format!("s3://{}/{key}", self.bucket),
                    checkpoint: Err(format!("larger than {MAX_CHECKPOINT_BYTES} bytes")),
                    locked_until,
                });
            }
            let bytes = out.body.collect().await.map_err(|e| self.err("GetObject body", e))?.into_bytes();
            Ok(Stored {
                location: format!("s3://{}/{key}", self.bucket),
                checkpoint: anchor::parse(&bytes),
                locked_until,
            })
        })
    }
}
