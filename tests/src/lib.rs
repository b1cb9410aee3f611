//! Shared real-PostgreSQL test harness for aepg's end-to-end suites.
//!
//! # Getting a server
//!
//! The first test that needs a database starts (or finds) one PostgreSQL
//! server for the whole test binary, trying in order:
//!
//! 1. **`url`** — `AEPG_TEST_DATABASE_URL`, a libpq URL or `key=value` string
//!    (as parsed by `tokio_postgres::Config`; no TLS, role needs `CREATEDB`).
//!    If it is set but broken, the harness fails instead of falling back.
//! 2. **`container`** — a Docker container via `testcontainers`, image
//!    `AEPG_TEST_PG_IMAGE` (`name:tag`, default `postgres:17`). The image must
//!    be present locally or pullable (offline: `scripts/build-pg-images.sh`).
//!    Docker engines older than API 1.52 are reached through a small
//!    version-rewriting proxy (see `src/docker_api.rs`).
//! 3. **`local`** — a throwaway `initdb` cluster started with `pg_ctl` on a free
//!    port in a temporary directory (as the `postgres` OS user when running as
//!    root, because `initdb` refuses root).
//!
//! `AEPG_TEST_BACKEND=url|container|local` forces one backend and fails
//! loudly when it is unusable. The choice, and why earlier backends were
//! skipped, is logged to stderr (`cargo test -- --nocapture` to see it).
//!
//! The server lives on a harness-owned Tokio runtime, so it survives the
//! individual `#[tokio::test]` runtimes. It is never dropped (statics are
//! not); a watchdog process removes the container / stops and deletes the
//! cluster once the test process has exited, whichever way it exits.
//!
//! # Per-test databases
//!
//! [`TestDatabase::new`] creates a uniquely named database on the shared
//! server and drops it again when the value is dropped, so tests can run in
//! parallel.
//!
//! # Dedicated servers
//!
//! [`DedicatedServer::start`] starts a separate server with extra settings
//! (container or local backend) whose log and data directory a test can
//! read.
//!
//! # Environment variables
//!
//! See the constants in [`env_vars`].
#![forbid(unsafe_code)]

mod backend;
mod container;
mod database;
mod dedicated;
mod docker_api;
pub mod env_vars;
mod error;
pub mod fixture;
mod local_cluster;
mod pg_config;
mod reaper;
mod runtime;
mod server;

pub use backend::BackendKind;
pub use database::TestDatabase;
pub use dedicated::DedicatedServer;
pub use error::{HarnessError, HarnessErrorKind, Result};
pub use server::{container_image, shared_server_info, ServerInfo};
