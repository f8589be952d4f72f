//! Reading zone files from disk within a zone's limits: regular files only, and no more bytes
//! than the zone has left, so that a device, a FIFO or an endless file (in the zones directory
//! or named by `$INCLUDE`) is refused at once instead of read until memory runs out.
//!
//! Errors are messages without a place: the caller names the file and line.

use std::fs::{File, FileType, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// How much one zone may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ZoneLimits {
    /// Bytes of text, the zone file and every file it includes together.
    pub bytes: u64,
    /// Records, every file together.
    pub records: usize,
}

impl ZoneLimits {
    /// 1 GiB of text and 10 million records: ten times the largest zone measured
    /// (docs/performance.md, "A large zone"), and well short of what exhausts a server's memory.
    pub const DEFAULT: ZoneLimits = ZoneLimits {
        bytes: 1 << 30,
        records: 10_000_000,
    };
}

impl Default for ZoneLimits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// The text of `path`, a regular file of at most `*budget` bytes; `*budget` is reduced by
/// its length. `limit` is the zone's whole budget, for the message.
pub(super) fn read_within(path: &Path, budget: &mut u64, limit: u64) -> Result<String, String> {
    // Look before opening: opening a FIFO waits for a writer, and opening a device may act.
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    regular(meta.file_type())?;
    // O_NONBLOCK: should the path have become a FIFO since, opening it does not wait.
    let file: File = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| e.to_string())?;
    let meta = file.metadata().map_err(|e| e.to_string())?;
    regular(meta.file_type())?;
    let too_big = || {
        format!(
            "the zone's files are larger than {} bytes together, the limit of one zone",
            limit
        )
    };
    if meta.len() > *budget {
        return Err(too_big());
    }
    let mut text = String::with_capacity(meta.len() as usize);
    // A file that grows while it is read is still cut at the budget.
    file.take(*budget + 1)
        .read_to_string(&mut text)
        .map_err(|e| e.to_string())?;
    if text.len() as u64 > *budget {
        return Err(too_big());
    }
    *budget -= text.len() as u64;
    Ok(text)
}

/// Refuses anything but a regular file, saying what it is.
fn regular(t: FileType) -> Result<(), String> {
    let what = if t.is_file() {
        return Ok(());
    } else if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "of another kind"
    };
    Err(format!(
        "{what}, not a regular file: a zone is read from regular files only"
    ))
}
