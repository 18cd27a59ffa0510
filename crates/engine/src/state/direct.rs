//! Writing a large segment around the page cache (Linux's `O_DIRECT`).
//!
//! Why: a freeze must reach the disk (it is fsynced before it is renamed into place), and on the
//! machines measured (KVM guests, virtio disks) buffered writes of a few hundred megabytes were
//! throttled to 0.25–0.5 GB/s while the same bytes written with `O_DIRECT` in 8 MiB requests
//! reached 1.9–2.3 GB/s (docs/benchmarks.md). So a segment of at least [`Direct::min`] bytes is
//! copied into block-aligned buffers and written by a second thread while this one fills the
//! next; smaller ones (most chat turns) are written through the page cache as before, which also
//! keeps them there for a thaw soon after.
//!
//! The first buffer, which holds the header, is written last: the header's checksum is known
//! only once every value has been hashed. The file is written in whole blocks (zeros after the
//! end) and then cut to its length. Where the file system refuses `O_DIRECT` (tmpfs, some
//! network file systems: `EINVAL` on open or on the first write) the caller falls back to the
//! buffered write.

use super::write::Raw;
use std::fs::File;
use std::io;
use std::path::Path;
use std::ptr::NonNull;

/// When and how a segment is written directly.
#[derive(Debug, Clone, Copy)]
pub(super) struct Direct {
    /// Segments smaller than this many bytes go through the page cache.
    pub min: u64,
    /// Bytes of each aligned buffer (a multiple of [`BLOCK`]).
    pub chunk: usize,
}

/// The default: segments from 64 MiB (a 1B model's state from about 2,000 tokens), 8 MiB writes.
pub(super) const DIRECT: Direct = Direct {
    min: 64 << 20,
    chunk: 8 << 20,
};

/// Alignment of buffers, offsets and lengths: the largest logical block size in use.
const BLOCK: usize = 4096;

/// Opens (creating or emptying) `path` for direct writes; None where that is not possible.
pub(super) fn open(path: &Path) -> Option<File> {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .custom_flags(libc::O_DIRECT)
            .open(path)
            .ok()
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = path;
        None
    }
}

/// Whether a failed direct write means "not supported here" (fall back) rather than a real
/// I/O error.
pub(super) fn unsupported(e: &io::Error) -> bool {
    #[cfg(unix)]
    let einval = e.raw_os_error() == Some(libc::EINVAL);
    #[cfg(not(unix))]
    let einval = false;
    e.kind() == io::ErrorKind::InvalidInput || einval
}

/// `chunk` bytes aligned to [`BLOCK`], zeroed when allocated, owned exclusively.
struct Aligned {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: `Aligned` owns its allocation exclusively (like a `Box<[u8]>`); moving it to another
// thread moves that ownership.
unsafe impl Send for Aligned {}

impl Aligned {
    fn new(len: usize) -> io::Result<Self> {
        let layout = std::alloc::Layout::from_size_align(len, BLOCK)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        if len == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "an empty write buffer"));
        }
        // SAFETY: `layout` has a non-zero size (checked above).
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        NonNull::new(ptr)
            .map(|ptr| Self { ptr, len })
            .ok_or_else(|| io::Error::new(io::ErrorKind::OutOfMemory, "cannot allocate a write buffer"))
    }

    fn bytes(&mut self) -> &mut [u8] {
        // SAFETY: `ptr` points to `len` initialised (zeroed at allocation) bytes that this value
        // owns; the slice borrows `self` mutably, so it is the only reference.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for Aligned {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with exactly this size and alignment.
        unsafe {
            std::alloc::dealloc(
                self.ptr.as_ptr(),
                std::alloc::Layout::from_size_align_unchecked(self.len, BLOCK),
            )
        }
    }
}

/// The data of a segment written directly, all but its first buffer (which holds the header
/// and is written by [`finish`]).
pub(super) struct Pending {
    first: Aligned,
    /// The file's length (it is written in whole blocks, then cut to this).
    total: u64,
}

/// Writes the file's data, in `cfg.chunk`-byte aligned writes by a second thread: `head_len`
/// bytes of room for the header, then every tensor of `order` in order (`total` bytes in all).
/// Everything but the first buffer reaches the file here; [`finish`] writes that one with the
/// header.
pub(super) fn write_data(
    f: &File,
    cfg: Direct,
    head_len: usize,
    order: &[&Raw<'_>],
    total: u64,
) -> io::Result<Pending> {
    let chunk = cfg.chunk;
    if chunk == 0 || !chunk.is_multiple_of(BLOCK) || head_len > chunk {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "no room for the header in the first buffer",
        ));
    }
    let mut first = Aligned::new(chunk)?;
    std::thread::scope(|scope| {
        // One buffer being written while one is filled; a third lets the filler run ahead.
        let (to_write, writes) = std::sync::mpsc::sync_channel::<(Aligned, u64, usize)>(1);
        let (to_free, free) = std::sync::mpsc::channel::<Aligned>();
        let writer = scope.spawn(move || -> io::Result<()> {
            for (mut buf, at, len) in writes {
                super::write::write_at(f, &buf.bytes()[..len], at)?;
                // The filler may have stopped; a buffer nobody takes back is freed.
                let _ = to_free.send(buf);
            }
            Ok(())
        });
        let mut spare = vec![Aligned::new(chunk)?, Aligned::new(chunk)?];
        // The buffer being filled (None: the first one), its file offset, and bytes in it. The
        // first buffer's header room stays zero until `finish`.
        let (mut cur, mut at, mut fill): (Option<Aligned>, u64, usize) = (None, 0, head_len);
        let mut stopped = false;
        'fill: for raw in order {
            for run in raw.data.runs() {
                let mut run: &[u8] = &run;
                while !run.is_empty() {
                    let buf = match cur.as_mut() {
                        Some(b) => b,
                        None => &mut first,
                    };
                    let n = (chunk - fill).min(run.len());
                    buf.bytes()[fill..fill + n].copy_from_slice(&run[..n]);
                    (fill, run) = (fill + n, &run[n..]);
                    if fill == chunk {
                        if let Some(b) = cur.take() {
                            if to_write.send((b, at, chunk)).is_err() {
                                stopped = true;
                                break 'fill;
                            }
                        }
                        at += chunk as u64;
                        fill = 0;
                        match spare.pop().map(Ok).unwrap_or_else(|| free.recv()) {
                            Ok(b) => cur = Some(b),
                            Err(_) => {
                                stopped = true;
                                break 'fill;
                            }
                        }
                    }
                }
            }
        }
        if !stopped {
            // The last buffer, in whole blocks: zeros after the data (cut off by `finish`).
            let len = fill.next_multiple_of(BLOCK);
            match cur.take() {
                None => first.bytes()[fill..len].fill(0),
                Some(mut b) if fill > 0 => {
                    b.bytes()[fill..len].fill(0);
                    stopped = to_write.send((b, at, len)).is_err();
                }
                Some(_) => {}
            }
        }
        drop(to_write);
        let written = writer
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the writing thread failed")));
        written?;
        if stopped {
            return Err(io::Error::other("the writing thread stopped"));
        }
        Ok(Pending { first, total })
    })
}

/// Writes the first buffer with the final `head` in it and cuts the file to its length.
pub(super) fn finish(f: &File, mut p: Pending, head: &[u8]) -> io::Result<()> {
    p.first
        .bytes()
        .get_mut(..head.len())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the header outgrew its room"))?
        .copy_from_slice(head);
    // The first buffer is whole, or it is the whole file (in whole blocks).
    let padded = p.total.next_multiple_of(BLOCK as u64);
    let first_len = p.first.len.min(padded as usize);
    super::write::write_at(f, &p.first.bytes()[..first_len], 0)?;
    if padded != p.total {
        f.set_len(p.total)?;
    }
    Ok(())
}

/// Asks the kernel to read a file written directly back into the page cache (the caller runs
/// this on a thread of its own: each call waits for the reads it starts). Buffered writes leave a segment cached, and a thaw soon after a freeze
/// (the fork of a node just frozen, bench-resume) reads it from memory; without this it would
/// read it from the disk. Best effort: the advice may be ignored.
pub(super) fn read_ahead(f: &File) {
    #[cfg(target_os = "linux")]
    {
        /// Bytes asked for at a time (the kernel reads one request of at most a few megabytes).
        const READ_AHEAD_STEP: u64 = 8 << 20;
        use std::os::fd::AsRawFd;
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        let mut at = 0;
        while at < len {
            let n = (len - at).min(READ_AHEAD_STEP);
            // SAFETY: a plain system call on a descriptor we hold open; it touches no memory of
            // ours.
            unsafe {
                libc::posix_fadvise(
                    f.as_raw_fd(),
                    at as libc::off_t,
                    n as libc::off_t,
                    libc::POSIX_FADV_WILLNEED,
                )
            };
            at += n;
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = f;
}
