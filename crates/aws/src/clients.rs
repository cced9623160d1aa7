//! SDK configuration per account and region.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use tokio::sync::Mutex;

use crate::error::{AwsError, sdk_message};
use crate::limits::Limits;

/// How amictl reaches one account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountAccess {
    pub name: String,
    pub id: String,
    /// Assumed for this account; `None` means "the credentials amictl runs with".
    pub role: Option<String>,
    pub external_id: Option<String>,
}

/// Clients for every configured account and region, built lazily and cached.
#[derive(Clone)]
pub struct Aws {
    base: SdkConfig,
    accounts: Arc<BTreeMap<String, AccountAccess>>,
    configs: Arc<Mutex<HashMap<(String, String), SdkConfig>>>,
    limits: Arc<Mutex<HashMap<(String, String), Limits>>>,
    pages: Arc<tokio::sync::Semaphore>,
}

/// How many large listing pages (a thousand instances: ~3 MB of XML, ~10 MB parsed) are
/// in flight at once, however many accounts and regions are scanned side by side.
/// Parsing is CPU work, so beyond a few (one or two being read while others parse) more
/// buys little speed and costs ~10 MB each (`scripts/bench-scan`: unbounded 106 MiB peak,
/// 4 at once 91–94 MiB, 2 at once 81–86 MiB, at 50,000 instances).
const PAGES_AT_ONCE: usize = 4;

impl Aws {
    /// From the standard chain: credentials, region and `AWS_ENDPOINT_URL` as the AWS CLI
    /// would find them. `region` is the home region when none is configured.
    pub async fn from_env(region: &str, accounts: Vec<AccountAccess>) -> Aws {
        let base = aws_config::defaults(BehaviorVersion::latest()).region(Region::new(region.to_string())).load().await;
        Aws::with_config(base, accounts)
    }

    /// From a prepared config (tests point this at an emulator).
    pub fn with_config(base: SdkConfig, accounts: Vec<AccountAccess>) -> Aws {
        Aws {
            base,
            accounts: Arc::new(accounts.into_iter().map(|a| (a.name.clone(), a)).collect()),
            configs: Arc::new(Mutex::new(HashMap::new())),
            limits: Arc::new(Mutex::new(HashMap::new())),
            pages: Arc::new(tokio::sync::Semaphore::new(PAGES_AT_ONCE)),
        }
    }

    /// A turn to read one large page (see [`PAGES_AT_ONCE`]); held until the page is dropped.
    pub async fn page_turn(&self) -> Option<tokio::sync::SemaphorePermit<'_>> {
        // `None` only if the semaphore were closed, which it never is.
        self.pages.acquire().await.ok()
    }

    /// The rate limits of one account in one region: AWS throttles each account and
    /// region separately, so a scan of ten of them is not paced like one.
    pub async fn limits(&self, account: &str, region: &str) -> Limits {
        self.limits.lock().await.entry((account.to_string(), region.to_string())).or_default().clone()
    }

    /// The configured name of the account with this id.
    pub fn account_by_id(&self, id: &str) -> Option<&AccountAccess> {
        self.accounts.values().find(|a| a.id == id)
    }

    pub fn account(&self, name: &str) -> Result<&AccountAccess, AwsError> {
        self.accounts.get(name).ok_or_else(|| AwsError::UnknownAccount(name.to_string()))
    }

    /// The SDK config for `account` in `region`, assuming the account's role when it has one.
    /// Credentials from AssumeRole are cached and refreshed before they expire.
    pub async fn config(&self, account: &str, region: &str) -> Result<SdkConfig, AwsError> {
        let key = (account.to_string(), region.to_string());
        if let Some(c) = self.configs.lock().await.get(&key) {
            return Ok(c.clone());
        }
        let access = self.account(account)?.clone();
        let regional = self.base.to_builder().region(Region::new(region.to_string())).build();
        let config = match &access.role {
            None => regional,
            Some(role) => {
                let mut builder = aws_config::sts::AssumeRoleProvider::builder(role.clone())
                    .session_name(format!("amictl-{}", access.name))
                    .region(Region::new(region.to_string()))
                    .configure(&regional);
                if let Some(ext) = &access.external_id {
                    builder = builder.external_id(ext.clone());
                }
                let provider = builder.build().await;
                // Fail now, with the role in the message, rather than on the first API call.
                use aws_credential_types::provider::ProvideCredentials;
                provider.provide_credentials().await.map_err(|e| AwsError::AssumeRole {
                    account: access.name.clone(),
                    role: role.clone(),
                    message: sdk_message(&e),
                })?;
                regional
                    .to_builder()
                    .credentials_provider(aws_credential_types::provider::SharedCredentialsProvider::new(provider))
                    .build()
            }
        };
        self.configs.lock().await.insert(key, config.clone());
        Ok(config)
    }

    pub async fn ec2(&self, account: &str, region: &str) -> Result<aws_sdk_ec2::Client, AwsError> {
        Ok(aws_sdk_ec2::Client::new(&self.config(account, region).await?))
    }

    pub async fn ssm(&self, account: &str, region: &str) -> Result<aws_sdk_ssm::Client, AwsError> {
        Ok(aws_sdk_ssm::Client::new(&self.config(account, region).await?))
    }

    pub async fn sts(&self, account: &str, region: &str) -> Result<aws_sdk_sts::Client, AwsError> {
        Ok(aws_sdk_sts::Client::new(&self.config(account, region).await?))
    }
}
