//! Conformance with Microsoft's own client: runs `tests/sdk_conformance.py`,
//! which drives the `aepg-kvserver` binary with the unmodified
//! `azure-keyvault-keys` Python SDK.
//!
//! Needs Python 3 with the SDK: `pip install azure-keyvault-keys`. Set
//! `PYTHON` to choose the interpreter (default `python3`).
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Stops the server when the test ends, however it ends.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn azure_python_sdk_conforms() {
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let probe = Command::new(&python)
        .args(["-c", "import azure.keyvault.keys"])
        .output();
    match probe {
        Err(error) => panic!(
            "cannot run {python} ({error}): this test needs Python 3 with Microsoft's Key Vault \
             SDK; install it with `pip install azure-keyvault-keys` (or set PYTHON)"
        ),
        Ok(output) if !output.status.success() => panic!(
            "{python} cannot import azure.keyvault.keys: run `pip install azure-keyvault-keys` \
             (or set PYTHON to an interpreter that has it)\n{}",
            String::from_utf8_lossy(&output.stderr)
        ),
        Ok(_) => {}
    }

    let dir = tempfile::tempdir().unwrap();
    let info = dir.path().join("info.json");
    let mut server = Server(
        Command::new(env!("CARGO_BIN_EXE_aepg-kvserver"))
            .arg("--info")
            .arg(&info)
            .args(["--key", "sdk-key", "--disabled-key", "disabled-key"])
            // Also exits when this process dies and the pipe closes.
            .arg("--exit-on-stdin-eof")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // The binary writes the info file last, atomically, once it is serving.
    let deadline = Instant::now() + Duration::from_secs(120);
    while !info.exists() {
        if let Some(status) = server.0.try_wait().unwrap() {
            panic!("aepg-kvserver exited before it was ready: {status}");
        }
        assert!(
            Instant::now() < deadline,
            "aepg-kvserver did not write {}",
            info.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdk_conformance.py");
    let output = Command::new(&python)
        .arg(&script)
        .arg(&info)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .unwrap();
    println!("{}", String::from_utf8_lossy(&output.stdout));
    eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    assert!(
        output.status.success(),
        "the Azure SDK conformance script failed ({}); see its output above",
        output.status
    );
}
