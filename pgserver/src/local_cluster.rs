//! The `local` backend: a throwaway cluster made with `initdb` and run with
//! `pg_ctl`, in a temporary directory that is removed afterwards.
//!
//! * Binaries: `initdb` and `pg_ctl` from `AEPG_TEST_PG_BINDIR`, else from
//!   `PATH`, else from the newest `/usr/lib/postgresql/*/bin` (Debian) or
//!   `/usr/pgsql-*/bin` (RHEL).
//! * Root: `initdb` refuses to run as root. When the effective uid is 0 the
//!   harness runs `initdb`/`pg_ctl` as the `postgres` OS user (or
//!   `AEPG_TEST_LOCAL_USER`) through `runuser -u USER --` (util-linux), falling
//!   back to `setpriv --reuid --regid --init-groups`, and `chown`s the
//!   temporary directory to that user.
//! * Server: listens on 127.0.0.1 on a free port (plus a Unix socket inside
//!   the temporary directory), `trust` authentication, superuser `postgres`,
//!   `fsync=off`; the log goes to `server.log` in the temporary directory.
//! * Clean-up: dropping a [`LocalCluster`] stops the server (`pg_ctl stop -m
//!   fast`) and removes the directory. The process-wide shared cluster is never
//!   dropped; it is stopped and removed after the process exits by the
//!   [`crate::reaper`] watchdog.

use std::fs;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use tempfile::TempDir;
use tokio_postgres::Config;

use crate::env_vars;
use crate::error::{Error, Result};
use crate::log::log;
use crate::reaper::{self, shell_join, shell_quote};

/// A running (or stopped) throwaway PostgreSQL cluster.
#[derive(Debug)]
pub(crate) struct LocalCluster {
    dir: Option<TempDir>,
    data_dir: PathBuf,
    log_file: PathBuf,
    port: u16,
    pg_ctl: PathBuf,
    run_as: RunAs,
    running: bool,
}

impl LocalCluster {
    /// Creates and starts a cluster with extra `postgresql.conf` settings.
    /// Blocking (a few seconds).
    pub(crate) fn start(settings: &[(String, String)]) -> Result<Self> {
        let bins = PgBinaries::find()?;
        let run_as = RunAs::detect()?;
        let dir = tempfile::Builder::new()
            .prefix("aepg-pg-")
            .tempdir()
            .map_err(|e| Error::failed(format!("cannot create a temporary directory: {e}")))?;
        if let RunAs::User { uid, gid, .. } = &run_as {
            std::os::unix::fs::chown(dir.path(), Some(*uid), Some(*gid)).map_err(|e| {
                Error::failed(format!("cannot chown {}: {e}", dir.path().display()))
            })?;
        }
        let data_dir = dir.path().join("data");
        let log_file = dir.path().join("server.log");

        let output = run_as
            .command(&bins.initdb, dir.path())
            .arg("-D")
            .arg(&data_dir)
            .args([
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-locale",
                "-N",
            ])
            .output();
        check_output(output, "initdb", &bins.initdb)?;

        let mut conf = format!(
            "\n# added by aepg-tests\nlisten_addresses = '127.0.0.1'\n\
             unix_socket_directories = {}\nfsync = off\nfull_page_writes = off\n\
             synchronous_commit = off\nmax_connections = 200\n",
            conf_quote(&dir.path().to_string_lossy())
        );
        for (key, value) in settings {
            conf.push_str(&format!("{key} = {}\n", conf_quote(value)));
        }
        fs::OpenOptions::new()
            .append(true)
            .open(data_dir.join("postgresql.conf"))
            .and_then(|mut f| f.write_all(conf.as_bytes()))
            .map_err(|e| Error::failed(format!("cannot extend postgresql.conf: {e}")))?;

        let mut cluster = LocalCluster {
            dir: Some(dir),
            data_dir,
            log_file,
            port: 0,
            pg_ctl: bins.pg_ctl,
            run_as,
            running: false,
        };
        cluster.start_server()?;
        if let Err(e) = reaper::at_exit(&cluster.exit_cleanup_command()) {
            log(format!(
                "warning: {e}; the cluster may outlive this process"
            ));
        }
        Ok(cluster)
    }

    fn start_server(&mut self) -> Result<()> {
        let timeout = env_vars::startup_timeout().as_secs().to_string();
        let mut last_error = None;
        for _attempt in 0..3 {
            let port = free_port()?;
            let dir = self.dir_path()?.to_owned();
            let output = self
                .run_as
                .command(&self.pg_ctl, &dir)
                .arg("-D")
                .arg(&self.data_dir)
                .arg("-l")
                .arg(&self.log_file)
                .args(["-w", "-t", &timeout, "-o", &format!("-p {port}"), "start"])
                .output();
            match check_output(output, "pg_ctl start", &self.pg_ctl) {
                Ok(()) => {
                    self.port = port;
                    self.running = true;
                    return Ok(());
                }
                Err(e) => {
                    let log_text = self.read_log().unwrap_or_default();
                    let tail: Vec<&str> = log_text.lines().rev().take(15).collect();
                    let tail: Vec<&str> = tail.into_iter().rev().collect();
                    let port_clash = log_text.contains("could not bind")
                        || log_text.contains("Address already in use");
                    last_error = Some(e.context(format!("server log:\n{}", tail.join("\n"))));
                    if !port_clash {
                        break;
                    }
                }
            }
        }
        Err(last_error.unwrap_or_else(|| Error::failed("pg_ctl start failed")))
    }

    fn dir_path(&self) -> Result<&Path> {
        self.dir
            .as_ref()
            .map(TempDir::path)
            .ok_or_else(|| Error::failed("local cluster directory already removed"))
    }

    /// Superuser connection settings (database `postgres`).
    pub(crate) fn config(&self) -> Config {
        let mut config = Config::new();
        config
            .host("127.0.0.1")
            .port(self.port)
            .user("postgres")
            .dbname("postgres")
            .connect_timeout(Duration::from_secs(10));
        config
    }

    /// The data directory.
    pub(crate) fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The server log written by `pg_ctl -l`.
    pub(crate) fn log_file(&self) -> &Path {
        &self.log_file
    }

    /// The server log text so far.
    pub(crate) fn read_log(&self) -> Result<String> {
        fs::read(&self.log_file)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .map_err(|e| Error::failed(format!("cannot read {}: {e}", self.log_file.display())))
    }

    /// A one-line description for logs.
    pub(crate) fn description(&self) -> String {
        format!(
            "local cluster on 127.0.0.1:{} in {} ({})",
            self.port,
            self.data_dir.display(),
            self.pg_ctl.display()
        )
    }

    /// Stops the server cleanly (`pg_ctl stop -m fast`); files stay until drop.
    pub(crate) fn stop(&mut self) -> Result<()> {
        if !self.running {
            return Ok(());
        }
        let dir = self.dir_path()?.to_owned();
        let output = self
            .run_as
            .command(&self.pg_ctl, &dir)
            .arg("-D")
            .arg(&self.data_dir)
            .args(["-m", "fast", "-w", "-t", "60", "stop"])
            .output();
        check_output(output, "pg_ctl stop", &self.pg_ctl)?;
        self.running = false;
        Ok(())
    }

    fn exit_cleanup_command(&self) -> String {
        let mut stop = self.run_as.shell_prefix();
        stop.push_str(&shell_join(&[
            self.pg_ctl.to_string_lossy().as_ref(),
            "-D",
            self.data_dir.to_string_lossy().as_ref(),
            "-m",
            "immediate",
            "-w",
            "stop",
        ]));
        let dir = self
            .dir
            .as_ref()
            .map(|d| d.path().to_string_lossy().into_owned())
            .unwrap_or_default();
        format!("{stop}; rm -rf {}", shell_quote(&dir))
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            log(format!(
                "warning: could not stop {}: {e}",
                self.description()
            ));
        }
        if let Some(dir) = self.dir.take() {
            let path = dir.path().to_owned();
            if let Err(e) = dir.close() {
                log(format!("warning: could not remove {}: {e}", path.display()));
            }
        }
    }
}

/// Copies a directory tree (files, directories, symlinks).
pub(crate) fn copy_dir_recursive(src: &Path, dst: &Path) -> std::io::Result<()> {
    fs::create_dir_all(dst)?;
    for entry in fs::read_dir(src)? {
        let entry = entry?;
        let file_type = entry.file_type()?;
        let target = dst.join(entry.file_name());
        if file_type.is_dir() {
            copy_dir_recursive(&entry.path(), &target)?;
        } else if file_type.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(entry.path())?, &target)?;
        } else if file_type.is_file() {
            fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

#[derive(Debug)]
struct PgBinaries {
    initdb: PathBuf,
    pg_ctl: PathBuf,
}

impl PgBinaries {
    fn find() -> Result<Self> {
        if let Some(dir) = env_vars::non_empty(env_vars::PG_BINDIR) {
            return Self::in_dir(Path::new(&dir)).ok_or_else(|| {
                Error::unavailable(format!(
                    "{}={dir} has no executable initdb and pg_ctl",
                    env_vars::PG_BINDIR
                ))
            });
        }
        if let (Some(initdb), Some(pg_ctl)) = (which("initdb"), which("pg_ctl")) {
            return Ok(Self { initdb, pg_ctl });
        }
        let mut dirs: Vec<(u32, PathBuf)> = Vec::new();
        for pattern_dir in ["/usr/lib/postgresql", "/usr"] {
            let Ok(entries) = fs::read_dir(pattern_dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let version = if pattern_dir == "/usr" {
                    name.strip_prefix("pgsql-").map(str::to_owned)
                } else {
                    Some(name)
                };
                if let Some(major) = version.and_then(|v| v.split('.').next()?.parse().ok()) {
                    dirs.push((major, entry.path().join("bin")));
                }
            }
        }
        dirs.sort();
        dirs.iter()
            .rev()
            .find_map(|(_, dir)| Self::in_dir(dir))
            .ok_or_else(|| {
                Error::unavailable(
                    "initdb/pg_ctl not found in PATH, /usr/lib/postgresql/*/bin or /usr/pgsql-*/bin \
                     (set AEPG_TEST_PG_BINDIR)",
                )
            })
    }

    fn in_dir(dir: &Path) -> Option<Self> {
        let initdb = dir.join("initdb");
        let pg_ctl = dir.join("pg_ctl");
        (is_executable(&initdb) && is_executable(&pg_ctl)).then_some(Self { initdb, pg_ctl })
    }
}

fn is_executable(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.mode() & 0o111 != 0)
}

/// Finds `name` in `PATH` (plus the sbin directories, which root's `PATH`
/// usually has but a test runner's may not).
fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

/// How the server processes are run.
#[derive(Debug)]
enum RunAs {
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

#[derive(Debug)]
enum Switcher {
    Runuser(PathBuf),
    Setpriv(PathBuf),
}

impl RunAs {
    fn detect() -> Result<Self> {
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
    fn command(&self, program: &Path, cwd: &Path) -> Command {
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

    fn shell_prefix(&self) -> String {
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

fn free_port() -> Result<u16> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| Error::failed(format!("cannot find a free port: {e}")))
}

fn check_output(output: std::io::Result<Output>, what: &str, program: &Path) -> Result<()> {
    let output =
        output.map_err(|e| Error::failed(format!("cannot run {}: {e}", program.display())))?;
    if output.status.success() {
        return Ok(());
    }
    Err(Error::failed(format!(
        "{what} ({}) failed with {}:\n{}{}",
        program.display(),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )))
}

/// Quotes a `postgresql.conf` value.
fn conf_quote(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "''"))
}
