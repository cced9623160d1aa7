//! The fleet scan's client side on a large fleet: `accounts` × 2 regions × `per` instances
//! (default 5 × 2 × 5,000 = 50,000), served on loopback by a child process from recorded
//! response shapes (EC2 DescribeInstances XML in pages of the size the client asks for,
//! SSM DescribeInstanceInformation JSON, STS AssumeRole XML). Reports instances/s, the client's peak memory (VmHWM), which
//! the server does not share, and its live heap (what the scan holds, without the
//! allocator's own overhead). Run with `scripts/bench-scan`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Instant;

/// Counts live heap bytes, so the report can tell what the scan holds from what the
/// allocator keeps (RSS).
struct Counting;
static LIVE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
static PEAK: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

unsafe impl std::alloc::GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        use std::sync::atomic::Ordering::Relaxed;
        let now = LIVE.fetch_add(layout.size(), Relaxed) + layout.size();
        PEAK.fetch_max(now, Relaxed);
        unsafe { std::alloc::System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        LIVE.fetch_sub(layout.size(), std::sync::atomic::Ordering::Relaxed);
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;
const REGIONS: [&str; 2] = ["eu-west-1", "eu-west-2"];

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--serve") {
        serve(args[2].parse().unwrap());
        return;
    }
    let arg = |flag: &str, default: usize| -> usize {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let accounts = arg("--accounts", 5);
    let per = arg("--per", 5000);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let mut server = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--serve", &per.to_string()])
        .env("BENCH_PORT", port.to_string())
        .spawn()
        .unwrap();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let result = rt.block_on(scan_all(port, accounts));
    let _ = server.kill();
    let _ = server.wait();
    let (hosts, seconds) = result;
    let expected = accounts * REGIONS.len() * per;
    assert_eq!(hosts, expected, "every instance is found exactly once");
    println!(
        "scan: {hosts} instances in {seconds:.2}s = {:.0} instances/s; client peak memory (VmHWM) {} MiB",
        hosts as f64 / seconds,
        peak_kib() / 1024
    );
}

async fn scan_all(port: u16, accounts: usize) -> (usize, f64) {
    let base = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("eu-west-1"))
        .endpoint_url(format!("http://127.0.0.1:{port}"))
        .credentials_provider(aws_credential_types::Credentials::new("AKIDPLATFORM", "x", None, None, "bench"))
        .load()
        .await;
    let ids: Vec<String> = (0..accounts).map(|i| format!("{:012}", 222_222_222_222u64 + i as u64)).collect();
    let access: Vec<aws::AccountAccess> = ids
        .iter()
        .map(|id| aws::AccountAccess {
            name: id.clone(),
            id: id.clone(),
            role: Some(format!("arn:aws:iam::{id}:role/amictl-consumer")),
            external_id: None,
        })
        .collect();
    let aws = aws::Aws::with_config(base, access);
    let before = LIVE.load(std::sync::atomic::Ordering::Relaxed);
    let start = Instant::now();
    let scans = ids.iter().flat_map(|id| {
        REGIONS.iter().map(|r| aws::fleet::Selector {
            consumer: "bench".into(),
            account: id.clone(),
            region: r.to_string(),
            selection: provider::Selection { asgs: vec!["hosts".into()], ..provider::Selection::default() },
        })
    });
    let aws = &aws;
    let results = futures::future::join_all(scans.map(|sel| async move { aws::fleet::scan(aws, &sel).await })).await;
    let held = LIVE.load(std::sync::atomic::Ordering::Relaxed);
    eprintln!(
        "heap: {} MiB before the scan, {} MiB holding the hosts, {} MiB at most",
        before >> 20,
        held >> 20,
        PEAK.load(std::sync::atomic::Ordering::Relaxed) >> 20
    );
    let mut hosts = 0;
    for r in results {
        let found = r.unwrap();
        assert!(found.iter().all(|h| h.agent.as_ref().is_some_and(|a| a.ping == "Online")));
        hosts += found.len();
    }
    (hosts, start.elapsed().as_secs_f64())
}

fn peak_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

// ---------------------------------------------------------------- the recorded server

fn serve(per: usize) {
    let port: u16 = std::env::var("BENCH_PORT").unwrap().parse().unwrap();
    let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
    for conn in listener.incoming().flatten() {
        std::thread::spawn(move || connection(conn, per));
    }
}

fn connection(conn: TcpStream, per: usize) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut out = conn;
    loop {
        let mut head = Vec::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end().to_string();
            if line.is_empty() {
                break;
            }
            head.push(line);
        }
        let header = |name: &str| {
            head.iter().find_map(|l| {
                l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.trim().to_string())
            })
        };
        let len: usize = header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
        let mut body = vec![0; len];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let body = String::from_utf8_lossy(&body).to_string();
        let auth = header("authorization").unwrap_or_default();
        let cred = auth.split("Credential=").nth(1).unwrap_or_default();
        let mut scope = cred.split('/');
        let key = scope.next().unwrap_or_default().to_string();
        let region = scope.nth(1).unwrap_or("eu-west-1").to_string();
        let (ctype, payload) = if let Some(target) = header("x-amz-target") {
            assert!(target.ends_with("DescribeInstanceInformation"), "{target}");
            ("application/x-amz-json-1.1", instance_information(&body))
        } else if body.contains("Action=AssumeRole") {
            ("text/xml", assume_role(&body))
        } else {
            assert!(body.contains("Action=DescribeInstances"), "{body}");
            ("text/xml", describe_instances(&key, &region, &body, per))
        };
        let response = format!("HTTP/1.1 200 OK\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n\r\n", payload.len());
        if out.write_all(response.as_bytes()).and_then(|_| out.write_all(payload.as_bytes())).is_err() {
            return;
        }
    }
}

fn form(body: &str, key: &str) -> Option<String> {
    body.split('&')
        .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
        .map(|v| v.replace("%3A", ":").replace("%2F", "/"))
}

fn assume_role(body: &str) -> String {
    let arn = form(body, "RoleArn").unwrap_or_default();
    let account = arn.split(':').nth(4).unwrap_or("000000000000");
    format!(
        "<AssumeRoleResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><AssumeRoleResult><Credentials><AccessKeyId>ASIA{account}</AccessKeyId><SecretAccessKey>secret</SecretAccessKey><SessionToken>token</SessionToken><Expiration>2099-01-01T00:00:00Z</Expiration></Credentials><AssumedRoleUser><AssumedRoleId>AROAEXAMPLE:amictl</AssumedRoleId><Arn>arn:aws:sts::{account}:assumed-role/amictl-consumer/amictl</Arn></AssumedRoleUser></AssumeRoleResult><ResponseMetadata><RequestId>bench</RequestId></ResponseMetadata></AssumeRoleResponse>"
    )
}

fn instance_id(account: &str, region: &str, n: usize) -> String {
    let r = if region.ends_with('1') { 1 } else { 2 };
    format!("i-{}{r}{n:08x}", &account[8..])
}

/// One page as EC2 returns it: reservations of 100 instances, each item the shape and
/// size (~2.5 KB) of a real `DescribeInstances` item for an ASG container host.
fn describe_instances(key: &str, region: &str, body: &str, per: usize) -> String {
    let account = key.trim_start_matches("ASIA");
    let page: usize = form(body, "NextToken").and_then(|t| t.parse().ok()).unwrap_or(0);
    // As EC2 pages: MaxResults a page (5–1000), the token the next page's start.
    let size: usize = form(body, "MaxResults").and_then(|m| m.parse().ok()).unwrap_or(1000).clamp(5, 1000);
    let first = page;
    let last = (first + size).min(per);
    let mut s = String::with_capacity((last - first) * 2800 + 1024);
    s.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?><DescribeInstancesResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"><requestId>bench</requestId><reservationSet>");
    for (k, n) in (first..last).enumerate() {
        if k % 100 == 0 {
            if k > 0 {
                s.push_str("</instancesSet></item>");
            }
            s.push_str(&format!("<item><reservationId>r-{n:017x}</reservationId><ownerId>{account}</ownerId><requesterId>940372691376</requesterId><groupSet/><instancesSet>"));
        }
        let id = instance_id(account, region, n);
        let ami = if n % 10 == 0 { "ami-0aaaaaaaaaaaaaaa1" } else { "ami-0bbbbbbbbbbbbbbb2" };
        s.push_str(&format!(
            "<item><instanceId>{id}</instanceId><imageId>{ami}</imageId><instanceState><code>16</code><name>running</name></instanceState><privateDnsName>ip-10-0-{a}-{b}.{region}.compute.internal</privateDnsName><dnsName/><reason/><amiLaunchIndex>0</amiLaunchIndex><productCodes/><instanceType>m5.large</instanceType><launchTime>2026-11-01T10:00:00.000Z</launchTime><placement><availabilityZone>{region}a</availabilityZone><groupName/><tenancy>default</tenancy></placement><kernelId/><monitoring><state>disabled</state></monitoring><subnetId>subnet-0a1b2c3d4e5f67890</subnetId><vpcId>vpc-0a1b2c3d4e5f67890</vpcId><privateIpAddress>10.0.{a}.{b}</privateIpAddress><sourceDestCheck>true</sourceDestCheck><groupSet><item><groupId>sg-0a1b2c3d4e5f67890</groupId><groupName>container-hosts</groupName></item></groupSet><architecture>x86_64</architecture><rootDeviceType>ebs</rootDeviceType><rootDeviceName>/dev/xvda</rootDeviceName><blockDeviceMapping><item><deviceName>/dev/xvda</deviceName><ebs><volumeId>vol-{n:017x}</volumeId><status>attached</status><attachTime>2026-11-01T10:00:01.000Z</attachTime><deleteOnTermination>true</deleteOnTermination></ebs></item></blockDeviceMapping><virtualizationType>hvm</virtualizationType><clientToken>{n:032x}</clientToken><tagSet><item><key>Name</key><value>container-host</value></item><item><key>aws:autoscaling:groupName</key><value>hosts</value></item><item><key>aws:ec2launchtemplate:id</key><value>lt-0a1b2c3d4e5f67890</value></item><item><key>aws:ec2launchtemplate:version</key><value>7</value></item><item><key>Service</key><value>bench</value></item><item><key>Team</key><value>bench-team</value></item></tagSet><hypervisor>xen</hypervisor><networkInterfaceSet><item><networkInterfaceId>eni-{n:017x}</networkInterfaceId><subnetId>subnet-0a1b2c3d4e5f67890</subnetId><vpcId>vpc-0a1b2c3d4e5f67890</vpcId><description/><ownerId>{account}</ownerId><status>in-use</status><macAddress>02:00:00:00:{a:02x}:{b:02x}</macAddress><privateIpAddress>10.0.{a}.{b}</privateIpAddress><sourceDestCheck>true</sourceDestCheck><groupSet><item><groupId>sg-0a1b2c3d4e5f67890</groupId><groupName>container-hosts</groupName></item></groupSet><attachment><attachmentId>eni-attach-{n:017x}</attachmentId><deviceIndex>0</deviceIndex><status>attached</status><attachTime>2026-11-01T10:00:00.000Z</attachTime><deleteOnTermination>true</deleteOnTermination><networkCardIndex>0</networkCardIndex></attachment><privateIpAddressesSet><item><privateIpAddress>10.0.{a}.{b}</privateIpAddress><primary>true</primary></item></privateIpAddressesSet><ipv6AddressesSet/><interfaceType>interface</interfaceType></item></networkInterfaceSet><ebsOptimized>true</ebsOptimized><enaSupport>true</enaSupport><cpuOptions><coreCount>1</coreCount><threadsPerCore>2</threadsPerCore></cpuOptions><capacityReservationSpecification><capacityReservationPreference>open</capacityReservationPreference></capacityReservationSpecification><hibernationOptions><configured>false</configured></hibernationOptions><metadataOptions><state>applied</state><httpTokens>required</httpTokens><httpPutResponseHopLimit>2</httpPutResponseHopLimit><httpEndpoint>enabled</httpEndpoint><httpProtocolIpv6>disabled</httpProtocolIpv6><instanceMetadataTags>disabled</instanceMetadataTags></metadataOptions><enclaveOptions><enabled>false</enabled></enclaveOptions><platformDetails>Linux/UNIX</platformDetails><usageOperation>RunInstances</usageOperation><bootMode>uefi-preferred</bootMode><currentInstanceBootMode>legacy-bios</currentInstanceBootMode></item>",
            a = (n / 250) % 250,
            b = n % 250,
        ));
    }
    if last > first {
        s.push_str("</instancesSet></item>");
    }
    s.push_str("</reservationSet>");
    if last < per {
        s.push_str(&format!("<nextToken>{last}</nextToken>"));
    }
    s.push_str("</DescribeInstancesResponse>");
    s
}

fn instance_information(body: &str) -> String {
    let req: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    let ids: Vec<&str> = req["Filters"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|f| f["Key"] == "InstanceIds")
        .flat_map(|f| f["Values"].as_array().into_iter().flatten().filter_map(|v| v.as_str()))
        .collect();
    let list: Vec<serde_json::Value> = ids
        .iter()
        .map(|id| {
            serde_json::json!({"InstanceId": id, "PingStatus": "Online", "LastPingDateTime": 1.795e9, "AgentVersion": "3.3.1142.0",
                "IsLatestVersion": true, "PlatformType": "Linux", "PlatformName": "Amazon Linux", "PlatformVersion": "2",
                "ResourceType": "EC2Instance", "IPAddress": "10.0.0.1", "ComputerName": "ip-10-0-0-1.eu-west-1.compute.internal",
                "AssociationStatus": "Success", "SourceId": id, "SourceType": "AWS::EC2::Instance"})
        })
        .collect();
    serde_json::json!({ "InstanceInformationList": list }).to_string()
}
