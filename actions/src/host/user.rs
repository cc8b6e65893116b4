//! `driver host user` (the original's user-setup): a login user with sudo and
//! the site's SSH keys.

use super::{Host, HostError, Report, SHORT};
use crate::ssh::shell_quote;

pub struct UserOptions {
    pub name: String,
    /// Public keys to authorize (the site's `ssh_keys`).
    pub keys: Vec<String>,
    /// Sudo without a password (the posture's `sudo_nopasswd`), else with one.
    pub nopasswd: bool,
    pub dry_run: bool,
}

/// A user name useradd takes (and that is safe in a path and a command).
pub fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 32
        && n.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && n.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

pub async fn user(h: &Host, o: &UserOptions) -> Result<Report, HostError> {
    let mut r = Report::default();
    if !valid_name(&o.name) {
        return Err(h.refuse(format!("'{}' is not a user name useradd takes", o.name)));
    }
    let name = &o.name;
    if h.run(&format!("id -u {name}"), SHORT).await?.ok() {
        r.unchanged(format!("user {name}"));
    } else {
        if !o.dry_run {
            h.ok(&format!("useradd -m -s /bin/bash -G sudo {name}"), SHORT)
                .await?;
        }
        r.changed.push(format!("made user {name} (group sudo)"));
    }
    let rule = if o.nopasswd {
        format!("{name} ALL=(ALL) NOPASSWD:ALL\n")
    } else {
        format!("{name} ALL=(ALL) ALL\n")
    };
    h.ensure_file(
        &format!("/etc/sudoers.d/{name}"),
        &rule,
        0o440,
        o.dry_run,
        &mut r,
    )
    .await?;
    let auth = format!("/home/{name}/.ssh/authorized_keys");
    let have = h.read(&auth).await?.unwrap_or_default();
    let missing: Vec<&String> = o
        .keys
        .iter()
        .filter(|k| !have.lines().any(|l| l.trim() == k.trim()))
        .collect();
    if missing.is_empty() {
        r.unchanged(format!("{auth}: {} key(s)", o.keys.len()));
    } else {
        let mut text = have.clone();
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        for k in &missing {
            text.push_str(k.trim());
            text.push('\n');
        }
        if !o.dry_run {
            h.write(&auth, &text, 0o600).await?;
            let home = shell_quote(&h.path(&format!("/home/{name}/.ssh")));
            h.ok(
                &format!("chmod 700 {home} && chown -R {name}:{name} {home}"),
                SHORT,
            )
            .await?;
        }
        r.changed
            .push(format!("{auth}: added {} key(s)", missing.len()));
    }
    Ok(r)
}
