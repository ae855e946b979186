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

#[cfg(test)]
thread_local! {
    /// The directories this thread fsynced, oldest first.
    static SYNCED: std::cell::RefCell<Vec<std::path::PathBuf>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The directories this thread has fsynced so far (for tests that check
/// which directory a change made durable).
#[cfg(test)]
pub(crate) fn synced_dirs() -> Vec<std::path::PathBuf> {
    SYNCED.with(|s| s.borrow().clone())
}

/// Makes the name `path` has in its directory durable (after a create, a
/// rename to it or a removal of it).
pub fn sync_parent(path: &Path) -> io::Result<()> {
    let dir = parent(path);
    #[cfg(test)]
    SYNCED.with(|s| s.borrow_mut().push(dir.to_path_buf()));
    File::open(dir)?.sync_all()
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

    /// A follower's snapshot install renames the restored backend into
    /// `<dir>/snap/`: that directory must be fsynced (it synced `<dir>`).
    #[test]
    fn a_snapshot_install_syncs_the_directory_the_backend_lands_in() {
        let from = tempfile::tempdir().unwrap();
        let mut bytes = Vec::new();
        crate::snapshot::write_snapshot(&crate::StateMachine::open(from.path(), 2).unwrap(), &mut bytes).unwrap();
        let to = tempfile::tempdir().unwrap();
        let mut restored = crate::StateMachine::open(to.path(), 2).unwrap();
        let before = synced_dirs().len();
        restored.replace_from_snapshot(&bytes).unwrap();
        let synced = synced_dirs().split_off(before);
        let landed = to.path().join(crate::apply::BACKEND_FILE);
        assert!(synced.iter().any(|d| Some(d.as_path()) == landed.parent()), "synced {synced:?}");
    }
}
