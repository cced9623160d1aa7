//! The command line. Flags of `amictl toe` match awstoe's where awstoe has them.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "amictl", version, about = "Keeps base machine images fresh, tested, distributed and in use.")]
pub struct Cli {
    /// Log filter for diagnostics on stderr (also AMICTL_LOG), e.g. `debug`.
    #[arg(long, global = true, default_value = "warn")]
    pub log_level: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
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
    /// Print the diagnostics as JSON on stdout.
    #[arg(long)]
    pub json: bool,
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
    /// Machine-readable output only: the JSON summary on stdout, no progress.
    #[arg(long)]
    pub json: bool,
}
