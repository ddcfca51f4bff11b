//! A new archive, written aside (`.NAME.partial` next to it) and renamed
//! into place only when complete, for `import` and `simulate --archive`:
//! one that fails leaves nothing behind, one that is interrupted leaves a
//! directory the next attempt names for deletion, and an existing archive
//! (the service's own) is never written into.

use std::path::{Path, PathBuf};

use anyhow::Context;

/// Builds the archive at `out` (given as `flag`) by calling `build` with
/// the directory to write it in; renames that to `out` when `build`
/// succeeds, deletes it when it fails.
pub fn write<T>(
    flag: &str,
    out: &Path,
    build: impl FnOnce(&Path) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    anyhow::ensure!(
        !out.exists(),
        "{flag} {}: exists; this writes a new archive (read it beside the service's with a second --archive)",
        out.display()
    );
    let name = out
        .file_name()
        .ok_or_else(|| anyhow::anyhow!("{flag} {}: not a directory name", out.display()))?;
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    anyhow::ensure!(
        parent.is_dir(),
        "{flag} {}: its parent directory does not exist",
        out.display()
    );
    let partial = parent.join(format!(".{}.partial", name.to_string_lossy()));
    anyhow::ensure!(
        !partial.exists(),
        "{} exists: writing {} was interrupted; delete it and start again",
        partial.display(),
        out.display()
    );
    let done = build(&partial).and_then(|made| {
        std::fs::rename(&partial, out)
            .with_context(|| format!("renaming {} to {}", partial.display(), out.display()))?;
        hazardwatch_storage::txn::sync_dir(&parent)?;
        Ok(made)
    });
    if done.is_err() {
        let _ = std::fs::remove_dir_all(&partial);
    }
    done
}
