//! Issue 12 (point 7) for the binary: `musubi serve` makes a new data directory 0700 with every
//! file in it 0600 (database, WAL, admin token, secrets key); no secret on a command line
//! (`musubi totp` reads standard input, a password in `--database` is refused) and none printed
//! by `--help`.

#![cfg(unix)]

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

fn musubi() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_musubi"));
    c.env("MUSUBI_LOG", "warn");
    c
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())).permissions().mode() & 0o777
}

#[test]
fn serve_makes_a_new_data_directory_private() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("musubi-data");
    // The server needs an audit key outside the data directory.
    let key = tmp.path().join("audit.key");
    let out = musubi()
        .args(["audit", "keygen", "--out", key.to_str().unwrap(), "--data", data.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut child = musubi()
        .env("MUSUBI_AUDIT_KEY", &key)
        .args(["serve", "--data", data.to_str().unwrap(), "--listen", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The server says where it listens once it does (no polling, no sleeping): read it.
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(child.stderr.take().unwrap()));
    let base = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|l| {
            let at = l.find("Musubi FHIR API: http://")? + "Musubi FHIR API: ".len();
            let rest = &l[at..];
            Some(rest[..rest.find("/fhir")? + "/fhir".len()].to_owned())
        })
        .expect("the server did not start");
    // Keep draining what it writes later, so that it never writes into a closed pipe.
    std::thread::spawn(move || lines.for_each(drop));
    // Discovery answers without a token.
    let r = reqwest::blocking::get(format!("{base}/metadata")).unwrap();
    assert_eq!(r.status(), 200);
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(mode(&data), 0o700, "data directory");
    for name in ["musubi.db", "musubi.db-wal", "admin-token", "secrets.key"] {
        let p = data.join(name);
        if name.ends_with("-wal") && !p.exists() {
            continue; // checkpointed away
        }
        assert_eq!(mode(&p), 0o600, "{name}");
    }
}

#[test]
fn no_secret_on_a_command_line_or_in_help() {
    // `musubi totp` reads the secret from standard input.
    let mut child = musubi().arg("totp").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    child.stdin.as_mut().unwrap().write_all(b"JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let code = String::from_utf8(out.stdout).unwrap();
    assert_eq!(code.trim().len(), 6, "{code}");
    // A password in --database is refused before anything is opened.
    let tmp = tempfile::tempdir().unwrap();
    let out = musubi()
        .args(["token", "list", "--data", tmp.path().to_str().unwrap()])
        .args(["--database", "postgres://musubi:s3cret@127.0.0.1:1/musubi"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("MUSUBI_DATABASE_URL"));
    // --help never shows the database URL from the environment.
    for args in [&["serve", "--help"][..], &["token", "list", "--help"][..], &["--help"][..]] {
        let out =
            musubi().args(args).env("MUSUBI_DATABASE_URL", "postgres://musubi:s3cret@db/musubi").output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(!text.contains("s3cret"), "{args:?}: {text}");
    }
}
