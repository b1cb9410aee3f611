//! Shared real-PostgreSQL test harness for aepg's end-to-end suites.
//!
//! # Getting a server
//!
//! The first test that needs a database finds or starts one PostgreSQL
//! server for the whole test binary through [`aepg_pgserver`]: an existing
//! server named by `AEPG_TEST_DATABASE_URL`, else a Docker container (image
//! `AEPG_TEST_PG_IMAGE`), else a throwaway local `initdb` cluster.
//! `AEPG_TEST_BACKEND=url|container|local` forces one backend and fails
//! loudly when it is unusable. The choice, and why earlier backends were
//! skipped, is logged to stderr (`cargo test -- --nocapture` to see it).
//! See [`aepg_pgserver`] for the details and for how servers are cleaned up
//! once the test process has exited.
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

mod database;
mod dedicated;
pub mod env_vars;
pub mod faults;
pub mod fixture;
pub mod key_store;
mod wire_tap;
pub mod workload;

pub use aepg_pgserver::{
    container_image, BackendKind, Error as HarnessError, ErrorKind as HarnessErrorKind, Result,
    ServerInfo,
};
pub use database::TestDatabase;
pub use dedicated::DedicatedServer;
pub use wire_tap::WireTap;

/// Information about the process-wide shared server, starting it if needed.
pub async fn shared_server_info() -> Result<ServerInfo> {
    aepg_pgserver::Server::shared()
        .await
        .map(|server| server.info().clone())
}
