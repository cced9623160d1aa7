//! Errors that name the operation, account and region, so a message is actionable
//! without a backtrace.

#[derive(Debug, thiserror::Error)]
pub enum AwsError {
    #[error("{op} in account {account} ({region}): {message}")]
    Api { op: &'static str, account: String, region: String, message: String },
    #[error("cannot assume {role} for account {account}: {message} (check the role's trust policy and external id)")]
    AssumeRole { account: String, role: String, message: String },
    #[error("no account `{0}` in the config")]
    UnknownAccount(String),
    #[error("{what} not found in account {account} ({region})")]
    NotFound { what: String, account: String, region: String },
    #[error("{what} in {region}: {message}")]
    Failed { what: String, region: String, message: String },
    /// A Run Command invocation that ended other than in success; `tail` is its last lines.
    #[error("{what} on {instance} ({region}) ended {status} with exit code {exit_code}: {tail}")]
    Command { what: String, instance: String, region: String, status: String, exit_code: i32, tail: String },
    #[error("timed out after {seconds}s waiting for {what} in {region}")]
    Timeout { what: String, region: String, seconds: u64 },
}

/// The message of an SDK error with its full context (service code, message, cause).
pub fn sdk_message<E: std::error::Error>(e: &E) -> String {
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

/// Maps an SDK error message to [`AwsError::Api`] for one operation in one place.
pub(crate) fn api(op: &'static str, account: &str, region: &str) -> impl Fn(String) -> AwsError {
    let (account, region) = (account.to_string(), region.to_string());
    move |message| AwsError::Api { op, account: account.clone(), region: region.clone(), message }
}
