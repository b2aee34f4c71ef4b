//! Restarting and reloading the units of changed secrets.

use std::io;
use std::path::Path;
use std::process::Command;

/// Why systemctl failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UnitsError {
    /// systemctl could not be started.
    #[error("cannot run systemctl {action}: {source}")]
    Spawn {
        /// `try-restart` or `try-reload-or-restart`.
        action: &'static str,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// systemctl exited non-zero.
    #[error("systemctl {}{action} {} exited with {status}", if *user { "--user " } else { "" }, units.join(" "))]
    Failed {
        /// Whether it was `systemctl --user`.
        user: bool,
        /// The action.
        action: &'static str,
        /// The units.
        units: Vec<String>,
        /// Its exit status.
        status: std::process::ExitStatus,
    },
}

/// Whether systemd is PID 1 (as `sd_booted(3)` decides); for a user
/// session, whether the user's systemd manager runs (its private socket is
/// in the runtime directory, where `systemctl --user` looks for it).
pub fn systemd_running(user: Option<&str>) -> bool {
    match user {
        None => Path::new("/run/systemd/system").is_dir(),
        Some(runtime_dir) => Path::new(runtime_dir).join("systemd/private").exists(),
    }
}

/// `systemctl`, or `systemctl --user` for a user session.
fn systemctl_cmd(user: bool) -> Command {
    let mut c = Command::new("systemctl");
    if user {
        c.arg("--user");
    }
    c
}

/// Whether the system is still booting (`systemctl is-system-running` says
/// `initializing` or `starting`). Units that use secrets have not started yet
/// then and will read the new generation when they do, so nothing is restarted
/// (docs/host.md, step 8: "not during early boot").
///
/// For a user session (`user`), the user manager's state: `starting` while
/// the login reaches `default.target`, whose units start after nixseal's.
pub fn early_boot(user: bool) -> bool {
    systemctl_cmd(user)
        .arg("is-system-running")
        .output()
        .map(|o| {
            matches!(
                String::from_utf8_lossy(&o.stdout).trim(),
                "initializing" | "starting"
            )
        })
        .unwrap_or(false)
}

/// Restart wins over reload; each unit appears once, in first-seen order.
pub fn plan<'a>(
    restart: impl IntoIterator<Item = &'a String>,
    reload: impl IntoIterator<Item = &'a String>,
) -> (Vec<String>, Vec<String>) {
    let mut rs: Vec<String> = Vec::new();
    for u in restart {
        if !rs.contains(u) {
            rs.push(u.clone());
        }
    }
    let mut rl: Vec<String> = Vec::new();
    for u in reload {
        if !rs.contains(u) && !rl.contains(u) {
            rl.push(u.clone());
        }
    }
    (rs, rl)
}

/// `systemctl [--user] <action> --no-block -- <units>`; nothing when
/// `units` is empty.
pub fn systemctl(action: &'static str, units: &[String], user: bool) -> Result<(), UnitsError> {
    if units.is_empty() {
        return Ok(());
    }
    let status = systemctl_cmd(user)
        .arg(action)
        .arg("--no-block")
        .arg("--")
        .args(units)
        .status()
        .map_err(|source| UnitsError::Spawn { action, source })?;
    if status.success() {
        Ok(())
    } else {
        Err(UnitsError::Failed {
            user,
            action,
            units: units.to_vec(),
            status,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_wins_and_dedups() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let (rs, rl) = plan(
            &s(&["a.service", "b.service", "a.service"]),
            &s(&["b.service", "c.service", "c.service"]),
        );
        assert_eq!(rs, s(&["a.service", "b.service"]));
        assert_eq!(rl, s(&["c.service"]));
    }
}
