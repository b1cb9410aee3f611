//! Which OS user runs `initdb` and `pg_ctl`, and switching to it.
//!
//! `initdb` refuses to run as root. When the effective uid is 0 the server
//! programs run as `postgres` (or `AEPG_TEST_LOCAL_USER`) through `runuser`,
//! falling back to `setpriv`.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::binaries::which;
use crate::env_vars;
use crate::error::{Error, Result};
use crate::shell::shell_join;

/// How the server processes are run.
#[derive(Debug)]
pub(crate) enum RunAs {
    /// As the current (non-root) user.
    CurrentUser,
    /// As another user, because we are root.
    User {
        name: String,
        uid: u32,
        gid: u32,
        switcher: Switcher,
    },
}

/// The program that switches users.
#[derive(Debug)]
pub(crate) enum Switcher {
    /// `runuser -u USER --` (util-linux).
    Runuser(PathBuf),
    /// `setpriv --reuid --regid --init-groups --`.
    Setpriv(PathBuf),
}

impl RunAs {
    /// The current user, or (as root) the user to switch to.
    pub(crate) fn detect() -> Result<Self> {
        if effective_uid()? != 0 {
            return Ok(RunAs::CurrentUser);
        }
        let name =
            env_vars::non_empty(env_vars::LOCAL_USER).unwrap_or_else(|| "postgres".to_owned());
        let (uid, gid) = lookup_user(&name).ok_or_else(|| {
            Error::unavailable(format!(
                "running as root, and initdb refuses root, but there is no OS user {name:?} \
                 to run it as (set {})",
                env_vars::LOCAL_USER
            ))
        })?;
        let switcher = if let Some(p) = which("runuser") {
            Switcher::Runuser(p)
        } else if let Some(p) = which("setpriv") {
            Switcher::Setpriv(p)
        } else {
            return Err(Error::unavailable(
                "running as root, and initdb refuses root, but neither runuser nor setpriv \
                 is available to switch users",
            ));
        };
        Ok(RunAs::User {
            name,
            uid,
            gid,
            switcher,
        })
    }

    /// Gives `dir` to the user the programs run as (nothing to do for the
    /// current user).
    pub(crate) fn give_directory(&self, dir: &Path) -> Result<()> {
        if let RunAs::User { uid, gid, .. } = self {
            std::os::unix::fs::chown(dir, Some(*uid), Some(*gid))
                .map_err(|e| Error::failed(format!("cannot chown {}: {e}", dir.display())))?;
        }
        Ok(())
    }

    fn prefix_args(&self) -> Vec<String> {
        match self {
            RunAs::CurrentUser => Vec::new(),
            RunAs::User {
                name,
                uid,
                gid,
                switcher,
            } => match switcher {
                Switcher::Runuser(p) => vec![
                    p.to_string_lossy().into_owned(),
                    "-u".to_owned(),
                    name.clone(),
                    "--".to_owned(),
                ],
                Switcher::Setpriv(p) => vec![
                    p.to_string_lossy().into_owned(),
                    format!("--reuid={uid}"),
                    format!("--regid={gid}"),
                    "--init-groups".to_owned(),
                    "--".to_owned(),
                ],
            },
        }
    }

    /// A command running `program` as the right user, in `cwd` (the
    /// test's working directory may not be readable by that user).
    pub(crate) fn command(&self, program: &Path, cwd: &Path) -> Command {
        let prefix = self.prefix_args();
        let mut cmd = match prefix.split_first() {
            Some((first, rest)) => {
                let mut cmd = Command::new(first);
                cmd.args(rest).arg(program);
                cmd
            }
            None => Command::new(program),
        };
        cmd.current_dir(cwd).env("LC_ALL", "C");
        cmd
    }

    /// The same as [`Self::command`]'s user switch, as a shell command prefix.
    pub(crate) fn shell_prefix(&self) -> String {
        let prefix = self.prefix_args();
        if prefix.is_empty() {
            String::new()
        } else {
            format!("{} ", shell_join(&prefix))
        }
    }
}

fn effective_uid() -> Result<u32> {
    // /proc/self belongs to the process's effective uid.
    if let Ok(meta) = fs::metadata("/proc/self") {
        return Ok(meta.uid());
    }
    let output = Command::new("id")
        .arg("-u")
        .output()
        .map_err(|e| Error::failed(format!("cannot determine the effective uid: {e}")))?;
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .map_err(|e| Error::failed(format!("cannot determine the effective uid: {e}")))
}

/// uid and gid of `name` from `/etc/passwd`.
fn lookup_user(name: &str) -> Option<(u32, u32)> {
    let passwd = fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        if fields.first() == Some(&name) && fields.len() > 3 {
            Some((fields[2].parse().ok()?, fields[3].parse().ok()?))
        } else {
            None
        }
    })
}
