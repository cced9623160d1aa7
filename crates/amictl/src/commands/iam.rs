//! `amictl iam-policy`: the IAM documents the config needs, least privilege.

use anyhow::Result;

use super::load_config_reading;
use crate::cli::Common;
use crate::{UsageError, exit};

pub fn run(common: &Common) -> Result<u8> {
    let cfg = load_config_reading(common)?;
    let mut out = aws::iam::for_config(&cfg).map_err(UsageError)?;
    out["service_role"] = service_role(&out);
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
    println!("\n# Service role for `amictl serve` on EC2 or ECS: attach the platform policy above; trust policy");
    println!("{}", serde_json::to_string_pretty(&out["service_role"]["trust_policy"])?);
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

/// `amictl serve` makes no AWS call `apply` does not (cycles are `apply`; the watch reads
/// Inspector only where `apply` would): its role is the platform identity, assumable by
/// the compute it runs on.
fn service_role(out: &serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "account": out["platform"]["account"],
        "policy": "the platform policy (platform.policy): serve runs `apply` for its cycles",
        "trust_policy": {
            "Version": "2012-10-17",
            "Statement": [{
                "Effect": "Allow",
                "Principal": {"Service": ["ec2.amazonaws.com", "ecs-tasks.amazonaws.com"]},
                "Action": "sts:AssumeRole"
            }]
        }
    })
}
