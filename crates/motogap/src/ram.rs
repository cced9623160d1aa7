//! AWS RAM for SSM parameters, which moto's RAM refuses ("You cannot share the selected
//! resource type") and which moto's SSM cannot read across accounts.
//!
//! Modelled, from the RAM API reference (`CreateResourceShare`, `AssociateResourceShare`,
//! `GetResourceShareAssociations`) and the Systems Manager guide ("Working with shared
//! parameters"):
//! - a share created through motogap is made in moto without its parameter ARNs (moto keeps
//!   the share, its name and principals); motogap keeps the parameters;
//! - `AssociateResourceShare` (moto has none) adds parameters and principals here;
//! - `GetResourceShareAssociations` answers moto's associations plus these, status
//!   `ASSOCIATED`;
//! - `ssm:GetParameter` by the ARN of another account's parameter is answered from the
//!   owner's account when a share holds that parameter and names the caller's account, or
//!   any organisation or OU (membership is not modelled); otherwise `ParameterNotFound`.
//!
//! Not modelled: the advanced-tier requirement, invitations, permissions, and removal.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

/// Shares made or changed through motogap, by ARN.
#[derive(Default)]
pub(crate) struct Shares {
    shares: BTreeMap<String, Share>,
}

struct Share {
    name: String,
    owner: String,
    principals: BTreeSet<String>,
    parameters: BTreeSet<String>,
}

/// The RAM operation a restJson1 path names.
pub(crate) fn operation(path: &str) -> String {
    const OPS: [&str; 6] = [
        "CreateResourceShare",
        "AssociateResourceShare",
        "DisassociateResourceShare",
        "GetResourceShares",
        "GetResourceShareAssociations",
        "DeleteResourceShare",
    ];
    let p = path.trim_start_matches('/');
    OPS.iter().find(|o| o.eq_ignore_ascii_case(p)).map_or(p.to_string(), |o| (*o).to_string())
}

fn is_parameter(arn: &str) -> bool {
    arn.starts_with("arn:aws:ssm:") && arn.contains(":parameter/")
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().into_iter().flatten().filter_map(|s| s.as_str().map(str::to_string)).collect()
}

impl Shares {
    /// The create request as moto will take it (parameters taken out), and the parameters.
    pub(crate) fn split_create(body: &[u8]) -> Option<(Vec<u8>, Vec<String>, Vec<String>)> {
        let mut v: Value = serde_json::from_slice(body).ok()?;
        let all = strings(&v["resourceArns"]);
        let (parameters, others): (Vec<String>, Vec<String>) = all.into_iter().partition(|a| is_parameter(a));
        v["resourceArns"] = json!(others);
        let principals = strings(&v["principals"]);
        Some((serde_json::to_vec(&v).ok()?, parameters, principals))
    }

    /// Records a share moto made.
    pub(crate) fn created(&mut self, owner: &str, answer: &str, parameters: Vec<String>, principals: Vec<String>) {
        let Ok(v) = serde_json::from_str::<Value>(answer) else { return };
        let share = &v["resourceShare"];
        let (Some(arn), Some(name)) = (share["resourceShareArn"].as_str(), share["name"].as_str()) else { return };
        self.shares.insert(
            arn.to_string(),
            Share {
                name: name.to_string(),
                owner: owner.to_string(),
                principals: principals.into_iter().collect(),
                parameters: parameters.into_iter().collect(),
            },
        );
    }

    /// `AssociateResourceShare`: (status, body).
    pub(crate) fn associate(&mut self, owner: &str, body: &[u8]) -> (u16, Value) {
        let Ok(v) = serde_json::from_slice::<Value>(body) else {
            return (400, json!({"__type": "InvalidParameterException", "message": "not JSON"}));
        };
        let arn = v["resourceShareArn"].as_str().unwrap_or_default();
        let Some(share) = self.shares.get_mut(arn).filter(|s| s.owner == owner) else {
            let message = format!("ResourceShare {arn} could not be found.");
            return (400, json!({"__type": "UnknownResourceException", "message": message}));
        };
        let mut made = Vec::new();
        for r in strings(&v["resourceArns"]) {
            if !is_parameter(&r) {
                return (
                    400,
                    json!({"__type": "MalformedArnException", "message": "motogap shares only SSM parameters"}),
                );
            }
            made.push(entry(arn, &share.name, &r, "RESOURCE"));
            share.parameters.insert(r);
        }
        for p in strings(&v["principals"]) {
            made.push(entry(arn, &share.name, &p, "PRINCIPAL"));
            share.principals.insert(p);
        }
        (200, json!({"resourceShareAssociations": made}))
    }

    /// moto's `GetResourceShareAssociations` answer with what motogap holds added.
    pub(crate) fn associations(&self, owner: &str, request: &[u8], answer: String) -> String {
        let (Ok(req), Ok(mut out)) = (serde_json::from_slice::<Value>(request), serde_json::from_str::<Value>(&answer))
        else {
            return answer;
        };
        let kind = req["associationType"].as_str().unwrap_or_default().to_string();
        let wanted = strings(&req["resourceShareArns"]);
        let Some(list) = out["resourceShareAssociations"].as_array_mut() else { return answer };
        let present: BTreeSet<(String, String)> = list
            .iter()
            .map(|a| {
                (
                    a["resourceShareArn"].as_str().unwrap_or_default().into(),
                    a["associatedEntity"].as_str().unwrap_or_default().into(),
                )
            })
            .collect();
        for (arn, share) in
            self.shares.iter().filter(|(a, s)| s.owner == owner && (wanted.is_empty() || wanted.contains(a)))
        {
            let entities = if kind == "RESOURCE" { &share.parameters } else { &share.principals };
            for e in entities {
                if !present.contains(&(arn.clone(), e.clone())) {
                    list.push(entry(arn, &share.name, e, &kind));
                }
            }
        }
        out.to_string()
    }

    /// The account whose parameter `name` (an ARN) the caller may read, when it is shared
    /// with it; `Err` when it is another account's and not shared with the caller.
    pub(crate) fn reader(&self, caller: &str, name: &str) -> Result<Option<String>, ()> {
        let Some(rest) = name.strip_prefix("arn:aws:ssm:") else { return Ok(None) };
        let owner_id = rest.split(':').nth(1).unwrap_or_default();
        if owner_id == caller {
            return Ok(None);
        }
        // `…:parameter/name:3` reads version 3 of `…:parameter/name`.
        let bare = match name.rsplit_once(':') {
            Some((head, tail)) if head.contains(":parameter/") && !tail.contains('/') => head,
            _ => name,
        };
        let shared = self.shares.values().any(|s| {
            s.owner == owner_id
                && s.parameters.contains(bare)
                && s.principals.iter().any(|p| p == caller || p.starts_with("arn:aws:organizations::"))
        });
        if shared { Ok(Some(owner_id.to_string())) } else { Err(()) }
    }
}

fn entry(arn: &str, name: &str, entity: &str, kind: &str) -> Value {
    json!({
        "resourceShareArn": arn,
        "resourceShareName": name,
        "associatedEntity": entity,
        "associationType": kind,
        "status": "ASSOCIATED",
        "external": false,
    })
}
