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
    #[error("systemctl {action} {} exited with {status}", units.join(" "))]
    Failed {
        /// The action.
        action: &'static str,
        /// The units.
        units: Vec<String>,
        /// Its exit status.
        status: std::process::ExitStatus,
    },
}

/// Whether systemd is PID 1 (as `sd_booted(3)` decides).
pub fn systemd_running() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

/// Whether the system is still booting (`systemctl is-system-running` says
/// `initializing` or `starting`). Units that use secrets have not started yet
/// then and will read the new generation when they do, so nothing is restarted
/// (docs/host.md, step 8: "not during early boot").
pub fn early_boot() -> bool {
    Command::new("systemctl")
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

/// `systemctl <action> --no-block -- <units>`; nothing when `units` is empty.
pub fn systemctl(action: &'static str, units: &[String]) -> Result<(), UnitsError> {
    if units.is_empty() {
        return Ok(());
    }
    let status = Command::new("systemctl")
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
