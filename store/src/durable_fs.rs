//! File-system changes that survive a crash. A file's fsync makes its bytes
//! durable, not its name: a rename, a new file or a new directory is durable
//! only once the directory holding the new name is fsynced too. Every rename
//! into place and every directory the backend and its snapshots create go
//! through here, so the directory synced is always the one that changed.

use std::fs::{DirBuilder, File};
use std::io;
use std::path::Path;

/// The directory holding `path` (`.` for a bare name).
fn parent(path: &Path) -> &Path {
    path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

/// Makes the name `path` has in its directory durable (after a create, a
/// rename to it or a removal of it).
pub fn sync_parent(path: &Path) -> io::Result<()> {
    File::open(parent(path))?.sync_all()
}

/// Renames `from` to `to` durably: both directories whose entries changed are
/// fsynced, the new name's first.
pub fn rename(from: &Path, to: &Path) -> io::Result<()> {
    std::fs::rename(from, to)?;
    sync_parent(to)?;
    if parent(from) != parent(to) {
        sync_parent(from)?;
    }
    Ok(())
}

/// Creates `dir` and whatever of its ancestors is missing, each made durable
/// in its parent, with `builder`'s permissions.
pub fn create_dir_all_with(builder: &DirBuilder, dir: &Path) -> io::Result<()> {
    if dir.as_os_str().is_empty() || dir.is_dir() {
        return Ok(());
    }
    create_dir_all_with(builder, parent(dir))?;
    match builder.create(dir) {
        Ok(()) => sync_parent(dir),
        // Created meanwhile by someone else, who makes it durable.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(e) => Err(e),
    }
}

/// [`create_dir_all_with`] default permissions.
pub fn create_dir_all(dir: &Path) -> io::Result<()> {
    create_dir_all_with(&DirBuilder::new(), dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_nested_directories_and_renames_across_them() {
        let root = tempfile::tempdir().unwrap();
        let deep = root.path().join("a/b/c");
        create_dir_all(&deep).unwrap();
        create_dir_all(&deep).unwrap();
        assert!(deep.is_dir());
        std::fs::write(root.path().join("a/f"), b"x").unwrap();
        rename(&root.path().join("a/f"), &deep.join("f")).unwrap();
        assert_eq!(std::fs::read(deep.join("f")).unwrap(), b"x");
        assert!(create_dir_all(&deep.join("f/g")).is_err(), "a file is in the way");
    }
}
