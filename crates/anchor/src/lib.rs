//! # anchor — the audit chain's head, kept where the database's writers cannot reach
//!
//! A hash chain shows that no event was changed *inside* the chain, but not that the chain
//! is whole: delete its last events, or rewrite an event and re-hash every later one, and
//! it still verifies. A **checkpoint** — the head's sequence number and hash, when, and
//! which chain (the hash of its first event) — written outside the database closes that
//! gap, as CloudTrail's digest files do: a chain that ends before the newest checkpoint lost
//! its tail; one whose event at a checkpoint's sequence has another hash was rewritten; an
//! empty state where checkpoints exist lost its history.
//!
//! Checkpoints are signed with an Ed25519 key the database never sees ([`Signer`]), and
//! kept by an [`AnchorStore`]: a directory here ([`DirStore`]), S3 under Object Lock in the
//! `aws` crate. Because each event's hash covers every event before it, the newest valid
//! checkpoint vouches for the whole chain up to it; [`judge`] needs only that one.
#![deny(missing_docs)]

use std::path::{Path, PathBuf};

pub use ed25519_dalek::VerifyingKey;
use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _};
use serde::{Deserialize, Serialize};

/// The checkpoint format this crate writes and reads.
pub const FORMAT: &str = "amictl-anchor/1";

/// Largest checkpoint read back (they are a few hundred bytes).
pub const MAX_CHECKPOINT_BYTES: u64 = 16 * 1024;

/// Why anchors could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum AnchorError {
    /// A file or directory could not be used.
    #[error("{path}: {message}")]
    Io {
        /// It.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// A key was not what it must be.
    #[error("{0}")]
    Key(String),
    /// The remote store refused or could not be reached.
    #[error("{store}: {message}")]
    Store {
        /// Which store (`s3://bucket/prefix`).
        store: String,
        /// Why.
        message: String,
    },
}

/// The head of one chain at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// [`FORMAT`].
    pub format: String,
    /// The chain: the hash of its first event.
    pub chain: String,
    /// The head's sequence number.
    pub seq: i64,
    /// The head's hash.
    pub hash: String,
    /// When the checkpoint was made (RFC 3339).
    pub time: String,
    /// The Ed25519 public key that signed it (hex), if signed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The signature over [`Checkpoint::message`] (hex), if signed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

impl Checkpoint {
    /// An unsigned checkpoint of `chain` at (`seq`, `hash`).
    pub fn new(chain: &str, seq: i64, hash: &str, time: &str) -> Checkpoint {
        Checkpoint {
            format: FORMAT.into(),
            chain: chain.into(),
            seq,
            hash: hash.into(),
            time: time.into(),
            key: None,
            signature: None,
        }
    }

    /// The bytes a signature covers: every field but the signature, one per line.
    pub fn message(&self) -> String {
        format!("{}\n{}\n{}\n{}\n{}\n", self.format, self.chain, self.seq, self.hash, self.time)
    }

    /// A name that sorts by sequence number: `<chain prefix>/<seq>-<hash prefix>.json`.
    pub fn name(&self) -> String {
        let short = |s: &str| s.chars().filter(char::is_ascii_hexdigit).take(16).collect::<String>();
        format!("{}/{:012}-{}.json", short(&self.chain), self.seq.max(0), short(&self.hash))
    }

    /// Whether it is signed by `public` and the signature holds.
    pub fn signed_by(&self, public: &VerifyingKey) -> bool {
        let Some(sig) = self.signature.as_deref().and_then(|s| hex::<64>(s).ok()) else { return false };
        public.verify(self.message().as_bytes(), &Signature::from_bytes(&sig)).is_ok()
    }
}

fn hex<const N: usize>(s: &str) -> Result<[u8; N], String> {
    let s = s.trim();
    if s.len() != N * 2 || !s.bytes().all(|c| c.is_ascii_hexdigit()) {
        return Err(format!("expected {} hex digits", N * 2));
    }
    let mut out = [0u8; N];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&s[i * 2..i * 2 + 2], 16).map_err(|e| e.to_string())?;
    }
    Ok(out)
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Signs checkpoints.
pub struct Signer {
    key: SigningKey,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Signer({})", self.public_hex())
    }
}

impl Signer {
    /// From the key file's text: the 32-byte seed as 64 hex digits.
    pub fn from_hex(text: &str) -> Result<Signer, AnchorError> {
        let seed =
            hex::<32>(text).map_err(|e| AnchorError::Key(format!("the signing key is not an Ed25519 seed ({e})")))?;
        Ok(Signer { key: SigningKey::from_bytes(&seed) })
    }

    /// A new key from the kernel's random source, and its file text.
    pub fn generate() -> Result<(Signer, String), AnchorError> {
        use std::io::Read;
        let mut seed = [0u8; 32];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut seed))
            .map_err(|e| AnchorError::Io { path: "/dev/urandom".into(), message: e.to_string() })?;
        let text = to_hex(&seed);
        Ok((Signer { key: SigningKey::from_bytes(&seed) }, text))
    }

    /// The public key, hex.
    pub fn public_hex(&self) -> String {
        to_hex(self.key.verifying_key().as_bytes())
    }

    /// The public key.
    pub fn public(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// Signs `cp` in place.
    pub fn sign(&self, cp: &mut Checkpoint) {
        cp.key = Some(self.public_hex());
        cp.signature = Some(to_hex(&self.key.sign(cp.message().as_bytes()).to_bytes()));
    }
}

/// An Ed25519 public key from 64 hex digits.
pub fn public_key(text: &str) -> Result<VerifyingKey, AnchorError> {
    let bytes = hex::<32>(text).map_err(|e| AnchorError::Key(format!("the public key is not an Ed25519 key ({e})")))?;
    VerifyingKey::from_bytes(&bytes)
        .map_err(|e| AnchorError::Key(format!("the public key is not an Ed25519 key ({e})")))
}

/// One checkpoint as a store holds it.
#[derive(Debug, Clone)]
pub struct Stored {
    /// Where (`dir/…json`, `s3://bucket/key`).
    pub location: String,
    /// What it holds, or why it could not be read.
    pub checkpoint: Result<Checkpoint, String>,
    /// Whether the store guarantees it cannot be changed or deleted before a date (S3
    /// Object Lock in compliance mode), and until when.
    pub locked_until: Option<String>,
}

/// Where checkpoints are kept.
pub trait AnchorStore {
    /// `dir:/path` or `s3://bucket/prefix`.
    fn describe(&self) -> String;
    /// Writes one checkpoint; where it went.
    fn put(&self, cp: &Checkpoint) -> Result<String, AnchorError>;
    /// Every checkpoint's name, in sequence order (names sort so).
    fn names(&self) -> Result<Vec<String>, AnchorError>;
    /// One checkpoint by name.
    fn get(&self, name: &str) -> Result<Stored, AnchorError>;
}

/// Checkpoints as files in a directory, written beside their name and renamed into
/// place, never overwritten.
#[derive(Debug, Clone)]
pub struct DirStore {
    dir: PathBuf,
}

impl DirStore {
    /// A store in `dir` (created on the first write).
    pub fn new(dir: &Path) -> DirStore {
        DirStore { dir: dir.to_path_buf() }
    }
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> AnchorError + '_ {
    move |e| AnchorError::Io { path: path.to_path_buf(), message: e.to_string() }
}

/// Parses a checkpoint's bytes.
pub fn parse(bytes: &[u8]) -> Result<Checkpoint, String> {
    let cp: Checkpoint = serde_json::from_slice(bytes).map_err(|e| format!("not a checkpoint: {e}"))?;
    if cp.format != FORMAT {
        return Err(format!("format {:?}, not {FORMAT}", cp.format));
    }
    Ok(cp)
}

impl AnchorStore for DirStore {
    fn describe(&self) -> String {
        format!("dir:{}", self.dir.display())
    }

    fn put(&self, cp: &Checkpoint) -> Result<String, AnchorError> {
        let path = self.dir.join(cp.name());
        let parent = path.parent().unwrap_or(&self.dir);
        std::fs::create_dir_all(parent).map_err(io(parent))?;
        if path.exists() {
            return Ok(path.display().to_string());
        }
        let tmp = parent.join(format!(".{}.partial", std::process::id()));
        let bytes = serde_json::to_vec_pretty(cp)
            .map_err(|e| AnchorError::Io { path: path.clone(), message: e.to_string() })?;
        std::fs::write(&tmp, bytes)
            .and_then(|()| std::fs::File::open(&tmp)?.sync_all())
            .and_then(|()| std::fs::hard_link(&tmp, &path))
            .map_err(io(&path))?;
        let _ = std::fs::remove_file(&tmp);
        Ok(path.display().to_string())
    }

    fn names(&self) -> Result<Vec<String>, AnchorError> {
        let mut out = Vec::new();
        let top = match std::fs::read_dir(&self.dir) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(io(&self.dir)(e)),
        };
        for chain in top.flatten().filter(|e| e.path().is_dir()) {
            let chain_name = chain.file_name().to_string_lossy().into_owned();
            for f in std::fs::read_dir(chain.path()).map_err(io(&chain.path()))?.flatten() {
                let name = f.file_name().to_string_lossy().into_owned();
                if name.ends_with(".json") && !name.starts_with('.') {
                    out.push(format!("{chain_name}/{name}"));
                }
            }
        }
        out.sort_by(|a, b| a.rsplit('/').next().cmp(&b.rsplit('/').next()).then(a.cmp(b)));
        Ok(out)
    }

    fn get(&self, name: &str) -> Result<Stored, AnchorError> {
        use std::io::Read;
        let path = self.dir.join(name);
        let mut bytes = Vec::new();
        std::fs::File::open(&path)
            .and_then(|f| f.take(MAX_CHECKPOINT_BYTES).read_to_end(&mut bytes))
            .map_err(io(&path))?;
        Ok(Stored { location: path.display().to_string(), checkpoint: parse(&bytes), locked_until: None })
    }
}

/// The chain as the database holds it now.
#[derive(Debug, Clone, Default)]
pub struct Chain {
    /// The hash of its first event; `None` when empty.
    pub first: Option<String>,
    /// Its head: sequence and hash.
    pub head: Option<(i64, String)>,
    /// Where re-hashing it broke, if it did (sequence, problem).
    pub broken: Option<(i64, String)>,
}

/// What the anchors say about a chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Verdict {
    /// No checkpoint was found.
    NoAnchors,
    /// The chain holds the newest valid checkpoint's event with its hash: intact up to it.
    Intact {
        /// Events after that checkpoint, which no anchor vouches for yet.
        unanchored: i64,
    },
    /// The chain ends before the newest checkpoint: events were deleted from its end.
    TailDeleted {
        /// Where the chain ends now (0 when empty).
        ends_at: i64,
    },
    /// The chain's event at the checkpoint's sequence has another hash (or the chain is
    /// another chain): events were changed and re-hashed, or the history replaced.
    Rewritten {
        /// The sequence at which the checkpoint and the chain disagree.
        at: i64,
    },
    /// The state holds no events where a history existed.
    Missing,
}

/// The verdict with its evidence.
#[derive(Debug, Clone, Serialize)]
pub struct Judgement {
    /// What the anchors say.
    pub verdict: Verdict,
    /// The store asked.
    pub store: String,
    /// Checkpoints listed.
    pub listed: usize,
    /// The newest valid checkpoint, and where it is: what the verdict is measured against.
    pub newest: Option<(Checkpoint, String)>,
    /// The newest checkpoint the chain still agrees with: where a restore can start from.
    pub last_good: Option<(Checkpoint, String)>,
    /// Checkpoints that were unreadable, unsigned or signed by another key (ignored).
    pub rejected: Vec<(String, String)>,
}

/// Reads checkpoints newest first until one is valid (signed by `public`, when given) and
/// judges `chain` against it. `hash_at` reads the chain's hash at a sequence number.
pub fn judge(
    store: &dyn AnchorStore,
    public: Option<&VerifyingKey>,
    chain: &Chain,
    hash_at: &dyn Fn(i64) -> Option<String>,
) -> Result<Judgement, AnchorError> {
    let names = store.names()?;
    let mut j = Judgement {
        verdict: Verdict::NoAnchors,
        store: store.describe(),
        listed: names.len(),
        newest: None,
        last_good: None,
        rejected: Vec::new(),
    };
    let valid = |s: &Stored| -> Result<Checkpoint, String> {
        let cp = s.checkpoint.clone()?;
        match public {
            Some(k) if !cp.signed_by(k) => Err(if cp.signature.is_none() {
                "not signed".into()
            } else {
                "signed by another key, or changed after signing".into()
            }),
            None if s.locked_until.is_none() => Err("neither signed with a known key nor under Object Lock".into()),
            _ => Ok(cp),
        }
    };
    let agrees = |cp: &Checkpoint| {
        chain.first.as_deref() == Some(cp.chain.as_str()) && hash_at(cp.seq).as_deref() == Some(cp.hash.as_str())
    };
    for name in names.iter().rev() {
        let stored = store.get(name)?;
        let cp = match valid(&stored) {
            Ok(cp) => cp,
            Err(why) => {
                j.rejected.push((stored.location, why));
                continue;
            }
        };
        if j.newest.is_none() {
            let head = chain.head.as_ref().map_or(0, |(s, _)| *s);
            j.verdict = if chain.head.is_none() {
                Verdict::Missing
            } else if cp.seq > head && chain.first.as_deref() == Some(cp.chain.as_str()) && chain.broken.is_none() {
                Verdict::TailDeleted { ends_at: head }
            } else if agrees(&cp) {
                Verdict::Intact { unanchored: head - cp.seq }
            } else {
                Verdict::Rewritten { at: if chain.first.as_deref() == Some(cp.chain.as_str()) { cp.seq } else { 1 } }
            };
            let intact = matches!(j.verdict, Verdict::Intact { .. });
            j.newest = Some((cp.clone(), stored.location.clone()));
            if intact {
                j.last_good = j.newest.clone();
                break;
            }
        }
        if agrees(&cp) {
            j.last_good = Some((cp, stored.location));
            break;
        }
    }
    Ok(j)
}

/// Whether `store` holds any checkpoint at all: a history existed.
pub fn any(store: &dyn AnchorStore) -> Result<Option<String>, AnchorError> {
    Ok(store.names()?.pop())
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Verdict::NoAnchors => write!(f, "no checkpoint found"),
            Verdict::Intact { unanchored: 0 } => write!(f, "intact up to the newest checkpoint"),
            Verdict::Intact { unanchored } => {
                write!(f, "intact up to the newest checkpoint ({unanchored} later event(s) not anchored yet)")
            }
            Verdict::TailDeleted { ends_at } => {
                write!(f, "TAIL DELETED: the chain ends at event {ends_at}, before the newest checkpoint")
            }
            Verdict::Rewritten { at } => {
                write!(
                    f,
                    "REWRITTEN: the chain's event {at} does not match its checkpoint (changed and re-hashed, or replaced)"
                )
            }
            Verdict::Missing => {
                write!(f, "HISTORY MISSING: the state holds no events, but checkpoints show a history existed")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain_of(n: i64, tag: &str) -> (Chain, Vec<String>) {
        let hashes: Vec<String> = (1..=n).map(|i| format!("{tag}{i:062}")).collect();
        let chain = Chain { first: hashes.first().cloned(), head: hashes.last().map(|h| (n, h.clone())), broken: None };
        (chain, hashes)
    }

    #[test]
    fn the_newest_signed_checkpoint_tells_a_deleted_tail_a_rewrite_and_a_missing_history() {
        let d = tempfile::tempdir().unwrap();
        let store = DirStore::new(d.path());
        let (signer, _) = Signer::generate().unwrap();
        let (chain, hashes) = chain_of(7, "a");
        for seq in [3, 7] {
            let mut cp = Checkpoint::new(&hashes[0], seq, &hashes[seq as usize - 1], "2026-12-01T00:00:00Z");
            signer.sign(&mut cp);
            store.put(&cp).unwrap();
        }
        let public = signer.public();
        let at = |h: &Vec<String>, upto: i64| {
            let h = h.clone();
            move |s: i64| (s >= 1 && s <= upto).then(|| h[s as usize - 1].clone())
        };
        let j = judge(&store, Some(&public), &chain, &at(&hashes, 7)).unwrap();
        assert_eq!(j.verdict, Verdict::Intact { unanchored: 0 });
        assert_eq!(j.listed, 2);

        // The last three events deleted.
        let cut = Chain { head: Some((4, hashes[3].clone())), ..chain.clone() };
        let j = judge(&store, Some(&public), &cut, &at(&hashes, 4)).unwrap();
        assert_eq!(j.verdict, Verdict::TailDeleted { ends_at: 4 });
        assert_eq!(j.last_good.as_ref().map(|(c, _)| c.seq), Some(3), "the checkpoint the chain still agrees with");

        // Event 5 changed and every later one re-hashed.
        let mut rewritten = hashes.clone();
        for h in &mut rewritten[4..] {
            *h = h.replace('a', "b");
        }
        let re = Chain { head: Some((7, rewritten[6].clone())), ..chain.clone() };
        let j = judge(&store, Some(&public), &re, &at(&rewritten, 7)).unwrap();
        assert_eq!(j.verdict, Verdict::Rewritten { at: 7 });
        assert_eq!(j.last_good.as_ref().map(|(c, _)| c.seq), Some(3));

        let j = judge(&store, Some(&public), &Chain::default(), &|_| None).unwrap();
        assert_eq!(j.verdict, Verdict::Missing);
        assert!(j.last_good.is_none());
    }

    #[test]
    fn a_forged_or_unsigned_checkpoint_is_rejected_and_does_not_hide_the_real_one() {
        let d = tempfile::tempdir().unwrap();
        let store = DirStore::new(d.path());
        let (signer, _) = Signer::generate().unwrap();
        let (attacker, _) = Signer::generate().unwrap();
        let (chain, hashes) = chain_of(9, "c");
        let mut real = Checkpoint::new(&hashes[0], 9, &hashes[8], "t");
        signer.sign(&mut real);
        store.put(&real).unwrap();
        // The attacker deletes the tail and writes a checkpoint for the shorter chain.
        let mut fake = Checkpoint::new(&hashes[0], 12, "f".repeat(64).as_str(), "t");
        attacker.sign(&mut fake);
        store.put(&fake).unwrap();
        store.put(&Checkpoint::new(&hashes[0], 13, &"e".repeat(64), "t")).unwrap();
        let mut edited = real.clone();
        edited.seq = 11;
        std::fs::write(d.path().join(edited.name()), serde_json::to_vec(&edited).unwrap()).unwrap();
        let h = hashes.clone();
        let j = judge(&store, Some(&signer.public()), &chain, &move |s| h.get(s as usize - 1).cloned()).unwrap();
        assert_eq!(j.verdict, Verdict::Intact { unanchored: 0 });
        assert_eq!(j.rejected.len(), 3, "{:?}", j.rejected);
        assert!(Signer::from_hex("zz").is_err());
        assert_eq!(Signer::from_hex(&"11".repeat(32)).unwrap().public_hex().len(), 64);
    }
}
