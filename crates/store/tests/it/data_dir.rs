//! A new data directory is private: the directory 0700, the database and the files SQLite makes
//! beside it (WAL, shared memory) 0600, whatever the process umask; an existing world-readable
//! directory and database are tightened when the store opens them.

#![cfg(unix)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use musubi_store::{SQLITE_FILE, Store};

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())).permissions().mode() & 0o777
}

#[test]
fn a_new_data_directory_is_0700_and_its_files_0600() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("nested").join("musubi-data");
    let store = Store::open_sqlite(&data).unwrap();
    // A write makes SQLite create the WAL and shared-memory files.
    store.put_setting("test.mode".into(), "1".into()).unwrap();
    assert_eq!(mode(&data), 0o700, "data directory");
    for name in [SQLITE_FILE.to_owned(), format!("{SQLITE_FILE}-wal"), format!("{SQLITE_FILE}-shm")] {
        let p = data.join(&name);
        assert!(p.exists(), "{name} exists");
        assert_eq!(mode(&p), 0o600, "{name}");
    }
    // Files written beside the database by the other parts (anchors, quarantine) use the same
    // helpers.
    let q = data.join("quarantine");
    musubi_store::private_dir(&q).unwrap();
    drop(musubi_store::private_create(&q.join("import-1.ndjson")).unwrap());
    drop(musubi_store::private_append(&data.join("audit-anchors.log")).unwrap());
    assert_eq!(mode(&q), 0o700);
    assert_eq!(mode(&q.join("import-1.ndjson")), 0o600);
    assert_eq!(mode(&data.join("audit-anchors.log")), 0o600);
}

#[test]
fn an_existing_world_readable_data_directory_is_tightened() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("old-data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(data.join(SQLITE_FILE), b"").unwrap();
    std::fs::set_permissions(data.join(SQLITE_FILE), std::fs::Permissions::from_mode(0o644)).unwrap();
    let _store = Store::open_sqlite(&data).unwrap();
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join(SQLITE_FILE)), 0o600);
}
