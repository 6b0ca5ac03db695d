//! The operator's side of TLS and token lifetimes: plain HTTP is refused off loopback, bad TLS
//! files (and bad signature CRL files) stop the start with a clear error, tokens are issued with
//! an expiry and rotated.

use std::process::{Command, Output};

use musubi_store::Store;

fn musubi(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_musubi")).env("MUSUBI_LOG", "warn").args(args).output().unwrap()
}

/// `musubi serve` with an audit key made outside the data directory (the server needs one).
fn serve(data: &str, args: &[&str]) -> Output {
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("audit.key");
    let key = key.to_str().unwrap();
    let out = musubi(&["audit", "keygen", "--out", key, "--data", data]);
    assert!(out.status.success(), "{}", stderr(&out));
    Command::new(env!("CARGO_BIN_EXE_musubi"))
        .env("MUSUBI_LOG", "warn")
        .env("MUSUBI_AUDIT_KEY", key)
        .args(["serve", "--data", data])
        .args(args)
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn plain_http_is_refused_off_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let out = serve(data, &["--listen", "0.0.0.0:0"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("refusing to serve plain HTTP"), "{}", stderr(&out));
}

#[test]
fn unreadable_tls_files_stop_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let missing = dir.path().join("nope.pem");
    let missing = missing.to_str().unwrap();
    let out = serve(data, &["--listen", "127.0.0.1:0", "--tls-cert", missing, "--tls-key", missing]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("cannot read the server certificate"), "{}", stderr(&out));
    // A key without a certificate is a usage error.
    let out = serve(data, &["--tls-key", missing]);
    assert!(!out.status.success());
}

#[test]
fn unreadable_signature_crls_stop_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let junk = dir.path().join("hpki.crl");
    std::fs::write(&junk, "-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n").unwrap();
    let out = serve(data, &["--listen", "127.0.0.1:0", "--signature-crl", junk.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("cannot load the signature CRLs") && err.contains("hpki.crl"), "{err}");
}

#[test]
fn tokens_expire_and_rotate() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let issue = |name: &str, expires: &str| {
        musubi(&["token", "issue", "--data", data, "--facility", "1318814790", "--name", name, "--expires", expires])
    };
    let bad = issue("emr", "90");
    assert!(!bad.status.success() && stderr(&bad).contains("--expires"), "{}", stderr(&bad));
    let before = musubi_fhir::datetime::now_ms();
    let out = issue("emr", "90d");
    assert!(out.status.success(), "{}", stderr(&out));
    let first = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    // The same name again while the first is active: refused.
    assert!(!issue("emr", "90d").status.success());

    let out = musubi(&["token", "rotate", "--data", data, "emr", "--expires", "30d", "--overlap", "0m"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let second = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert_ne!(first, second);
    let out = musubi(&["token", "rotate", "--data", data, "nobody"]);
    assert!(!out.status.success());

    let list = musubi(&["token", "list", "--data", data]);
    let list = String::from_utf8(list.stdout).unwrap();
    assert!(list.contains("expired") && list.contains("active"), "{list}");

    let store = Store::open_sqlite(dir.path()).unwrap();
    let now = musubi_fhir::datetime::now_ms();
    let old = store.read(|r| r.token(&musubi_server::auth::token_hash(&first))).unwrap().unwrap();
    let new = store.read(|r| r.token(&musubi_server::auth::token_hash(&second))).unwrap().unwrap();
    assert!(!old.active_at(now), "the old secret ended at the rotation");
    assert_eq!(new.facility.as_deref(), Some("1318814790"));
    let expires = new.expires.unwrap();
    assert!(expires >= before + 30 * 86_400_000 && expires <= now + 30 * 86_400_000);
}
