//! A throwaway cluster: `initdb`, `postgresql.conf`, `pg_ctl start`/`stop`,
//! its log, and its removal.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use tempfile::TempDir;
use tokio_postgres::Config;

use super::binaries::PgBinaries;
use super::os_user::RunAs;
use crate::env_vars;
use crate::error::{Error, Result};
use crate::log::log;
use crate::reaper;
use crate::shell::{shell_join, shell_quote};

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
        run_as.give_directory(dir.path())?;
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
            let output = self
                .pg_ctl()?
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

    /// `pg_ctl -D <data dir>`, run as the cluster's user in its directory.
    fn pg_ctl(&self) -> Result<Command> {
        let mut cmd = self.run_as.command(&self.pg_ctl, self.dir_path()?);
        cmd.arg("-D").arg(&self.data_dir);
        Ok(cmd)
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
        let output = self
            .pg_ctl()?
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
