//! `aepg-kvserver`: runs the Azure Key Vault test server until killed.
//!
//! ```text
//! aepg-kvserver --info FILE [--key NAME]... [--disabled-key NAME]...
//!               [--key-size BITS] [--token-lifetime SECS] [--exit-on-stdin-eof]
//! ```
//!
//! Creates the named RSA keys, writes the CA certificate next to `FILE` and
//! then `FILE` itself (atomically, so its appearance means the server is
//! ready), a JSON object with `vault_url`, `ca_file`, `tenant`, `client_id`,
//! `client_secret`, `token` (a pre-issued bearer token), `token_endpoint`,
//! `imds_endpoint` and `keys` (name to key id), and serves until SIGINT,
//! SIGTERM or, with `--exit-on-stdin-eof`, the end of standard input.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use aepg_kvserver::{KeyVaultServer, ServerConfig};
use serde_json::json;

const USAGE: &str = "usage: aepg-kvserver --info FILE [--key NAME]... [--disabled-key NAME]... \
                     [--key-size BITS] [--token-lifetime SECS] [--exit-on-stdin-eof]";

struct Options {
    info: PathBuf,
    keys: Vec<String>,
    disabled_keys: Vec<String>,
    key_size: usize,
    token_lifetime_secs: u64,
    exit_on_stdin_eof: bool,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Options, String> {
    let mut info = None;
    let mut options = Options {
        info: PathBuf::new(),
        keys: Vec::new(),
        disabled_keys: Vec::new(),
        key_size: 2048,
        token_lifetime_secs: ServerConfig::default().token_lifetime_secs,
        exit_on_stdin_eof: false,
    };
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--info" => info = Some(PathBuf::from(value()?)),
            "--key" => options.keys.push(value()?),
            "--disabled-key" => options.disabled_keys.push(value()?),
            "--key-size" => {
                options.key_size = value()?
                    .parse()
                    .map_err(|_| "--key-size needs a number".to_owned())?;
            }
            "--token-lifetime" => {
                options.token_lifetime_secs = value()?
                    .parse()
                    .map_err(|_| "--token-lifetime needs a number of seconds".to_owned())?;
            }
            "--exit-on-stdin-eof" => options.exit_on_stdin_eof = true,
            // An empty message asks for the usage alone.
            "--help" | "-h" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    options.info = info.ok_or("--info FILE is required")?;
    if ![2048, 3072, 4096].contains(&options.key_size) {
        return Err("--key-size must be 2048, 3072 or 4096".to_owned());
    }
    let valid_name = |name: &String| {
        (1..=127).contains(&name.len())
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if let Some(bad) = options
        .keys
        .iter()
        .chain(&options.disabled_keys)
        .find(|name| !valid_name(name))
    {
        return Err(format!(
            "invalid key name {bad:?}: use 1-127 letters, digits and dashes"
        ));
    }
    Ok(options)
}

/// Writes `contents` to `path` through a temporary file and a rename, so
/// readers never see a partial file.
fn write_atomically(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    std::fs::write(&temporary, contents)?;
    std::fs::rename(&temporary, path)
}

/// `info.json` -> `info.ca.pem`, in the same directory.
fn ca_path(info: &Path) -> PathBuf {
    let stem = info
        .file_stem()
        .map_or_else(|| "kvserver".into(), |s| s.to_string_lossy().into_owned());
    info.with_file_name(format!("{stem}.ca.pem"))
}

async fn run(options: Options) -> std::io::Result<()> {
    let server = KeyVaultServer::start(ServerConfig {
        token_lifetime_secs: options.token_lifetime_secs,
    })
    .await?;
    let mut keys = BTreeMap::new();
    for name in &options.keys {
        keys.insert(name.clone(), server.create_key(name, options.key_size));
    }
    for name in &options.disabled_keys {
        keys.insert(name.clone(), server.create_key(name, options.key_size));
        server.disable_key(name);
    }
    let ca_file = ca_path(&options.info);
    write_atomically(&ca_file, server.ca_certificate_pem().as_bytes())?;
    let ca_file = std::fs::canonicalize(&ca_file)?;
    let info = json!({
        "vault_url": server.vault_url(),
        "ca_file": ca_file,
        "tenant": server.tenant(),
        "client_id": server.client_id(),
        "client_secret": server.client_secret(),
        "token": server.valid_token(),
        "token_endpoint": server.token_endpoint(),
        "imds_endpoint": server.imds_endpoint(),
        "keys": keys,
    });
    write_atomically(
        &options.info,
        serde_json::to_string_pretty(&info)?.as_bytes(),
    )?;
    println!("aepg-kvserver listening at {}", server.vault_url());

    wait_for_shutdown(options.exit_on_stdin_eof).await;
    Ok(())
}

async fn wait_for_shutdown(exit_on_stdin_eof: bool) {
    let stdin_eof = async {
        if exit_on_stdin_eof {
            let mut sink = tokio::io::sink();
            let _ = tokio::io::copy(&mut tokio::io::stdin(), &mut sink).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
        () = stdin_eof => {}
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let options = match parse_args(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(message) => {
            if message.is_empty() {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            eprintln!("aepg-kvserver: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(options).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("aepg-kvserver: {error}");
            ExitCode::FAILURE
        }
    }
}
