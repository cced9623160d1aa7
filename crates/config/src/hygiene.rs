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

/// The default steps, one command each (bash; none fails on a missing file or tool).
pub const DEFAULT_STEPS: &[(&str, &str)] = &[
    // Host keys are made per instance. Amazon Linux (sshd-keygen) and cloud-init remake
    // missing keys at boot; where neither is there (a debootstrap image with sshd), a
    // one-shot unit does, or the instance would boot with no host keys and no SSH.
    (
        "SshHostKeys",
        "if ls /etc/ssh/ssh_host_*_key >/dev/null 2>&1; then\n  if ! command -v cloud-init >/dev/null 2>&1 && [ ! -e /usr/lib/systemd/system/sshd-keygen@.service ] && [ ! -e /usr/libexec/openssh/sshd-keygen ] && [ -d /etc/systemd/system ]; then\n    printf '%s\\n' '[Unit]' 'Description=Make SSH host keys on first boot (amictl)' 'ConditionPathExistsGlob=!/etc/ssh/ssh_host_*_key' 'Before=ssh.service sshd.service' '[Service]' 'Type=oneshot' 'ExecStart=/usr/bin/ssh-keygen -A' '[Install]' 'WantedBy=multi-user.target' > /etc/systemd/system/amictl-ssh-host-keys.service\n    mkdir -p /etc/systemd/system/multi-user.target.wants\n    ln -sf ../amictl-ssh-host-keys.service /etc/systemd/system/multi-user.target.wants/amictl-ssh-host-keys.service\n  fi\n  rm -f /etc/ssh/ssh_host_*_key /etc/ssh/ssh_host_*_key.pub\nfi",
    ),
    // Emptied, not removed: systemd makes a new id on boot; an absent file means "first
    // boot" on some distributions and breaks others. The D-Bus copy follows it.
    (
        "MachineId",
        "if [ -e /etc/machine-id ]; then : > /etc/machine-id; fi\nif [ -f /var/lib/dbus/machine-id ] && [ ! -L /var/lib/dbus/machine-id ]; then ln -sf /etc/machine-id /var/lib/dbus/machine-id; fi",
    ),
    ("CloudInit", "rm -rf /var/lib/cloud/instance /var/lib/cloud/instances /var/lib/cloud/data /var/lib/cloud/sem"),
    // Current logs are kept, empty (services expect them); rotated ones are removed.
    (
        "Logs",
        "command -v find >/dev/null 2>&1 || exit 0\nif [ -d /var/log ]; then\n  find /var/log -xdev -type f \\( -name '*.gz' -o -name '*.[0-9]' -o -name '*.old' \\) -delete 2>/dev/null || true\n  find /var/log -xdev -type f \\( -name '*.log' -o -name wtmp -o -name btmp -o -name lastlog -o -name messages -o -name secure -o -name syslog \\) -exec truncate -s 0 {} + 2>/dev/null || true\nfi",
    ),
    ("ShellHistory", "rm -f /root/.bash_history /home/*/.bash_history /root/.lesshst /root/.viminfo"),
    (
        "TempFiles",
        "command -v find >/dev/null 2>&1 || exit 0\nfor d in /tmp /var/tmp; do\n  if [ -d \"$d\" ]; then find \"$d\" -xdev -mindepth 1 -delete 2>/dev/null || true; fi\ndone",
    ),
];

/// The cleanup document for a line built from `components`: an AWSTOE document with one
/// `build` phase, the default steps, then each component's own, in order. Each command is
/// a JSON-quoted YAML string, so no character in it can change the document's shape;
/// `{{ … }}` in a command is an AWSTOE variable, as in any document.
pub fn document(components: &[&Component]) -> String {
    let mut steps: Vec<(String, String)> =
        DEFAULT_STEPS.iter().map(|(n, c)| ((*n).to_string(), (*c).to_string())).collect();
    for (i, c) in components.iter().enumerate() {
        for (j, cmd) in c.snapshot_cleanup.iter().enumerate() {
            steps.push((format!("Component{}Step{}", i + 1, j + 1), cmd.clone()));
        }
    }
    render(&steps)
}

/// A document of one step per `(name, command)`.
pub fn render(steps: &[(String, String)]) -> String {
    let mut out = format!(
        "name: {NAME}\ndescription: Cleans what must not be in a snapshot (amictl's default; snapshot_cleanup = false skips it).\nschemaVersion: 1.0\nphases:\n  - name: build\n    steps:\n"
    );
    for (name, cmd) in steps {
        let quoted = serde_json::to_string(cmd).unwrap_or_else(|_| "\"true\"".into());
        out.push_str(&format!(
            "      - name: {name}\n        action: ExecuteBash\n        inputs:\n          commands:\n            - {quoted}\n"
        ));
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

    #[test]
    fn no_command_can_change_the_documents_shape() {
        for cmd in ["a\rb: 1", "  indented\nless", "x\u{2028}y", "- item", "key: value", "'\"\\", "\n\n"] {
            let text = render(&[("One".into(), cmd.to_string())]);
            let (doc, _) = toe::Document::parse(NAME, std::path::PathBuf::new(), text)
                .unwrap_or_else(|d| panic!("{cmd:?}: {d:?}"));
            assert_eq!(doc.phases[0].steps.len(), 1, "{cmd:?}");
            assert_eq!(doc.phases[0].steps[0].inputs[0]["commands"][0], cmd, "{cmd:?} arrives unchanged");
        }
    }
}
