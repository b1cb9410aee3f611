//! The command line, as clap reads it.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// aepg: administer client-side column encryption for PostgreSQL.
///
/// Every command connects to the database (`--database-url`, else
/// `DATABASE_URL`, else `database_url` in the config file) and, where it
/// signs or verifies catalog records, uses the key stores of the config
/// file and `--key-dir`. Exit status: 0 success, 1 the operation failed,
/// 2 a usage or configuration error.
#[derive(Debug, Parser)]
#[command(name = "aepg", version, propagate_version = true)]
pub struct Cli {
    /// The connection: a libpq `key=value` string or a `postgres://` URL.
    #[arg(long, global = true, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// The config file [default: ./aepg.toml when it exists].
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// A directory of PEM master keys (a `local` key store), in addition to
    /// the config file's.
    #[arg(long, global = true, value_name = "DIR")]
    pub key_dir: Option<PathBuf>,
    /// A key path in `--key-dir` this run may use (repeat it); every
    /// `*.pem` file in it when omitted.
    #[arg(long, global = true, value_name = "FILE")]
    pub trust: Vec<String>,
    /// Print JSON instead of text (field names are stable, see docs/CLI.md).
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Install the aepg catalog (schema `aepg`), or upgrade an older one.
    Init,
    /// Column master keys.
    #[command(subcommand)]
    Cmk(CmkCommand),
    /// Column encryption keys.
    #[command(subcommand)]
    Cek(CekCommand),
    /// Column encryption settings.
    #[command(subcommand)]
    Setting(SettingCommand),
    /// Encrypted columns.
    #[command(subcommand)]
    Column(ColumnCommand),
    /// Key rotation.
    #[command(subcommand)]
    Rotate(RotateCommand),
    /// The catalog: identity, generation, keys, settings, columns, and the
    /// records left out.
    Status,
    /// What aepg does with a statement: each parameter's target column,
    /// setting, mode and key, or the refusal; each result column's
    /// decryption.
    Explain {
        /// The statement, with `$n` parameters.
        sql: String,
    },
    /// Load and verify the whole catalog and report every record that
    /// fails, changing nothing. Exits 1 when any fails.
    Verify,
}

/// `aepg cmk …`
#[derive(Debug, Subcommand)]
pub enum CmkCommand {
    /// Register a master key in the catalog, under a name.
    Register {
        /// The name records refer to it by.
        name: String,
        #[command(flatten)]
        location: LocationArgs,
        /// Create the key first if it does not exist (a 3072-bit RSA key):
        /// a key file (`local`), or a key pair generated inside the token,
        /// not extractable (`pkcs11`). Its path must be trusted already:
        /// in the config file's `trusted`, or given with `--trust`.
        #[arg(long)]
        generate: bool,
    },
    /// List the registered master keys and their manifests.
    List,
}

/// `aepg rotate …`
#[derive(Debug, Subcommand)]
pub enum RotateCommand {
    /// Replace a column master key by another, without re-encrypting any
    /// cell: `start`, then, once every application holds the new key,
    /// `complete`.
    #[command(subcommand)]
    Cmk(CmkRotation),
    /// Replace a setting's column key by a new one, re-encrypting every
    /// cell of its columns online: `start` (resumable), `status`, then
    /// `complete`, which switches every application to the new key and
    /// retires the old one (`cek drop` deletes it).
    #[command(subcommand)]
    Cek(CekRotation),
}

/// `aepg rotate cek …`
#[derive(Debug, Subcommand)]
pub enum CekRotation {
    /// Make the new column key (under the master keys of the old one) the
    /// first time, and re-encrypt every cell of the setting's columns into
    /// shadow columns while applications keep using the old key. Kill it
    /// and re-run it at any point: it continues.
    Start(CekRotationArgs),
    /// Where the rotation is: per column, its phase and the cells done and
    /// left.
    Status {
        /// The setting whose key is rotated.
        #[arg(long)]
        setting: String,
    },
    /// Re-encrypt what `start` left (all of it if `start` was not run),
    /// then swap: for the grace period clients wait for the setting's
    /// tables, then one transaction gives every column its new cells, signs
    /// the setting naming the new key; the old key is retired (`cek drop`
    /// deletes it once no cell names it).
    Complete(CekRotationArgs),
}

/// The setting of a column key rotation, and how its migrations run.
#[derive(Debug, Args)]
pub struct CekRotationArgs {
    /// The setting whose key is rotated.
    #[arg(long)]
    pub setting: String,
    /// How the cells are re-encrypted and swapped.
    #[command(flatten)]
    pub migration: MigrationArgs,
}

/// `aepg rotate cmk …`
#[derive(Debug, Subcommand)]
pub enum CmkRotation {
    /// Wrap every column key under the old master key also under the new
    /// one, and have both sign every record: clients holding either key
    /// work. Needs both keys. Re-run it to cover column keys created since.
    Start(CmkRotationArgs),
    /// Remove the old master key's wrapped values, signatures, manifest and
    /// registration: afterwards clients need only the new key, and the old
    /// one can be destroyed. Needs the new key only.
    Complete(CmkRotationArgs),
}

/// The two master keys of a rotation.
#[derive(Debug, Args)]
pub struct CmkRotationArgs {
    /// The master key being retired (its registered name).
    #[arg(long)]
    pub from: String,
    /// The master key replacing it, registered first with `cmk register`.
    #[arg(long)]
    pub to: String,
    /// Where the new master key is (checked against its registration).
    #[command(flatten)]
    pub location: LocationArgs,
}

/// Where a master key is.
#[derive(Debug, Args)]
pub struct LocationArgs {
    /// The key store provider.
    #[arg(long, default_value = "local")]
    pub provider: String,
    /// The key's path in its store (a file name in the key directory for
    /// `local`) [default: the config file's `[[master_keys]]` entry].
    #[arg(long, value_name = "KEY_PATH")]
    pub path: Option<String>,
}

/// `aepg cek …`
#[derive(Debug, Subcommand)]
pub enum CekCommand {
    /// Create a column key, wrapped and signed by a master key.
    Create {
        /// The master key's name.
        #[arg(long)]
        cmk: String,
        #[command(flatten)]
        location: LocationArgs,
    },
    /// List the column keys, their master keys and the settings using them.
    List,
    /// Drop a column key no setting uses.
    Drop {
        /// The column key's id.
        id: u32,
    },
}

/// `aepg setting …`
#[derive(Debug, Subcommand)]
pub enum SettingCommand {
    /// Create a column encryption setting.
    Create(NewSettingArgs),
    /// List the settings.
    List,
}

/// `aepg setting create …`
#[derive(Debug, Args)]
pub struct NewSettingArgs {
    /// Its unique name.
    pub name: String,
    /// The plaintext type (`text`, `varchar(20)`, `numeric(10,2)`,
    /// `int4[]`, `citext`, …).
    #[arg(
        long = "type",
        value_name = "SQL_TYPE",
        required_unless_present = "enum_name"
    )]
    pub sql_type: Option<String>,
    /// An enum type's name (its labels in `--labels`) instead of `--type`.
    #[arg(
        long = "enum",
        value_name = "NAME",
        conflicts_with = "sql_type",
        requires = "labels"
    )]
    pub enum_name: Option<String>,
    /// The enum's labels, in order, comma-separated.
    #[arg(long, value_delimiter = ',', requires = "enum_name")]
    pub labels: Vec<String>,
    /// Deterministic (equality works, equal values show) or randomized.
    #[arg(long, value_enum)]
    pub mode: Mode,
    /// The column key.
    #[arg(long)]
    pub cek: u32,
    /// Padding [default: `block16` for variable-length types, `none` otherwise].
    #[arg(long, value_enum)]
    pub padding: Option<Padding>,
}

/// `aepg column …`
#[derive(Debug, Subcommand)]
pub enum ColumnCommand {
    /// Make an empty `aepg.ciphertext` column encrypted under a setting.
    Assign {
        /// `table` or `schema.table` (`public` when unqualified).
        #[arg(long)]
        table: String,
        /// The column.
        #[arg(long)]
        column: String,
        /// The setting's name.
        #[arg(long)]
        setting: String,
    },
    /// Encrypt a column of plaintext values in place, while applications
    /// keep using it; resumes a run that stopped (re-run the same command).
    Encrypt {
        /// `table` or `schema.table` (`public` when unqualified).
        #[arg(long)]
        table: String,
        /// The column.
        #[arg(long)]
        column: String,
        /// The setting to encrypt it under (its type must be the column's).
        #[arg(long)]
        setting: String,
        #[command(flatten)]
        migration: MigrationArgs,
    },
    /// Decrypt an encrypted column in place: the reverse of `encrypt`.
    Decrypt {
        /// `table` or `schema.table` (`public` when unqualified).
        #[arg(long)]
        table: String,
        /// The column.
        #[arg(long)]
        column: String,
        #[command(flatten)]
        migration: MigrationArgs,
    },
    /// Abandon a column's encryption or decryption that has not swapped:
    /// drop its trigger and shadow column, leave the column as it was.
    Abort {
        /// `table` or `schema.table` (`public` when unqualified).
        #[arg(long)]
        table: String,
        /// The column.
        #[arg(long)]
        column: String,
        /// Seconds to wait for the table's lock.
        #[arg(long, default_value_t = 2.0, value_name = "SECONDS")]
        lock_timeout: f64,
    },
    /// List the encrypted columns and whether this run can use them.
    Status {
        /// Only this table (`table` or `schema.table`).
        #[arg(long)]
        table: Option<String>,
    },
}

/// How a column migration runs.
#[derive(Debug, Args)]
pub struct MigrationArgs {
    /// Rows converted per transaction.
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u32).range(1..))]
    pub batch_size: u32,
    /// Seconds between telling clients the column is being swapped and the
    /// swap: at least the catalog TTL of clients that do not hear catalog
    /// announcements (see docs/OPERATIONS.md).
    #[arg(long, default_value_t = 5.0, value_name = "SECONDS")]
    pub grace: f64,
    /// Seconds the swap waits for the table's lock before it lets go and
    /// tries again.
    #[arg(long, default_value_t = 2.0, value_name = "SECONDS")]
    pub lock_timeout: f64,
    /// How many times the swap tries to take the table's lock.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub swap_attempts: u32,
}

/// Encryption modes.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Mode {
    /// Equal values give equal cells: `=`, `IN`, joins, `UNIQUE` work.
    Deterministic,
    /// Every cell differs: nothing but storing and reading.
    Randomized,
}

/// Padding policies.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Padding {
    /// None: the cell shows the exact length.
    None,
    /// To a multiple of 16 bytes.
    Block16,
    /// To a power of two.
    Bucket,
}
