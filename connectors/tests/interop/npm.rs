//! Mojaloop's reference components for the cross-implementation tests:
//! the npm packages pinned in `connectors/tests/interop/package.json`
//! (`@mojaloop/sdk-standard-components`; openapi-backend and js-yaml for
//! validating messages against the FSPIOP OpenAPI file), installed on first
//! use into `$HOME/.cache/payhub-interop` (about 45 s) and reused while the
//! pinned `package.json` is unchanged, and the Node scripts beside it.
//!
//! Shared by the test crates that need it (`#[path]`), so it is one copy.

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use serde_json::Value;

/// This file's directory: `file!()` is relative to the workspace root, the
/// parent of every member's manifest directory (or absolute).
fn interop_dir() -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap_or(Path::new("/"));
    workspace.join(file!()).parent().map(Path::to_path_buf).unwrap_or_default()
}

/// Installs the pinned reference package (once per process, and only when
/// the cached install is missing or stale) and answers its `node_modules`.
fn node_modules() -> PathBuf {
    static INSTALLED: OnceLock<PathBuf> = OnceLock::new();
    INSTALLED
        .get_or_init(|| {
            let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
            let cache = home.join(".cache/payhub-interop");
            std::fs::create_dir_all(&cache).expect("create the interop cache");
            let pinned = std::fs::read(interop_dir().join("package.json")).expect("read package.json");
            let modules = cache.join("node_modules");
            let package = modules.join("@mojaloop/sdk-standard-components/package.json");
            // Tests run in parallel processes: one installs while the others
            // wait (a directory is created atomically or not at all).
            let _lock = InstallLock::take(cache.join("install.lock"));
            let installed = std::fs::read(cache.join("package.json")).ok();
            if installed.as_deref() != Some(pinned.as_slice()) || !package.exists() {
                std::fs::write(cache.join("package.json"), &pinned).expect("write package.json");
                let output = Command::new("npm")
                    .args(["install", "--no-audit", "--no-fund", "--loglevel=error"])
                    .current_dir(&cache)
                    .output()
                    .expect("run npm (Node.js is on every machine of this kind)");
                assert!(
                    output.status.success(),
                    "npm install of the reference package failed:\n{}",
                    String::from_utf8_lossy(&output.stderr)
                );
            }
            modules
        })
        .clone()
}

/// The install lock: a directory, created atomically or not at all, removed
/// when dropped (a panicking install included).
struct InstallLock(PathBuf);

impl InstallLock {
    fn take(path: PathBuf) -> InstallLock {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
        while std::fs::create_dir(&path).is_err() {
            assert!(std::time::Instant::now() < deadline, "{} held for 5 minutes", path.display());
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        InstallLock(path)
    }
}

impl Drop for InstallLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// Runs `tests/interop/{script}` on `input` (JSON on stdin) and answers its
/// JSON output.
pub fn reference(script: &str, input: &Value) -> Value {
    let mut child = Command::new("node")
        .arg(interop_dir().join(script))
        .env("NODE_PATH", node_modules())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run node");
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(input.to_string().as_bytes())
        .expect("write the script's input");
    let output = child.wait_with_output().expect("wait for node");
    assert!(
        output.status.success(),
        "{script} failed on {input}:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!("{script} did not answer JSON ({e}): {}", String::from_utf8_lossy(&output.stdout))
    })
}
