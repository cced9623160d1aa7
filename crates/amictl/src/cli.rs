//! The command line. Flags of `amictl toe` match awstoe's where awstoe has them.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "amictl", version, about = "Keeps base machine images fresh, tested, distributed and in use.")]
pub struct Cli {
    /// Log filter for diagnostics on stderr (also AMICTL_LOG), e.g. `debug`.
    #[arg(long, global = true, default_value = "warn")]
    pub log_level: String,
    #[command(flatten)]
    pub common: Common,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check the config and every component and test document it references.
    Validate(ConfigValidateArgs),
    /// Show what apply would do and why. Exit 0: nothing to do; 2: changes; 1: error.
    Plan(PlanArgs),
    /// Carry out the plan: recover interrupted builds, build and test images, retire old ones.
    Apply(ApplyArgs),
    /// Plan and apply for one image line.
    Build(BuildArgs),
    /// Adopt existing AMIs as versions: the images of a line's Image Builder pipeline, or
    /// AMIs matching its `import = { name, owner }` in every account and region. Once each.
    Import(ImportArgs),
    /// Versions of each image line: age, parent, status, packages, tests.
    Images(ImagesArgs),
    /// One version in detail: lineage, components, artifacts, tests, manifest diff.
    Show(ShowArgs),
    /// Scan every consumer's hosts: version, deadline, agent health. Exit 3 when a consumer
    /// is overdue or could not be read.
    Fleet(FleetArgs),
    /// One self-contained HTML page (or --json) for people: compliance per consumer,
    /// overdue hosts, deadlines, image ages, agent health — from the last scans.
    Report(ReportArgs),
    /// Missing security fixes: per image version from its feed, or for any manifest
    /// (--manifest with --updateinfo or --debian-tracker). Exit 3 when there are findings.
    Advisories(AdvisoriesArgs),
    /// Prometheus text exposition: image ages, instances per state, days to deadline,
    /// agent health — from the last scans.
    Metrics(MetricsArgs),
    /// The audit trail: verify, export, read.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// The state database: back it up.
    #[command(subcommand)]
    State(StateCommand),
    /// Print the least-privilege IAM policies the config needs (platform and consumer roles).
    IamPolicy,
    /// Run the loop unattended: cycles on `[serve] schedule`, the advisory watch, approvals,
    /// the HTTP API, `/metrics` and the dashboard, and notices to webhooks.
    Serve(ServeArgs),
    /// Actions held for approval (`policy.require_approval`): pending ones, or all with --all.
    Approvals(ApprovalsArgs),
    /// Approve a held action: the next cycle carries it out (a running `serve` starts one).
    Approve(DecideArgs),
    /// Deny a held action: it is not asked for again until the request expires.
    Deny(DecideArgs),
    /// Validate and run AWSTOE component documents (awstoe-compatible).
    #[command(subcommand)]
    Toe(ToeCommand),
}

#[derive(Debug, Subcommand)]
pub enum ToeCommand {
    /// Check documents and report every error with file:line:column; runs nothing.
    Validate(ValidateArgs),
    /// Run documents' phases, on this host or inside a root filesystem (--root).
    Run(RunArgs),
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Comma-separated document paths, no spaces (as awstoe).
    #[arg(short = 'd', long, value_name = "LIST")]
    pub documents: String,
    /// Unknown keys are errors, not warnings.
    #[arg(long)]
    pub strict: bool,
    /// Accepted for awstoe compatibility; diagnostics are always complete.
    #[arg(short = 't', long)]
    pub trace: bool,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Comma-separated document paths (or s3:// URIs with --object-store), no spaces.
    #[arg(short = 'd', long, value_name = "LIST")]
    pub documents: String,
    /// Phases to run, comma-separated; others are skipped. Default: all.
    #[arg(short = 'p', long, value_name = "LIST")]
    pub phases: Option<String>,
    /// Parameter values `name=value,name2=value2`; undeclared names are ignored.
    #[arg(long, value_name = "LIST")]
    pub parameters: Option<String>,
    /// Execution id used in the log folder name and outputs. Default: a new UUID.
    #[arg(short = 'i', long)]
    pub execution_id: Option<String>,
    /// Parent folder of the TOE_<time>_UTC-0_<id> log folder.
    #[arg(short = 'l', long, default_value = ".")]
    pub log_directory: PathBuf,
    /// Where reboot-resume state is kept. A leftover state here resumes that execution.
    /// Default: <log-directory>/.amictl-toe-state
    #[arg(short = 's', long)]
    pub state_directory: Option<PathBuf>,
    /// Stream every command's output and the engine's log to stderr.
    #[arg(short = 't', long)]
    pub trace: bool,
    /// Run inside this root filesystem (fresh mount/PID/UTS/IPC namespaces + chroot).
    /// A reboot request restarts the sandbox and resumes. Needs root.
    #[arg(long, value_name = "ROOTFS")]
    pub root: Option<PathBuf>,
    /// Serve s3:// (S3Download, S3Upload, documents) from DIR/<bucket>/<key>.
    #[arg(long, value_name = "DIR")]
    pub object_store: Option<PathBuf>,
}

/// Options shared by the lifecycle commands.
#[derive(Debug, Args, Clone)]
pub struct Common {
    /// The config file.
    #[arg(short = 'c', long, env = "AMICTL_CONFIG", default_value = "amictl.toml", global = true)]
    pub config: PathBuf,
    /// Machine-readable output on stdout.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ConfigValidateArgs {
    /// Unknown keys in component and test documents are errors, not warnings (keys of
    /// amictl.toml itself are always checked).
    #[arg(long)]
    pub strict: bool,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Only this image line.
    #[arg(long, value_name = "LINE")]
    pub image: Option<String>,
    /// Show what would be adopted; record nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Plan as if it were this time: 2027-03-01, an RFC 3339 time, or +91d from now.
    #[arg(long, value_name = "WHEN")]
    pub now: Option<String>,
}

#[derive(Debug, Args)]
pub struct FleetArgs {
    /// Judge deadlines as if it were this time: 2027-03-01, an RFC 3339 time, or +15d.
    #[arg(long, value_name = "WHEN")]
    pub now: Option<String>,
    /// Offline audit: saved `aws ec2 describe-instances` JSON for an account (repeatable);
    /// no AWS calls are made, and agent health is not judged.
    #[arg(long, value_name = "ACCOUNT=FILE")]
    pub inventory: Vec<String>,
}

#[derive(Debug, Args)]
pub struct AdvisoriesArgs {
    /// IMAGE or IMAGE@VERSION (default: the newest version of every line with a feed).
    pub target: Option<String>,
    /// Report only findings at or above: low, medium, important, critical.
    #[arg(long, value_name = "SEVERITY")]
    pub min_severity: Option<String>,
    /// Ad hoc: a manifest from `rpm -qa --queryformat '%{NAME}\t%{EPOCHNUM}\t%{VERSION}\t%{RELEASE}\t%{ARCH}\n'`
    /// or `dpkg-query -W -f='${Package}\t${Version}\t${Architecture}\t${source:Package}\t${source:Version}\n'`.
    #[arg(long, value_name = "FILE")]
    pub manifest: Option<std::path::PathBuf>,
    /// With --manifest: an updateinfo.xml[.gz] or repomd.xml, file or URL.
    #[arg(long, value_name = "FILE|URL")]
    pub updateinfo: Option<String>,
    /// With --manifest: Debian Security Tracker JSON, file or URL.
    #[arg(long, value_name = "FILE|URL")]
    pub debian_tracker: Option<String>,
    /// The Debian release to read from the tracker (bookworm, trixie …).
    #[arg(long)]
    pub release: Option<String>,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Write the HTML page here (without it, the page goes to stdout).
    #[arg(long, value_name = "FILE")]
    pub html: Option<std::path::PathBuf>,
    #[arg(long, value_name = "WHEN")]
    pub now: Option<String>,
}

#[derive(Debug, Args)]
pub struct MetricsArgs {
    #[arg(long, value_name = "WHEN")]
    pub now: Option<String>,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    #[arg(long, value_name = "WHEN")]
    pub now: Option<String>,
    /// Show the plan and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// If another run holds the state lock, wait for it instead of failing.
    #[arg(long)]
    pub wait: bool,
    /// Prepare parents afresh (a new debootstrap), so a moved parent is noticed.
    #[arg(long)]
    pub refresh_parents: bool,
    /// How many independent image lines (and consumers) to work on at once. When any line
    /// builds in the local sandbox, lines go one at a time (the sandbox forks).
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub parallel: usize,
    /// Plan at this time and record with a clock that starts there (`serve --from`).
    #[arg(long, value_name = "WHEN", hide = true, conflicts_with = "now")]
    pub clock_from: Option<String>,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Listen here instead of `[serve] listen` (default 127.0.0.1:8421).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// A modelled clock: run every job due from this time (a date, an RFC 3339 time or
    /// +Nd) to --until, in order, as fast as they run, recording at modelled times; then
    /// exit. No HTTP listener. For rehearsing a schedule, and for the week test.
    #[arg(long, value_name = "WHEN", requires = "until")]
    pub from: Option<String>,
    /// Where the modelled clock stops.
    #[arg(long, value_name = "WHEN", requires = "from")]
    pub until: Option<String>,
}

#[derive(Debug, Args)]
pub struct ApprovalsArgs {
    /// Every approval, not only pending ones.
    #[arg(long)]
    pub all: bool,
}

#[derive(Debug, Args)]
pub struct DecideArgs {
    /// The approval's id (`ap-…`, from `amictl approvals`).
    pub id: String,
    /// Who decides, for the audit trail (default: user@host).
    #[arg(long = "as", value_name = "NAME")]
    pub by: Option<String>,
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The image line to build.
    pub image: String,
    /// Build even when nothing is due.
    #[arg(long)]
    pub force: bool,
    #[arg(long)]
    pub wait: bool,
    #[arg(long)]
    pub refresh_parents: bool,
}

#[derive(Debug, Args)]
pub struct ImagesArgs {
    /// Only this image line.
    pub image: Option<String>,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// IMAGE@VERSION (or IMAGE for its newest version).
    pub target: String,
}

#[derive(Debug, Subcommand)]
pub enum StateCommand {
    /// Copy the state to DEST with SQLite's online backup (safe while apply runs; never
    /// overwrites). Restore by copying a backup over the state file while no run is active.
    Backup {
        /// Where to write the copy (must not exist).
        dest: std::path::PathBuf,
    },
    /// Copy the whole history into another, empty state — a SQLite file or a
    /// `postgres://` URL — and prove it arrived by re-hashing the chain there. Either
    /// direction; the source is left as it was.
    Copy {
        /// The destination: a file path or `postgres://user@host:port/db`.
        #[arg(long)]
        to: String,
        /// The environment variable holding the destination's password (kept out of the
        /// URL, so out of `ps`).
        #[arg(long, value_name = "VAR")]
        to_password_env: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the state: SQLite's full integrity_check, the append-only triggers, the audit
    /// chain's hashes, and each build's manifest and artifacts against its audit event;
    /// and, against the anchors (`[audit.anchors]` or --anchors), that no tail was deleted,
    /// the chain was not rewritten, and the history is not missing.
    Verify {
        /// Anchors to check against: `s3://bucket/prefix` or a directory of checkpoints.
        #[arg(long, value_name = "BUCKET|DIR")]
        anchors: Option<String>,
    },
    /// Write the chain's head to the anchors now (every apply does this at its end).
    Anchor,
    /// Make an Ed25519 key for signed checkpoints: the private seed to FILE (0600, never
    /// overwritten), the public key to stdout for `[audit.anchors] public_key`.
    Keygen {
        /// Where the private key goes.
        file: std::path::PathBuf,
    },
    /// Print every event, one JSON object per line.
    Export {
        /// JSON Lines (the only format for now; accepted for clarity).
        #[arg(long)]
        jsonl: bool,
    },
    /// The audit trail for people.
    Log {
        #[arg(long)]
        image: Option<String>,
    },
}
