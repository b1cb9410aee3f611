//! Environment variables understood by the harness: those that choose the
//! server (from [`aepg_pgserver::env_vars`]) and those about tests.

pub use aepg_pgserver::env_vars::*;

/// When set to `1`/`true`, test databases are not dropped (for debugging).
pub const KEEP_DATABASES: &str = "AEPG_TEST_KEEP_DATABASES";

/// Major version the smoke test expects (e.g. `15`); unset means "any".
pub const EXPECT_PG_MAJOR: &str = "AEPG_TEST_EXPECT_PG_MAJOR";

/// Whether `name` is set to a truthy value (`1`, `true`, `yes`, `on`).
pub(crate) fn flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| {
        matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "1" | "true" | "yes" | "on"
        )
    })
}

/// Where the fixture's master key lives: `memory` (the default),
/// `pkcs11`, a SoftHSM2 token (SoftHSM2 installed; `SOFTHSM2_CONF`, when
/// set, is the configuration its tokens go in), or `azure-key-vault`, the
/// local Key Vault test server (`kvserver/`).
pub const MASTER_KEY_STORE: &str = "AEPG_TEST_MASTER_KEY_STORE";

/// With `MASTER_KEY_STORE=azure-key-vault`: a real Key Vault key's
/// identifier (with its version) to use instead of the local test server,
/// with `AZURE_TENANT_ID`, `AZURE_CLIENT_ID` and `AZURE_CLIENT_SECRET` (or
/// the machine's managed identity). Tests that revoke the key need the
/// test server.
pub const AZURE_KEY_ID: &str = "AEPG_TEST_AZURE_KEY_ID";
