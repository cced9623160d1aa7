//! What every image is cleaned of before it is snapshotted: the state that must be made
//! fresh on each instance launched from it, or that belongs to the build alone. Image
//! Builder runs such a cleanup before its snapshot; amictl's builders run this one as the
//! last build document (in the sandbox, or through Run Command on the builder instance),
//! unless a line says `snapshot_cleanup = false`.
//!
//! Removed or emptied: SSH host keys (regenerated at first boot), `/etc/machine-id`
//! (emptied, so systemd makes a new one per instance; an absent file would mean "first
//! boot" on some distributions and break others), cloud-init's per-instance state, the
//! build's logs (files kept, emptied), shell history and temporary files. Components add
//! their own with `snapshot_cleanup = ["…"]` (e.g. a security agent's sensor id), run
//! after the default steps.

use crate::schema::Component;

/// The name the cleanup runs under, in logs and the build's documents.
pub const NAME: &str = "amictl-snapshot-cleanup";

/// The default steps, one command each (bash; none fails on a missing file).
pub const DEFAULT_STEPS: &[(&str, &str)] = &[
    ("SshHostKeys", "rm -f /etc/ssh/ssh_host_*_key /etc/ssh/ssh_host_*_key.pub"),
    ("MachineId", "if [ -e /etc/machine-id ]; then : > /etc/machine-id; fi; rm -f /var/lib/systemd/random-seed"),
    ("CloudInit", "rm -rf /var/lib/cloud/instance /var/lib/cloud/instances /var/lib/cloud/data /var/lib/cloud/sem"),
    (
        "Logs",
        "if [ -d /var/log ]; then find /var/log -xdev -type f \\( -name '*.log' -o -name '*.gz' -o -name '*.[0-9]' -o -name wtmp -o -name btmp -o -name lastlog -o -name messages -o -name secure \\) -exec truncate -s 0 {} +; fi",
    ),
    ("ShellHistory", "rm -f /root/.bash_history /home/*/.bash_history /root/.lesshst /root/.viminfo"),
    ("TempFiles", "for d in /tmp /var/tmp; do [ -d \"$d\" ] && find \"$d\" -xdev -mindepth 1 -delete; done; true"),
];

/// The cleanup document for a line built from `components`: an AWSTOE document with one
/// `build` phase, the default steps, then each component's own.
pub fn document(components: &[&Component]) -> String {
    let mut steps: Vec<(String, String)> =
        DEFAULT_STEPS.iter().map(|(n, c)| ((*n).to_string(), (*c).to_string())).collect();
    for c in components {
        for (i, cmd) in c.snapshot_cleanup.iter().enumerate() {
            let name: String = c.name.chars().map(|ch| if ch.is_ascii_alphanumeric() { ch } else { '-' }).collect();
            steps.push((format!("Component-{name}-{}", i + 1), cmd.clone()));
        }
    }
    let mut out = format!(
        "name: {NAME}\ndescription: Cleans what must not be in a snapshot (amictl's default; snapshot_cleanup = false skips it).\nschemaVersion: 1.0\nphases:\n  - name: build\n    steps:\n"
    );
    for (name, cmd) in steps {
        out.push_str(&format!(
            "      - name: {name}\n        action: ExecuteBash\n        inputs:\n          commands:\n            - |\n"
        ));
        for line in cmd.lines() {
            out.push_str("              ");
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cleanup_is_a_valid_document_with_the_components_steps_last() {
        let (doc, warnings) = toe::Document::parse(NAME, std::path::PathBuf::new(), document(&[])).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        let steps: Vec<&str> = doc.phases[0].steps.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(steps, ["SshHostKeys", "MachineId", "CloudInit", "Logs", "ShellHistory", "TempFiles"]);
    }
}
