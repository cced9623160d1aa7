//! Rollouts the way the organisation's consumers really run (examples/reference-org):
//! Terraform-owned launch templates whose image is `resolve:ssm:<parameter>`, ECS
//! capacity-provider groups whose hosts are scale-in protected and run tasks, and
//! templates someone puts back after amictl wrote them. The real binary against moto (ECS,
//! ASG, EC2, SSM) behind motogap, which resolves `resolve:ssm:` at launch as EC2 does.

mod cloud;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cloud::*;
use serde_json::Value;

/// A parameter the team's own pipeline moves (amictl reads it, never writes it).
const PARAMETER: &str = "/archivematica/base-ami/latest";
/// The pointer amictl moves in each consumer account.
const POINTER: &str = "/platform/base-ami/weco-amzn2-ecs-optimised-hvm-x86_64/latest";
const GROUP: &str = "archivematica-container-hosts";

/// The pipelines as Terraform made them, and two executions of the ECS line's before
/// amictl: the AMIs (account, region, id) of each.
async fn two_ecs_versions(aws: &aws::Aws) -> (Vec<(String, String, String)>, Vec<(String, String, String)>) {
    let pipelines = seed_pipelines(aws).await;
    let (_, old) = execution(aws, &pipelines[ECS], "ecs-1").await;
    let (_, new) = execution(aws, &pipelines[ECS], "ecs-2").await;
    (old, new)
}

/// The group's instances and the AMI each runs (as DescribeInstances reports it).
async fn group_amis(aws: &aws::Aws, account: &str, group: &str) -> BTreeMap<String, String> {
    let asc = aws_sdk_autoscaling::Client::new(&aws.config(account, "eu-west-1").await.unwrap());
    let g = asc.describe_auto_scaling_groups().auto_scaling_group_names(group).send().await.unwrap();
    let ids: Vec<String> =
        g.auto_scaling_groups()[0].instances().iter().filter_map(|i| i.instance_id()).map(str::to_string).collect();
    let ec2 = aws.ec2(account, "eu-west-1").await.unwrap();
    let out = ec2.describe_instances().set_instance_ids(Some(ids)).send().await.unwrap();
    out.reservations()
        .iter()
        .flat_map(|r| r.instances())
        .map(|i| (i.instance_id().unwrap().to_string(), i.image_id().unwrap_or_default().to_string()))
        .collect()
}

/// An ECS capacity-provider group as the consumer's Terraform makes it: the template's
/// image resolves the platform's parameter, new instances are protected from scale-in, and
/// every host is a container instance of `cluster` running one task.
async fn seed_ecs_group(aws: &aws::Aws, account: &str, cluster: &str) {
    seed_group_with(aws, account, GROUP, &format!("resolve:ssm:{PARAMETER}"), 2, true).await;
    let conf = aws.config(account, "eu-west-1").await.unwrap();
    let ecs = aws_sdk_ecs::Client::new(&conf);
    ecs.create_cluster().cluster_name(cluster).send().await.unwrap();
    ecs.register_task_definition()
        .family("archivematica-mcp")
        .container_definitions(
            aws_sdk_ecs::types::ContainerDefinition::builder()
                .name("mcp")
                .image("archivematica/mcp")
                .memory(256)
                .build(),
        )
        .send()
        .await
        .unwrap();
    register_hosts(aws, account, cluster).await;
}

/// Registers the group's instances that are not yet container instances, each with a task.
async fn register_hosts(aws: &aws::Aws, account: &str, cluster: &str) {
    let ecs = aws_sdk_ecs::Client::new(&aws.config(account, "eu-west-1").await.unwrap());
    let known = container_instances(&ecs, cluster).await;
    for instance in group_amis(aws, account, GROUP).await.into_keys() {
        if known.iter().any(|(i, _, _)| *i == instance) {
            continue;
        }
        let doc = serde_json::json!({ "instanceId": instance, "region": "eu-west-1" }).to_string();
        let ci =
            ecs.register_container_instance().cluster(cluster).instance_identity_document(doc).send().await.unwrap();
        let arn = ci.container_instance().unwrap().container_instance_arn().unwrap().to_string();
        ecs.start_task()
            .cluster(cluster)
            .task_definition("archivematica-mcp")
            .container_instances(arn)
            .send()
            .await
            .unwrap();
    }
}

/// (EC2 instance, status, running tasks) of every container instance in `cluster`.
async fn container_instances(ecs: &aws_sdk_ecs::Client, cluster: &str) -> Vec<(String, String, i32)> {
    let arns = ecs.list_container_instances().cluster(cluster).send().await.unwrap().container_instance_arns().to_vec();
    if arns.is_empty() {
        return Vec::new();
    }
    let out =
        ecs.describe_container_instances().cluster(cluster).set_container_instances(Some(arns)).send().await.unwrap();
    out.container_instances()
        .iter()
        .map(|c| {
            (
                c.ec2_instance_id().unwrap_or_default().to_string(),
                c.status().unwrap_or_default().to_string(),
                c.running_tasks_count(),
            )
        })
        .collect()
}

/// Plays ECS's part while a rollout runs: a DRAINING host's tasks stop a little later (the
/// service scheduler moving them), and new hosts register. Records every moment a host
/// with running tasks was already terminating: the rollout must never cause one.
struct EcsScheduler {
    stop: Arc<AtomicBool>,
    drained: Arc<Mutex<Vec<String>>>,
    killed_with_tasks: Arc<Mutex<Vec<String>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl EcsScheduler {
    fn start(org: &Org, account: &'static str, cluster: &'static str) -> EcsScheduler {
        let stop = Arc::new(AtomicBool::new(false));
        let drained = Arc::new(Mutex::new(Vec::new()));
        let killed = Arc::new(Mutex::new(Vec::new()));
        let (s, d, k) = (stop.clone(), drained.clone(), killed.clone());
        let url = org.gap.url();
        let thread = std::thread::spawn(move || {
            let rt = runtime();
            let aws = rt.block_on(aws_at(&url));
            let conf = rt.block_on(aws.config(account, "eu-west-1")).unwrap();
            let ecs = aws_sdk_ecs::Client::new(&conf);
            let ec2 = rt.block_on(aws.ec2(account, "eu-west-1")).unwrap();
            while !s.load(Ordering::SeqCst) {
                rt.block_on(register_hosts(&aws, account, cluster));
                let arns = rt
                    .block_on(ecs.list_container_instances().cluster(cluster).send())
                    .unwrap()
                    .container_instance_arns()
                    .to_vec();
                let out = rt
                    .block_on(
                        ecs.describe_container_instances().cluster(cluster).set_container_instances(Some(arns)).send(),
                    )
                    .unwrap();
                for ci in out.container_instances() {
                    let instance = ci.ec2_instance_id().unwrap_or_default().to_string();
                    let state = rt
                        .block_on(ec2.describe_instances().instance_ids(&instance).send())
                        .ok()
                        .and_then(|o| {
                            o.reservations()
                                .iter()
                                .flat_map(|r| r.instances())
                                .next()
                                .and_then(|i| i.state().and_then(|s| s.name()).map(|n| n.as_str().to_string()))
                        })
                        .unwrap_or_default();
                    if ci.running_tasks_count() > 0 && ["shutting-down", "terminated"].contains(&state.as_str()) {
                        k.lock().unwrap().push(instance.clone());
                    }
                    if ci.status() == Some("DRAINING") && ci.running_tasks_count() > 0 {
                        std::thread::sleep(Duration::from_millis(300));
                        let tasks = rt
                            .block_on(
                                ecs.list_tasks()
                                    .cluster(cluster)
                                    .container_instance(ci.container_instance_arn().unwrap())
                                    .send(),
                            )
                            .unwrap();
                        for task in tasks.task_arns() {
                            rt.block_on(
                                ecs.stop_task().cluster(cluster).task(task).reason("moved by the service").send(),
                            )
                            .unwrap();
                        }
                        d.lock().unwrap().push(instance);
                    }
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        EcsScheduler { stop, drained, killed_with_tasks: killed, thread: Some(thread) }
    }

    fn finish(mut self) -> (Vec<String>, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        (self.drained.lock().unwrap().clone(), self.killed_with_tasks.lock().unwrap().clone())
    }
}

fn rollout_of<'a>(out: &'a Value, consumer: &str) -> &'a Value {
    out["actions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["action"] == "rollout" && a["subject"] == format!("consumer:{consumer}"))
        .unwrap_or_else(|| panic!("no rollout of {consumer}: {out:#}"))
}

#[test]
fn a_resolve_ssm_ecs_group_keeps_its_template_and_its_hosts_are_drained_before_they_go() {
    let org = Org::image_builder_unvalidated();
    let rt = runtime();
    let aws = rt.block_on(org.aws());
    let (old, new) = rt.block_on(two_ecs_versions(&aws));
    let workflow = CONSUMERS[0].1;
    let (old_ami, new_ami) = (ami_in(&old, workflow), ami_in(&new, workflow));
    // The platform's parameter named the old image when the hosts launched.
    let ssm = rt.block_on(aws.ssm("workflow", "eu-west-1")).unwrap();
    rt.block_on(
        ssm.put_parameter().name(PARAMETER).value(&old_ami).r#type(aws_sdk_ssm::types::ParameterType::String).send(),
    )
    .unwrap();
    rt.block_on(seed_ecs_group(&aws, "workflow", "archivematica"));
    let before = rt.block_on(group_amis(&aws, "workflow", GROUP));
    assert_eq!(before.values().collect::<Vec<_>>(), [&old_ami, &old_ami], "launched from the parameter: {before:?}");
    org.edit(
        "select = { asgs = [\"archivematica-container-hosts\"] }\nrollout = { kind = \"instance-refresh\", min_healthy_percent = 90, scale_in_protected = \"refresh\", checkpoints = [50, 100], checkpoint_delay = \"10m\" }",
        "select = { asgs = [\"archivematica-container-hosts\"] }\nrollout = { kind = \"rolling-replace\", batch = 1 }",
    );
    org.edit("rebuild_on_parent_update = true", "rebuild_on_parent_update = false");
    let (code, _, stderr) = org.run(&["import", "--image", ECS]);
    assert_eq!(code, 0, "{stderr}");

    // The parameter still names the old image: replacing hosts would relaunch it.
    let (code, out, _) = org.run(&["--json", "apply", "--now", "+15d"]);
    assert_eq!(code, 1, "{out:#}");
    let error = rollout_of(&out, "archivematica")["error"].as_str().unwrap();
    assert!(error.contains(&format!("which names {old_ami}, not {new_ami}")), "{error}");
    assert_eq!(rt.block_on(group_amis(&aws, "workflow", GROUP)), before, "nothing replaced");
    // The pipeline's distribution moves it (Image Builder's ssmParameterConfigurations).
    rt.block_on(
        ssm.put_parameter()
            .name(PARAMETER)
            .value(&new_ami)
            .r#type(aws_sdk_ssm::types::ParameterType::String)
            .overwrite(true)
            .send(),
    )
    .unwrap();

    // Scale-in protected hosts are left alone by default: nothing is drained or replaced.
    let (code, out, stderr) = org.run(&["--json", "apply", "--now", "+15d"]);
    assert_eq!(code, 0, "{stderr}\n{out:#}");
    let result = &rollout_of(&out, "archivematica")["result"]["result"][0];
    assert_eq!(result["replacement"]["skipped"].as_array().map(Vec::len), Some(2), "{result:#}");
    assert_eq!(rt.block_on(group_amis(&aws, "workflow", GROUP)), before, "protected hosts stay");

    // Told to replace them: each host is drained, its tasks gone, then replaced.
    org.edit(
        "rollout = { kind = \"rolling-replace\", batch = 1 }",
        "rollout = { kind = \"rolling-replace\", batch = 1, protected = \"replace\", drain_timeout = \"30s\" }",
    );
    org.gap.reset_calls();
    let ecs_play = EcsScheduler::start(&org, "workflow", "archivematica");
    let (code, out, stderr) = org.run(&["--json", "apply", "--now", "+15d"]);
    let (drained, killed) = ecs_play.finish();
    assert_eq!(code, 0, "{stderr}\n{out:#}");
    assert!(killed.is_empty(), "hosts terminated with tasks running: {killed:?}");
    let mut old_hosts: Vec<&String> = before.keys().collect();
    old_hosts.sort();
    let mut drained_sorted = drained.clone();
    drained_sorted.sort();
    drained_sorted.dedup();
    assert_eq!(drained_sorted.iter().collect::<Vec<_>>(), old_hosts, "ECS saw both old hosts drain");
    let result = &rollout_of(&out, "archivematica")["result"]["result"][0];
    assert_eq!(result["template"]["resolves"], PARAMETER, "{result:#}");
    assert_eq!(result["template"]["changed"], false);
    assert_eq!(result["replacement"]["drained"].as_array().map(Vec::len), Some(2), "{result:#}");
    let after = rt.block_on(group_amis(&aws, "workflow", GROUP));
    assert_eq!(after.len(), 2);
    assert!(after.values().all(|a| *a == new_ami), "every host launched the parameter's new AMI: {after:?}");
    assert!(after.keys().all(|i| !before.contains_key(i)), "{after:?}");
    // The template was never rewritten: no new version, its default still resolves.
    let calls = org.gap.calls();
    for op in ["ec2:CreateLaunchTemplateVersion", "ec2:ModifyLaunchTemplate", "autoscaling:UpdateAutoScalingGroup"] {
        assert_eq!(calls.get(op), None, "{op}: {calls:#?}");
    }
    assert!(calls.get("ecs:UpdateContainerInstancesState").copied().unwrap_or(0) >= 2, "{calls:#?}");
    assert_eq!(calls.get("autoscaling:SetInstanceProtection").copied(), Some(2), "{calls:#?}");
    let ec2 = rt.block_on(aws.ec2("workflow", "eu-west-1")).unwrap();
    let versions = rt.block_on(ec2.describe_launch_template_versions().launch_template_name(GROUP).send()).unwrap();
    let images: Vec<&str> = versions
        .launch_template_versions()
        .iter()
        .filter_map(|v| v.launch_template_data().and_then(|d| d.image_id()))
        .collect();
    assert_eq!(images, [format!("resolve:ssm:{PARAMETER}").as_str()]);
    let (code, fleet, _) = org.run(&["--json", "fleet", "--now", "+15d"]);
    assert_eq!(consumer(&fleet, "archivematica")["summary"]["current"], 2, "{code} {fleet:#}");
    let (code, _, stderr) = org.run(&["audit", "verify"]);
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn a_template_put_back_after_amictl_wrote_it_is_reported_as_drift() {
    let org = Org::image_builder_unvalidated();
    let rt = runtime();
    let aws = rt.block_on(org.aws());
    let (first, _) = rt.block_on(two_ecs_versions(&aws));
    let workflow = CONSUMERS[0].1;
    rt.block_on(seed_group(&aws, "workflow", "goobi-container-hosts", &ami_in(&first, workflow), 1));
    org.edit(
        "select = { asgs = [\"goobi-container-hosts\"] }\nrollout = { kind = \"pinned\", sns_topic = \"arn:aws:sns:eu-west-1:111111111111:amictl-rollouts\" }",
        "select = { asgs = [\"goobi-container-hosts\"] }\nrollout = { kind = \"launch-template\" }",
    );
    org.edit("rebuild_on_parent_update = true", "rebuild_on_parent_update = false");
    let (code, _, stderr) = org.run(&["import", "--image", ECS]);
    assert_eq!(code, 0, "{stderr}");
    let (code, out, stderr) = org.run(&["--json", "apply", "--now", "+15d"]);
    assert_eq!(code, 0, "{stderr}\n{out:#}");
    let goobi = rollout_of(&out, "goobi");
    let written =
        goobi["result"]["result"][0]["template"]["to_version"].as_i64().unwrap_or_else(|| panic!("{goobi:#}"));
    assert_eq!(written, 2, "{out:#}");

    // The consumer's Terraform applies: a new version with the AMI it pins, made default.
    let ec2 = rt.block_on(aws.ec2("workflow", "eu-west-1")).unwrap();
    let data = aws_sdk_ec2::types::RequestLaunchTemplateData::builder()
        .image_id(ami_in(&first, workflow))
        .instance_type(aws_sdk_ec2::types::InstanceType::T3Medium)
        .build();
    let v = rt
        .block_on(
            ec2.create_launch_template_version()
                .launch_template_name("goobi-container-hosts")
                .launch_template_data(data)
                .send(),
        )
        .unwrap();
    let terraform = v.launch_template_version().unwrap().version_number().unwrap();
    rt.block_on(
        ec2.modify_launch_template()
            .launch_template_name("goobi-container-hosts")
            .default_version(terraform.to_string())
            .send(),
    )
    .unwrap();

    let (code, out, stderr) = org.run(&["--json", "apply", "--now", "+16d"]);
    assert_eq!(code, 0, "{stderr}\n{out:#}");
    assert!(rollout_of(&out, "goobi")["ok"] == true, "amictl writes again, and says why it will be undone");
    let drift = &rollout_of(&out, "goobi")["result"]["result"][0]["drift"];
    assert_eq!(drift["written_version"], written, "{out:#}");
    assert_eq!(drift["found_version"], terraform, "{drift:#}");
    assert!(drift["reason"].as_str().unwrap().contains("resolve:ssm:"), "{drift:#}");
    let events = org.catalog().events(Some("consumer:goobi")).unwrap();
    let recorded = events.iter().find(|e| e.kind == "rollout.drift").unwrap_or_else(|| panic!("{events:#?}"));
    assert_eq!(recorded.data["drift"]["found_version"], terraform);
}

/// The AMIs of `amis` that EC2 still lists, and the snapshots of those it lists.
async fn registered(aws: &aws::Aws, amis: &[(String, String, String)]) -> (Vec<String>, Vec<String>) {
    let name = |id: &str| CONSUMERS.iter().find(|(_, i)| *i == id).map_or("platform", |(n, _)| *n).to_string();
    let (mut images, mut snapshots) = (Vec::new(), Vec::new());
    for (account, region, ami) in amis {
        let ec2 = aws.ec2(&name(account), region).await.unwrap();
        let out = ec2.describe_images().owners("self").include_disabled(true).send().await.unwrap();
        for i in out.images().iter().filter(|i| i.image_id() == Some(ami)) {
            images.push(ami.clone());
            snapshots.extend(
                i.block_device_mappings()
                    .iter()
                    .filter_map(|b| b.ebs().and_then(|e| e.snapshot_id()))
                    .map(str::to_string),
            );
        }
    }
    (images, snapshots)
}

#[test]
fn an_old_version_is_kept_while_a_consumer_template_names_it_and_removed_everywhere_after() {
    let org = Org::image_builder();
    let rt = runtime();
    let aws = rt.block_on(org.aws());
    let (first, _) = rt.block_on(two_ecs_versions(&aws));
    org.edit("rebuild_on_parent_update = true", "rebuild_on_parent_update = false");
    org.edit("keep_versions = 3", "keep_versions = 1");
    let (code, _, stderr) = org.run(&["import", "--image", ECS]);
    assert_eq!(code, 0, "{stderr}");
    let versions = org.catalog().versions(Some(ECS)).unwrap();
    let old = format!("{ECS}@{}", versions[0].version);
    let (amis, snapshots) = rt.block_on(registered(&aws, &first));
    assert_eq!(amis.len(), first.len(), "every copy of the first version exists: {first:?}");
    assert!(!snapshots.is_empty());

    // A consumer's Terraform keeps a launch template on the old copy, with no instance.
    let workflow = CONSUMERS[0].1;
    let ec2 = rt.block_on(aws.ec2("workflow", "eu-west-1")).unwrap();
    let data = |ami: String| {
        aws_sdk_ec2::types::RequestLaunchTemplateData::builder()
            .image_id(ami)
            .instance_type(aws_sdk_ec2::types::InstanceType::T3Medium)
            .build()
    };
    rt.block_on(
        ec2.create_launch_template()
            .launch_template_name("goobi-bastion")
            .launch_template_data(data(ami_in(&first, workflow)))
            .send(),
    )
    .unwrap();

    // And someone runs a stopped instance of it in another account that no consumer selects.
    let digirati = rt.block_on(aws.ec2("digirati", "eu-west-2")).unwrap();
    let copy = first.iter().find(|(a, r, _)| a == CONSUMERS[1].1 && r == "eu-west-2").unwrap().2.clone();
    let run = rt
        .block_on(
            digirati
                .run_instances()
                .image_id(&copy)
                .instance_type(aws_sdk_ec2::types::InstanceType::T3Micro)
                .min_count(1)
                .max_count(1)
                .send(),
        )
        .unwrap();
    let stray = run.instances()[0].instance_id().unwrap().to_string();
    rt.block_on(digirati.stop_instances().instance_ids(&stray).send()).unwrap();

    let (_, plan, _) = org.run(&["--json", "plan"]);
    assert!(actions(&plan).contains(&("retire".into(), ECS.into())), "{plan:#}");
    let (code, out, stderr) = org.run(&["--json", "apply"]);
    assert_eq!(code, 0, "a kept version is not a failure: {stderr}\n{out:#}");
    let retire = out["actions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["action"] == "retire")
        .unwrap_or_else(|| panic!("{out:#}"));
    assert_eq!(retire["result"]["refused"], true, "{retire:#}");
    let checked = retire["result"]["checked"].as_array().unwrap();
    assert_eq!(checked.len(), first.len(), "every place a copy lives is checked: {checked:#?}");
    let found: Vec<&Value> = checked.iter().flat_map(|c| c["references"].as_array().unwrap()).collect();
    assert_eq!(found.len(), 2, "{found:#?}");
    assert_eq!((found[0]["kind"].as_str(), found[0]["id"].as_str()), (Some("instance"), Some(stray.as_str())));
    assert_eq!(found[0]["place"], "digirati/eu-west-2", "{found:#?}");
    assert_eq!((found[1]["kind"].as_str(), found[1]["id"].as_str()), (Some("launch-template"), Some("goobi-bastion")));
    assert!(found[1]["how"].as_str().unwrap().contains("$Default"), "{found:#?}");
    assert_eq!(rt.block_on(registered(&aws, &first)).0.len(), first.len(), "nothing is removed anywhere");
    let events = org.catalog().events(Some(&old)).unwrap();
    let outcome = events.iter().rev().find(|e| e.kind == "retire.outcome").unwrap_or_else(|| panic!("{events:#?}"));
    assert_eq!(outcome.data["refused"], true, "the references are in the audit event: {outcome:#?}");
    let text = String::from_utf8(org.command(&["images", ECS]).output().unwrap().stdout).unwrap();
    assert!(text.contains(&format!("cannot be retired yet: 2 still use it: instance {stray}")), "{text}");
    assert!(text.contains("launch-template goobi-bastion (version 1 ($Default)"), "{text}");
    let plan = String::from_utf8(org.command(&["plan"]).output().unwrap().stdout).unwrap();
    assert!(plan.contains("the last retirement was refused: 2 still use it"), "{plan}");
    rt.block_on(digirati.terminate_instances().instance_ids(&stray).send()).unwrap();

    // Terraform moves the template to the new version: both $Default and $Latest.
    let second = org.catalog().distributions(&versions[1].build_id).unwrap();
    let new = second
        .iter()
        .find(|p| p.distribution.target.account == "workflow" && p.distribution.target.region == "eu-west-1")
        .unwrap();
    let v = rt
        .block_on(
            ec2.create_launch_template_version()
                .launch_template_name("goobi-bastion")
                .launch_template_data(data(new.distribution.image_id.clone()))
                .send(),
        )
        .unwrap();
    let n = v.launch_template_version().unwrap().version_number().unwrap();
    rt.block_on(
        ec2.modify_launch_template().launch_template_name("goobi-bastion").default_version(n.to_string()).send(),
    )
    .unwrap();

    let (code, out, stderr) = org.run(&["--json", "apply"]);
    assert_eq!(code, 0, "{stderr}\n{out:#}");
    let retire = out["actions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["action"] == "retire")
        .unwrap_or_else(|| panic!("{out:#}"));
    assert_eq!(retire["result"]["refused"], false, "{retire:#}");
    let checked = retire["result"]["checked"].as_array().unwrap();
    assert!(checked.iter().all(|c| c["references"].as_array().unwrap().is_empty()), "{checked:#?}");
    assert_eq!(
        rt.block_on(registered(&aws, &first)),
        (Vec::new(), Vec::new()),
        "deregistered in every account and region"
    );
    let ec2p = rt.block_on(aws.ec2("platform", "eu-west-1")).unwrap();
    let snaps = rt.block_on(ec2p.describe_snapshots().set_snapshot_ids(Some(snapshots.clone())).send());
    assert!(snaps.map(|s| s.snapshots().is_empty()).unwrap_or(true), "snapshots deleted: {snapshots:?}");
    assert_eq!(org.catalog().versions(Some(ECS)).unwrap()[0].state, catalog::BuildState::Retired);
    let (_, images, _) = org.run(&["--json", "images", ECS]);
    assert!(images[0]["cleanup"].is_null(), "{images:#}");
}

#[test]
fn archivematicas_protected_resolve_ssm_group_is_moved_by_an_instance_refresh_in_two_stages() {
    let org = Org::image_builder_unvalidated();
    let rt = runtime();
    let aws = rt.block_on(org.aws());
    let (old, new) = rt.block_on(two_ecs_versions(&aws));
    let workflow = CONSUMERS[0].1;
    let (old_ami, new_ami) = (ami_in(&old, workflow), ami_in(&new, workflow));
    let ssm = rt.block_on(aws.ssm("workflow", "eu-west-1")).unwrap();
    let put = |ami: &str| {
        rt.block_on(
            ssm.put_parameter()
                .name(POINTER)
                .value(ami)
                .r#type(aws_sdk_ssm::types::ParameterType::String)
                .overwrite(true)
                .send(),
        )
        .unwrap();
    };
    put(&old_ami);
    rt.block_on(seed_group_with(&aws, "workflow", GROUP, &format!("resolve:ssm:{POINTER}"), 2, true));
    let before = rt.block_on(group_amis(&aws, "workflow", GROUP));
    org.edit("rebuild_on_parent_update = true", "rebuild_on_parent_update = false");
    let (code, _, stderr) = org.run(&["import", "--image", ECS]);
    assert_eq!(code, 0, "{stderr}");

    // The reference config as it is: refresh, protected hosts included, half then all.
    org.gap.reset_calls();
    let (code, out, stderr) = org.run(&["--json", "apply", "--now", "+15d"]);
    assert_eq!(code, 0, "{stderr}\n{out:#}");
    // The imported version's pointers are written first (then the refresh launches it).
    let read = rt.block_on(ssm.get_parameter().name(POINTER).send()).unwrap();
    assert_eq!(read.parameter().unwrap().value(), Some(new_ami.as_str()), "{out:#}");
    let result = &rollout_of(&out, "archivematica")["result"]["result"][0];
    assert_eq!(result["template"]["resolves"], POINTER, "{result:#}");
    let after = rt.block_on(group_amis(&aws, "workflow", GROUP));
    assert_eq!(after.len(), 2);
    assert!(after.values().all(|a| *a == new_ami), "{after:?}");
    assert!(after.keys().all(|i| !before.contains_key(i)), "protected hosts were refreshed too: {after:?}");
    let calls = org.gap.calls();
    assert_eq!(calls.get("autoscaling:StartInstanceRefresh"), Some(&1), "{calls:#?}");
    // Pending, a step, the 50% checkpoint, a step, done: at least five looks.
    assert!(calls.get("autoscaling:DescribeInstanceRefreshes").copied().unwrap_or(0) >= 5, "{calls:#?}");
    for op in [
        "ec2:CreateLaunchTemplateVersion",
        "ec2:ModifyLaunchTemplate",
        "autoscaling:TerminateInstanceInAutoScalingGroup",
    ] {
        assert_eq!(calls.get(op), None, "amictl itself never {op}: {calls:#?}");
    }
    let (_, fleet, _) = org.run(&["--json", "fleet", "--now", "+15d"]);
    assert_eq!(consumer(&fleet, "archivematica")["summary"]["current"], 2, "{fleet:#}");
}
