use std::error::Error;

/// Why a provider call did not do its work.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// The operator asked amictl to stop; what the call made was cleaned up.
    #[error("interrupted by the operator")]
    Cancelled,
    /// The call failed; the source names the operation and where (account, region).
    #[error(transparent)]
    Failed(Box<dyn Error + Send + Sync + 'static>),
}

impl ProviderError {
    /// Wraps any error, keeping it as the source.
    pub fn failed(e: impl Error + Send + Sync + 'static) -> ProviderError {
        ProviderError::Failed(Box::new(e))
    }

    /// A failure described by a message.
    pub fn message(text: impl Into<String>) -> ProviderError {
        ProviderError::Failed(text.into().into())
    }

    /// Whether the operator asked to stop.
    pub fn is_cancelled(&self) -> bool {
        matches!(self, ProviderError::Cancelled)
    }
}

/// An error and its sources as one line, each cause once: `a: b: c`.
pub fn chain(e: &(dyn Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}
