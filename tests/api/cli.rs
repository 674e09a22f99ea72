//! The binary: configuration errors exit with 64 naming the setting; `openapi` prints a
//! document; `migrate` prepares a database.

use std::process::Command;

fn bin() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_stateset-voice"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    cmd
}

#[test]
fn invalid_configuration_exits_64_naming_the_setting() {
    for (name, value) in [
        ("BIND_ADDR", "not-an-address"),
        ("DATABASE_URL", "mysql://localhost/x"),
        ("ADMIN_API_KEY", "short"),
        ("LOG_FORMAT", "xml"),
        ("RATE_LIMIT_PER_TENANT_PER_MINUTE", "0"),
    ] {
        let out = bin().arg("serve").env(name, value).output().expect("run");
        assert_eq!(out.status.code(), Some(64), "{name}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(name), "{name}: {stderr}");
        assert!(
            !stderr.contains(value) || name != "ADMIN_API_KEY",
            "secret echoed: {stderr}"
        );
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "bind_addr = [1, 2]\n").expect("write");
    let out = bin()
        .args(["--config"])
        .arg(&file)
        .arg("serve")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bind_addr"));
}

#[test]
fn openapi_command_prints_each_document() {
    for (which, must, must_not) in [
        ("public", "/api/v1/me", Some("/api/v1/admin/")),
        ("admin", "/api/v1/admin/tenants", Some("/api/v1/me")),
        ("full", "/api/v1/admin/tenants", None),
    ] {
        let out = bin().args(["openapi", which]).output().expect("run");
        assert!(out.status.success());
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        assert!(doc["openapi"].as_str().expect("version").starts_with("3.1"));
        let paths = doc["paths"].as_object().expect("paths");
        assert!(paths.contains_key(must), "{which}");
        if let Some(no) = must_not {
            assert!(paths.keys().all(|p| !p.starts_with(no)), "{which}");
        }
    }
}

#[test]
fn migrate_creates_the_sqlite_database() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("sub/dir/voice.db");
    let out = bin()
        .arg("migrate")
        .env("DATABASE_URL", format!("sqlite://{}", db.display()))
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(db.exists());
}
