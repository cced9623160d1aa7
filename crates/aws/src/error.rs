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

/// Maps an SDK error message to [`AwsError::Api`] for one operation in one place.
pub(crate) fn api(op: &'static str, account: &str, region: &str) -> impl Fn(String) -> AwsError {
    let (account, region) = (account.to_string(), region.to_string());
    move |message| AwsError::Api { op, account: account.clone(), region: region.clone(), message }
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
}
