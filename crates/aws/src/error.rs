//! Errors that name the operation, account and region, so a message is actionable
//! without a backtrace, and keep the SDK's error as their source, so a caller can still
//! match on the cause.

/// Any error, kept as a source.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What went wrong in the AWS provider.
#[derive(Debug, thiserror::Error)]
pub enum AwsError {
    /// An API call failed (the SDK's error is the source).
    #[error("{op} in account {account} ({region}): {}", sdk_message(.source.as_ref()))]
    Api { op: &'static str, account: String, region: String, source: BoxError },
    /// A role could not be assumed.
    #[error("cannot assume {role} for account {account}: {message} (check the role's trust policy and external id)")]
    AssumeRole { account: String, role: String, message: String },
    /// The config names no such account.
    #[error("no account `{0}` in the config")]
    UnknownAccount(String),
    /// Something looked for is not there.
    #[error("{what} not found in account {account} ({region})")]
    NotFound { what: String, account: String, region: String },
    /// Something went wrong, in words.
    #[error("{what} in {region}: {message}")]
    Failed { what: String, region: String, message: String },
    /// A Run Command invocation that ended other than in success; `tail` is its last lines.
    #[error("{what} on {instance} ({region}) ended {status} with exit code {exit_code}: {tail}")]
    Command { what: String, instance: String, region: String, status: String, exit_code: i32, tail: String },
    /// A wait ran out of time.
    #[error("timed out after {seconds}s waiting for {what} in {region}")]
    Timeout { what: String, region: String, seconds: u64 },
    /// The operator asked amictl to stop.
    #[error("interrupted by the operator")]
    Cancelled,
}

impl From<AwsError> for provider::ProviderError {
    fn from(e: AwsError) -> provider::ProviderError {
        match e {
            AwsError::Cancelled => provider::ProviderError::Cancelled,
            other => provider::ProviderError::failed(other),
        }
    }
}

/// The message of an SDK error with its full context (service code, message, cause).
pub fn sdk_message(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = readable(&e.to_string());
    let mut source = e.source();
    while let Some(s) = source {
        let text = readable(&s.to_string());
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// The SDK shows unmodelled errors as `Error { code: "X", message: "Y", … }`; say `X: Y`.
fn readable(text: &str) -> String {
    let field = |name: &str| {
        let start = text.find(&format!("{name}: \""))? + name.len() + 3;
        let end = text[start..].find('"')?;
        Some(text[start..start + end].to_string())
    };
    match (text.contains("Error {"), field("code"), field("message")) {
        (true, Some(code), Some(message)) => {
            let prefix = &text[..text.find("Error {").unwrap_or(0)];
            format!("{prefix}{code}: {message}")
        }
        _ => text.to_string(),
    }
}

/// Maps an SDK error (or a message) to [`AwsError::Api`] for one operation in one place.
pub(crate) fn api<E: Into<BoxError>>(op: &'static str, account: &str, region: &str) -> impl Fn(E) -> AwsError + use<E> {
    let (account, region) = (account.to_string(), region.to_string());
    move |e| AwsError::Api { op, account: account.clone(), region: region.clone(), source: e.into() }
}

#[cfg(test)]
mod tests {
    #[test]
    fn unmodelled_errors_read_as_code_and_message() {
        assert_eq!(
            super::readable(
                r#"unhandled error (AccessDenied): Error { code: "AccessDenied", message: "not allowed", aws_request_id: "1" }"#
            ),
            "unhandled error (AccessDenied): AccessDenied: not allowed"
        );
        assert_eq!(super::readable("plain"), "plain");
    }

    #[test]
    fn an_api_error_keeps_its_source_and_names_where() {
        let e = super::api::<String>("ec2:CopyImage", "platform", "eu-west-2")("InternalError: boom".into());
        assert_eq!(e.to_string(), "ec2:CopyImage in account platform (eu-west-2): InternalError: boom");
        assert!(std::error::Error::source(&e).is_some(), "the cause is kept as the source");
    }
}
