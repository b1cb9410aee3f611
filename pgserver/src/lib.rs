//! Finds or starts a PostgreSQL server: for aepg's test suites and for the
//! quickstart.
//!
//! # Getting a server
//!
//! [`Server::shared`] finds or starts one PostgreSQL server for the whole
//! process, trying in order:
//!
//! 1. **`url`** — `AEPG_TEST_DATABASE_URL`, a libpq URL or `key=value` string
//!    (as parsed by `tokio_postgres::Config`; no TLS, role needs `CREATEDB`).
//!    If it is set but broken, this fails instead of falling back.
//! 2. **`container`** — a Docker container via `testcontainers`, image
//!    `AEPG_TEST_PG_IMAGE` (`name:tag`, default `postgres:17`). The image must
//!    be present locally or pullable (offline: `scripts/build-pg-images.sh`).
//!    Docker engines older than API 1.52 are reached through a small
//!    version-rewriting proxy (see `src/docker/version_proxy.rs`).
//! 3. **`local`** — a throwaway `initdb` cluster started with `pg_ctl` on a free
//!    port in a temporary directory (as the `postgres` OS user when running as
//!    root, because `initdb` refuses root).
//!
//! [`Server::start`] starts a throwaway server of its own with extra
//! settings (container, else local), whose log and data directory can be
//! read; dropping it removes the server.
//!
//! `AEPG_TEST_BACKEND=url|container|local` forces one backend and fails
//! loudly when it is unusable. The choice, and why earlier backends were
//! skipped, is logged to stderr.
//!
//! Servers live on this crate's own Tokio runtime, so they survive the
//! runtime (e.g. a `#[tokio::test]`'s) that started them. The shared server
//! is never dropped (statics are not); a watchdog process removes the
//! container / stops and deletes the cluster once the process has exited,
//! whichever way it exits.
//!
//! # Databases
//!
//! [`Server::create_database`] creates a uniquely named [`Database`].
//!
//! # Environment variables
//!
//! See the constants in [`env_vars`].
#![forbid(unsafe_code)]

mod backend;
mod choice;
mod container;
mod database;
mod docker;
pub mod env_vars;
mod error;
mod fs_copy;
mod launch;
mod local;
mod log;
mod pg_config;
mod reaper;
mod runtime;
mod server;
mod shell;

pub use backend::BackendKind;
pub use container::container_image;
pub use database::Database;
pub use error::{Error, ErrorKind, Result};
pub use server::{Server, ServerInfo};
