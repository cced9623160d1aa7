use provider::ProviderError;

/// Why the engine could not do something.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The state could not be read or written (boxed: it is large and rare).
    #[error(transparent)]
    Catalog(Box<catalog::CatalogError>),
    /// A provider failed; `context` says what the engine was doing.
    #[error("{context}: {source}")]
    Provider {
        /// What the engine was doing.
        context: String,
        /// The provider's error.
        #[source]
        source: ProviderError,
    },
    /// Something failed, said in words.
    #[error("{0}")]
    Failed(String),
    /// A request that cannot be granted as asked (an approval that is not pending, or
    /// does not exist): the caller's mistake, not a failure of amictl.
    #[error("{0}")]
    Refused(String),
    /// The operator asked amictl to stop.
    #[error("interrupted by the operator")]
    Cancelled,
}

impl From<catalog::CatalogError> for EngineError {
    fn from(e: catalog::CatalogError) -> EngineError {
        EngineError::Catalog(Box::new(e))
    }
}

impl EngineError {
    /// A provider error with what the engine was doing; cancellation stays cancellation.
    pub fn provider(context: impl Into<String>, source: ProviderError) -> EngineError {
        if source.is_cancelled() {
            EngineError::Cancelled
        } else {
            EngineError::Provider { context: context.into(), source }
        }
    }

    /// Whether the operator asked to stop.
    pub fn is_cancelled(&self) -> bool {
        matches!(self, EngineError::Cancelled)
    }

    /// The error and its causes as one line.
    pub fn text(&self) -> String {
        provider::chain(self)
    }
}
