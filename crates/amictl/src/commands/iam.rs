//! `amictl iam-policy`: the IAM documents the config needs, least privilege.

use anyhow::Result;

use super::load_config_reading;
use crate::cli::Common;
use crate::{UsageError, exit};

pub fn run(common: &Common) -> Result<u8> {
    let cfg = load_config_reading(common)?;
    let out = aws::iam::for_config(&cfg).map_err(UsageError)?;
    if common.json {
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(exit::OK);
    }
    println!(
        "# Platform account {} — attach to the identity amictl runs as",
        out["platform"]["account"].as_str().unwrap_or_default()
    );
    println!("{}", serde_json::to_string_pretty(&out["platform"]["policy"])?);
    println!("\n# Builder/test instance profile role — attach AmazonSSMManagedInstanceCore and");
    println!("{}", serde_json::to_string_pretty(&out["builder_instance_profile"]["policy"])?);
    for (name, c) in out["consumers"].as_object().into_iter().flatten() {
        println!(
            "\n# Consumer `{name}` ({}) — role {}",
            c["account"].as_str().unwrap_or_default(),
            c["role"].as_str().unwrap_or("(none)")
        );
        println!("{}", serde_json::to_string_pretty(&c["policy"])?);
        println!("# trust policy of that role");
        println!("{}", serde_json::to_string_pretty(&c["trust_policy"])?);
    }
    Ok(exit::OK)
}
