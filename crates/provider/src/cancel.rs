use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::ProviderError;

/// Set when the operator asked amictl to stop (SIGINT, SIGTERM): work in progress cleans
/// up what it made and returns [`ProviderError::Cancelled`]; nothing new starts. Setting it
/// is async-signal-safe (one atomic store).
#[derive(Debug, Clone, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    /// A token nobody has set.
    pub fn new() -> Cancel {
        Cancel::default()
    }

    /// Asks everything holding a clone to stop.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether stopping was asked for.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// `Err(Cancelled)` once stopping was asked for: `cancel.check()?` between steps.
    pub fn check(&self) -> Result<(), ProviderError> {
        if self.is_cancelled() { Err(ProviderError::Cancelled) } else { Ok(()) }
    }
}
