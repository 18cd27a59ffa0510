//! Reading the text files people name (prompts, documents, priming conversations): untrusted
//! paths. Only regular files are opened (a FIFO or a device would block or never end), and only
//! up to a bound, checked before anything is read.

use crate::error::{Error, Result};
use std::io::Read;
use std::path::Path;

/// The largest text file read whole: far beyond any context window (128k tokens of text are
/// about half a megabyte), small enough to hold in memory.
pub const MAX_TEXT_BYTES: u64 = 64 << 20;

/// Refuses what is not a regular file, without opening it.
pub fn regular_file(path: &Path) -> Result<std::fs::Metadata> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if !meta.is_file() {
        return Err(Error::Invalid(format!("{} is not a regular file", path.display())));
    }
    Ok(meta)
}

/// A UTF-8 text file of at most [`MAX_TEXT_BYTES`].
pub fn read_text_file(path: &Path) -> Result<String> {
    let meta = regular_file(path)?;
    if meta.len() > MAX_TEXT_BYTES {
        return Err(Error::Invalid(format!(
            "{} is {} MB; text inputs are limited to {} MB",
            path.display(),
            meta.len() >> 20,
            MAX_TEXT_BYTES >> 20
        )));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_TEXT_BYTES + 1).read_to_end(&mut bytes))
        .map_err(|e| Error::io(path, e))?;
    if bytes.len() as u64 > MAX_TEXT_BYTES {
        return Err(Error::Invalid(format!(
            "{} grew past {} MB while it was read",
            path.display(),
            MAX_TEXT_BYTES >> 20
        )));
    }
    String::from_utf8(bytes).map_err(|e| {
        Error::Invalid(format!(
            "{} is not UTF-8 text (invalid byte at offset {})",
            path.display(),
            e.utf8_error().valid_up_to()
        ))
    })
}
