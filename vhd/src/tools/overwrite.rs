//! Refusing to create or truncate a file that an operation reads from: the output of
//! `convert` or `create_differencing` must be none of the files it takes data from
//! (the input and every image of its chain), whatever path names them.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::error::{Error, Result};

/// The file `path` names, as (device, inode): the same for every path that leads to
/// it (symbolic links are followed; hard links share the inode). `None` when nothing
/// exists there yet.
fn identity(path: &Path) -> Result<Option<(u64, u64)>> {
    match std::fs::metadata(path) {
        Ok(m) => Ok(Some((m.dev(), m.ino()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(format!("examining {}", path.display()), e)),
    }
}

/// Refuses `output` when it is the same file as one of `inputs`, before anything is
/// written: creating the output would truncate the data it is to be made from.
pub(crate) fn refuse_overwrite<'a>(
    output: &Path,
    inputs: impl IntoIterator<Item = &'a Path>,
) -> Result<()> {
    let Some(out) = identity(output)? else {
        return Ok(());
    };
    for input in inputs {
        if identity(input)? == Some(out) {
            return Err(Error::WouldOverwrite {
                output: output.to_path_buf(),
                input: input.to_path_buf(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_file_by_any_path_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        std::fs::write(&a, b"data").unwrap();
        std::fs::hard_link(&a, dir.path().join("hard")).unwrap();
        std::os::unix::fs::symlink(&a, dir.path().join("soft")).unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        for same in ["a", "hard", "soft", "sub/../a", "./a"] {
            let out = dir.path().join(same);
            let err = refuse_overwrite(&out, [a.as_path()]).unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::InvalidInput, "{same}");
        }
        std::fs::write(dir.path().join("b"), b"data").unwrap();
        refuse_overwrite(&dir.path().join("b"), [a.as_path()]).unwrap();
        refuse_overwrite(&dir.path().join("new"), [a.as_path()]).unwrap();
        assert_eq!(std::fs::read(&a).unwrap(), b"data");
    }
}
