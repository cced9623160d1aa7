//! Reading user-supplied input: regular files only where a file is meant, never more than
//! a stated number of bytes, and errors that say which rule was broken.
//!
//! `/dev/zero` as a document must be an error, not 21 GB of memory: the type is checked
//! before reading and the read stops one byte past the limit, so a file that grows while
//! it is read is caught too.

use std::io::Read;
use std::path::{Path, PathBuf};

/// Documents (awstoe's own limit for a component is 16 MiB of YAML; more is an accident).
pub const DOCUMENT_LIMIT: u64 = 16 << 20;
/// `amictl.toml`.
pub const CONFIG_LIMIT: u64 = 4 << 20;
/// A parameter value read from a file.
pub const PARAMETER_LIMIT: u64 = 1 << 20;
/// Package manifests and advisory feeds (an Amazon Linux 2 updateinfo is ~60 MiB unpacked).
pub const FEED_LIMIT: u64 = 512 << 20;
/// Saved `describe-instances` output (50,000 instances are ~150 MiB).
pub const INVENTORY_LIMIT: u64 = 1 << 30;

/// Why an input file was not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    /// It does not exist.
    #[error("{0} does not exist")]
    Missing(PathBuf),
    /// It exists but is not a regular file.
    #[error("{0} is not a regular file (it is {1})")]
    NotAFile(PathBuf, &'static str),
    /// It is larger than the limit.
    #[error("{0} is larger than the {1} bytes amictl reads from such a file")]
    TooLarge(PathBuf, u64),
    /// Reading failed.
    #[error("cannot read {0}: {1}")]
    Io(PathBuf, String),
    /// It is not UTF-8; `line` and `column` are where the first bad byte is.
    #[error("{path}: not UTF-8 text (line {line}, column {column})")]
    NotUtf8 {
        /// The file.
        path: PathBuf,
        /// 1-based line of the first invalid byte.
        line: usize,
        /// 1-based column (in characters) of the first invalid byte.
        column: usize,
    },
}

fn kind(t: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if t.is_dir() {
        "a folder"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_fifo() {
        "a named pipe"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a file"
    }
}

/// The size of the regular file at `path` (symlinks followed), or why it is not one.
pub fn regular_file(path: &Path) -> Result<u64, InputError> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(InputError::Missing(path.into())),
        Err(e) => return Err(InputError::Io(path.into(), e.to_string())),
    };
    if !meta.is_file() {
        return Err(InputError::NotAFile(path.into(), kind(meta.file_type())));
    }
    Ok(meta.len())
}

/// The bytes of the regular file at `path` (symlinks followed), at most `limit` of them.
///
/// The file is opened first (non-blocking, so a named pipe cannot hang the open) and its
/// type checked on the open handle: a path swapped between the check and the read cannot
/// slip a device or a pipe in.
pub fn read(path: &Path, limit: u64) -> Result<Vec<u8>, InputError> {
    use std::os::unix::fs::OpenOptionsExt;
    let flags = rustix::fs::OFlags::NONBLOCK | rustix::fs::OFlags::NOCTTY;
    let file = match std::fs::OpenOptions::new().read(true).custom_flags(flags.bits() as i32).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(InputError::Missing(path.into())),
        Err(e) => return Err(InputError::Io(path.into(), e.to_string())),
    };
    let meta = file.metadata().map_err(|e| InputError::Io(path.into(), e.to_string()))?;
    if !meta.is_file() {
        return Err(InputError::NotAFile(path.into(), kind(meta.file_type())));
    }
    if meta.len() > limit {
        return Err(InputError::TooLarge(path.into(), limit));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(limit + 1).read_to_end(&mut bytes).map_err(|e| InputError::Io(path.into(), e.to_string()))?;
    if bytes.len() as u64 > limit {
        return Err(InputError::TooLarge(path.into(), limit));
    }
    Ok(bytes)
}

/// [`read`] as UTF-8 text.
pub fn read_text(path: &Path, limit: u64) -> Result<String, InputError> {
    utf8(path, read(path, limit)?)
}

/// Bytes as UTF-8, or where they stop being UTF-8.
pub fn utf8(path: &Path, bytes: Vec<u8>) -> Result<String, InputError> {
    String::from_utf8(bytes).map_err(|e| {
        let good = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let text = String::from_utf8_lossy(good);
        let line = text.matches('\n').count() + 1;
        let column = text.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        InputError::NotUtf8 { path: path.into(), line, column }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_folders_and_oversized_files_are_refused_before_they_are_read() {
        assert!(matches!(read(Path::new("/dev/zero"), 10), Err(InputError::NotAFile(_, "a character device"))));
        assert!(matches!(read(Path::new("/"), 10), Err(InputError::NotAFile(_, "a folder"))));
        assert!(matches!(read(Path::new("/no/such/file"), 10), Err(InputError::Missing(_))));
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("big");
        std::fs::write(&f, vec![b'x'; 11]).unwrap();
        assert!(matches!(read(&f, 10), Err(InputError::TooLarge(_, 10))));
        assert_eq!(read(&f, 11).unwrap().len(), 11);
        std::fs::write(&f, b"ok\nab\xffcd").unwrap();
        assert_eq!(read_text(&f, 100).unwrap_err(), InputError::NotUtf8 { path: f.clone(), line: 2, column: 3 });
    }
}
