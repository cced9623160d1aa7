//! Image Builder components fetched by ARN with `GetComponent`, for the config loader and
//! `toe validate|run`: the engine only sees [`toe::component::Fetch`].
//!
//! Credentials are the standard chain's (the platform account's, as amictl runs with
//! them): AWS-managed components are readable by every account, an account's own by that
//! account and those it shares them with. The region is the ARN's.

use std::sync::Mutex;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_imagebuilder::error::ProvideErrorMetadata;
use toe::component::{ComponentArn, Fetch, FetchError, Fetched};

/// `GetComponent` on a runtime of its own, started on first use.
#[derive(Default)]
pub struct ComponentFetcher {
    rt: Mutex<Option<(tokio::runtime::Runtime, SdkConfig)>>,
}

impl ComponentFetcher {
    pub fn new() -> ComponentFetcher {
        ComponentFetcher::default()
    }
}

impl Fetch for ComponentFetcher {
    fn fetch(&self, arn: &str) -> Result<Fetched, FetchError> {
        let parsed = ComponentArn::parse(arn)?;
        let mut guard = self.rt.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if guard.is_none() {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| FetchError::transient(format!("cannot start the async runtime: {e}")))?;
            let base = rt.block_on(aws_config::defaults(BehaviorVersion::latest()).load());
            *guard = Some((rt, base));
        }
        let Some((rt, base)) = guard.as_ref() else { unreachable!("set above") };
        let conf = aws_sdk_imagebuilder::config::Builder::from(base).region(Region::new(parsed.region.clone())).build();
        let client = aws_sdk_imagebuilder::Client::from_conf(conf);
        let out = rt.block_on(client.get_component().component_build_version_arn(arn).send()).map_err(|e| {
            use aws_sdk_imagebuilder::error::SdkError;
            let code = e.as_service_error().and_then(|s| s.code()).unwrap_or_default().to_string();
            let message = e.as_service_error().and_then(|s| s.message()).unwrap_or_default().to_string();
            let status = e.raw_response().map(|r| r.status().as_u16()).unwrap_or_default();
            match (&e, code.as_str()) {
                (_, "ResourceNotFoundException") => {
                    FetchError::refused(format!("{arn}: no such component in {}", parsed.region))
                }
                (_, "ForbiddenException" | "AccessDeniedException") => {
                    FetchError::refused(format!("{arn}: access denied (imagebuilder:GetComponent): {message}"))
                }
                (SdkError::DispatchFailure(_) | SdkError::TimeoutError(_), _) => FetchError::transient(format!(
                    "{arn}: cannot reach Image Builder in {}: {}",
                    parsed.region,
                    aws_sdk_imagebuilder::error::DisplayErrorContext(&e)
                )),
                _ if status >= 500 || code.contains("Throttl") || code == "ServiceUnavailableException" => {
                    FetchError::transient(format!("{arn}: GetComponent failed: {code} {message} (HTTP {status})"))
                }
                (_, "") => FetchError::refused(format!(
                    "{arn}: GetComponent failed: {}",
                    aws_sdk_imagebuilder::error::DisplayErrorContext(&e)
                )),
                _ => FetchError::refused(format!("{arn}: GetComponent failed: {code}: {message}")),
            }
        })?;
        let c =
            out.component.ok_or_else(|| FetchError::refused(format!("{arn}: GetComponent returned no component")))?;
        let data =
            c.data.ok_or_else(|| FetchError::refused(format!("{arn}: GetComponent returned no document (`data`)")))?;
        if data.len() > toe::input::DOCUMENT_LIMIT as usize {
            return Err(FetchError::refused(format!(
                "{arn}: the document is {} bytes, more than amictl reads",
                data.len()
            )));
        }
        Ok(Fetched::new(
            arn,
            c.arn.unwrap_or_else(|| arn.to_string()),
            c.name.unwrap_or_else(|| parsed.name.clone()),
            c.version.unwrap_or_default(),
            data,
        ))
    }
}
