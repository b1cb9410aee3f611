//! The `local` backend: a throwaway cluster made with `initdb` and run with
//! `pg_ctl`, in a temporary directory that is removed afterwards.
//!
//! * Binaries: `initdb` and `pg_ctl` from `AEPG_TEST_PG_BINDIR`, else from
//!   `PATH`, else from the newest `/usr/lib/postgresql/*/bin` (Debian) or
//!   `/usr/pgsql-*/bin` (RHEL).
//! * Root: `initdb` refuses to run as root. When the effective uid is 0 the
//!   backend runs `initdb`/`pg_ctl` as the `postgres` OS user (or
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
//!
//! * [`binaries`]: finding `initdb` and `pg_ctl`;
//! * [`os_user`]: which OS user runs them, and how to switch to it;
//! * [`cluster`]: creating, starting, stopping and removing the cluster.

mod binaries;
mod cluster;
mod os_user;

pub(crate) use self::cluster::LocalCluster;
