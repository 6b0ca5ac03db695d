//! The data directory is private to the server's user: the directory 0700, every file in it
//! 0600 (the database, its WAL and shared-memory files, keys, anchors, quarantined input). An
//! existing directory or database file is tightened when the store opens it.

use std::io;
use std::path::Path;

/// Creates `dir` (and missing parents) as 0700, and makes an existing `dir` 0700.
pub fn private_dir(dir: &Path) -> io::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir)?;
    tighten(dir, 0o700);
    Ok(())
}

/// Opens `path` for appending, creating it as 0600 (an existing file is made 0600).
pub fn private_append(path: &Path) -> io::Result<std::fs::File> {
    let f = private_options().append(true).open(path)?;
    tighten(path, 0o600);
    Ok(f)
}

/// Creates (or truncates) `path` as 0600 for writing.
pub fn private_create(path: &Path) -> io::Result<std::fs::File> {
    let f = private_options().write(true).truncate(true).open(path)?;
    tighten(path, 0o600);
    Ok(f)
}

fn private_options() -> std::fs::OpenOptions {
    let mut o = std::fs::OpenOptions::new();
    o.create(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o
}

/// Makes an existing file or directory `mode` (no group or other access) if it is wider. A
/// failure (not the owner) is logged, not fatal: the operator may have set it up differently.
pub fn tighten(path: &Path, mode: u32) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let Ok(meta) = std::fs::metadata(path) else { return };
        if meta.permissions().mode() & 0o077 != 0
            && let Err(e) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        {
            tracing::warn!(path = %path.display(), error = %e, "cannot restrict the permissions");
        }
    }
    #[cfg(not(unix))]
    let _ = (path, mode);
}
