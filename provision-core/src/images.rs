//! Image files of the store: importing a base, creating version and private children.

use std::path::Path;

use crate::error::{Error, ErrorKind, Result};

/// Creates the differencing image `child` over `parent` (TEMPORARY until vhd can create).
pub(crate) fn create_child(child: &Path, parent: &Path) -> Result<()> {
    Err(Error::new(
        ErrorKind::Storage,
        format!(
            "cannot create {} over {} yet",
            child.display(),
            parent.display()
        ),
    ))
}
