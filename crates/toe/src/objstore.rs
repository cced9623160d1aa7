//! Object storage behind `S3Download`/`S3Upload` and `s3://` documents.
//!
//! The engine stays free of AWS: it talks to this trait. The AWS provider implements it on
//! aws-sdk-s3; [`DirectoryStore`] serves `s3://bucket/key` from `DIR/bucket/key` for offline
//! runs and tests.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("s3://{bucket}/{key}: no such object")]
    NotFound { bucket: String, key: String },
    #[error("bucket {bucket} is not owned by the expected account {expected}")]
    WrongOwner { bucket: String, expected: String },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

pub trait ObjectStore: Send + Sync {
    /// Writes the object to `dest` (the caller has checked the folder exists).
    fn get(&self, bucket: &str, key: &str, expected_owner: Option<&str>, dest: &Path) -> Result<(), StoreError>;
    /// Keys under `prefix`, at most `limit`.
    fn list(
        &self,
        bucket: &str,
        prefix: &str,
        expected_owner: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError>;
    fn put(&self, bucket: &str, key: &str, expected_owner: Option<&str>, src: &Path) -> Result<(), StoreError>;
}

/// Splits `s3://bucket/key` into its parts.
pub fn parse_uri(uri: &str) -> Option<(&str, &str)> {
    let rest = uri.strip_prefix("s3://")?;
    let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
    (!bucket.is_empty()).then_some((bucket, key))
}

/// A local folder posing as an object store: `DIR/<bucket>/<key>`. A bucket's owner is the
/// content of `DIR/<bucket>/.owner` when that file exists.
#[derive(Debug, Clone)]
pub struct DirectoryStore {
    root: PathBuf,
}

impl DirectoryStore {
    pub fn new(root: impl Into<PathBuf>) -> DirectoryStore {
        DirectoryStore { root: root.into() }
    }

    fn bucket(&self, bucket: &str, expected: Option<&str>) -> Result<PathBuf, StoreError> {
        let dir = self.root.join(bucket);
        if let Some(expected) = expected
            && let Ok(owner) = std::fs::read_to_string(dir.join(".owner"))
            && owner.trim() != expected
        {
            return Err(StoreError::WrongOwner { bucket: bucket.into(), expected: expected.into() });
        }
        Ok(dir)
    }

    fn object(&self, bucket: &str, key: &str, expected: Option<&str>) -> Result<PathBuf, StoreError> {
        if key.split('/').any(|part| part == "..") {
            return Err(StoreError::NotFound { bucket: bucket.into(), key: key.into() });
        }
        Ok(self.bucket(bucket, expected)?.join(key))
    }
}

impl ObjectStore for DirectoryStore {
    fn get(&self, bucket: &str, key: &str, expected_owner: Option<&str>, dest: &Path) -> Result<(), StoreError> {
        let path = self.object(bucket, key, expected_owner)?;
        if !path.is_file() {
            return Err(StoreError::NotFound { bucket: bucket.into(), key: key.into() });
        }
        std::fs::copy(path, dest)?;
        Ok(())
    }

    fn list(
        &self,
        bucket: &str,
        prefix: &str,
        expected_owner: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        let base = self.bucket(bucket, expected_owner)?;
        let mut keys = Vec::new();
        let mut stack = vec![base.clone()];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if path.is_dir() {
                    stack.push(path);
                } else if let Ok(rel) = path.strip_prefix(&base) {
                    let key = rel.to_string_lossy().into_owned();
                    if key.starts_with(prefix) && key != ".owner" {
                        keys.push(key);
                    }
                }
            }
        }
        keys.sort();
        keys.truncate(limit);
        Ok(keys)
    }

    fn put(&self, bucket: &str, key: &str, expected_owner: Option<&str>, src: &Path) -> Result<(), StoreError> {
        let path = self.object(bucket, key, expected_owner)?;
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::copy(src, path)?;
        Ok(())
    }
}

/// Resolves `{{ aws:ssm:… }}` references. The AWS provider supplies one; without it such
/// references fail the step with a clear message.
pub trait ParameterStore: Send + Sync {
    fn get(&self, name: &str) -> Result<String, String>;
}
