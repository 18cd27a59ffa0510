//! How much more memory this process may use, asked before an attention state grows or is
//! thawed: a prompt, a document or a state too large for the machine is then refused with one
//! error line naming the sizes, instead of the allocation aborting the process or the kernel's
//! OOM killer ending it (with the conversation) partway through a long prefill.
//!
//! A Llama 3.1 8B state holds 128 KiB a token at f16: its 128k-token context is 16 GiB, more
//! than most laptops have free. The estimate is deliberately the memory usable *without
//! swapping*: an attention state in swap makes every token read all of it back from disk.

use crate::error::{EngineError, Result};

/// Bytes this process can still allocate and use without swapping, being killed or refused:
/// the least of the system's available memory (`MemAvailable`: free memory and the page cache
/// that can be dropped), the room left under a cgroup memory limit (containers, systemd
/// slices; counting the cgroup's inactive file cache as reclaimable, as the kernel does) and
/// under an address-space limit (`ulimit -v`). `None` where none of these can be read (systems
/// other than Linux): growth is then not refused ahead, and the fallible allocations of the
/// state still turn a refusal by the allocator into an error.
pub fn available() -> Option<u64> {
    #[cfg(target_os = "linux")]
    {
        linux::available()
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}

/// An [`EngineError::OutOfMemory`] naming `what` when `needed` bytes exceed `available`
/// (`None`: unknown, never refused).
pub fn ensure(needed: u64, available: Option<u64>, what: &dyn Fn() -> String) -> Result<()> {
    match available {
        Some(free) if needed > free => Err(EngineError::OutOfMemory {
            what: what(),
            needed,
            available,
        }),
        _ => Ok(()),
    }
}

/// The error for an allocation of `needed` bytes for `what` that the allocator refused (the
/// free memory as [`available`] sees it, where it can tell).
pub fn refused(what: String, needed: u64) -> EngineError {
    EngineError::OutOfMemory {
        what,
        needed,
        available: available(),
    }
}

/// The end of the out-of-memory message: what is free, or that the system refused.
pub fn free_text(available: &Option<u64>) -> String {
    match available {
        Some(b) => format!("and {} is available", human(*b)),
        None => "which the system refused".to_string(),
    }
}

/// This machine's physical memory (Linux: `MemTotal`; macOS: `hw.memsize`).
pub fn total() -> Option<u64> {
    #[cfg(target_os = "linux")]
    {
        kib_field(&std::fs::read_to_string("/proc/meminfo").ok()?, "MemTotal")
    }
    #[cfg(target_os = "macos")]
    {
        let (mut bytes, mut len) = (0u64, std::mem::size_of::<u64>());
        // SAFETY: the name is a NUL-terminated C string; `bytes` and `len` are valid for
        // writing and `len` says how many bytes `bytes` holds; no new value is given.
        let r = unsafe {
            libc::sysctlbyname(
                c"hw.memsize".as_ptr(),
                (&mut bytes as *mut u64).cast(),
                &mut len,
                std::ptr::null_mut(),
                0,
            )
        };
        (r == 0 && len == std::mem::size_of::<u64>()).then_some(bytes)
    }
    #[cfg(not(any(target_os = "linux", target_os = "macos")))]
    {
        None
    }
}

/// A byte count for people: `98.4 MB`, `4.9 GB` (decimal units, as disks and downloads count).
pub fn human(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= 1e9 {
        format!("{:.1} GB", b / 1e9)
    } else if b >= 1e6 {
        format!("{:.1} MB", b / 1e6)
    } else if b >= 1e3 {
        format!("{:.0} kB", b / 1e3)
    } else {
        format!("{bytes} B")
    }
}

/// The value in bytes of `key` in a `/proc/meminfo`-style text (`Key:   123 kB`).
#[cfg_attr(not(target_os = "linux"), allow(dead_code))] // read on Linux only
fn kib_field(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(key)?.strip_prefix(':')?;
        let mut parts = rest.split_whitespace();
        let n: u64 = parts.next()?.parse().ok()?;
        match parts.next() {
            Some("kB") => n.checked_mul(1024),
            None => Some(n),
            Some(_) => None,
        }
    })
}

/// The value of `key` in a cgroup `memory.stat` text (`key 123`, bytes), as written.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))] // read on Linux only
fn stat_text<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then_some(v)
    })
}

/// The value of `key` in a cgroup `memory.stat` text, in bytes.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))] // read on Linux only
fn stat_field(text: &str, key: &str) -> Option<u64> {
    stat_text(text, key)?.trim().parse().ok()
}

/// Room under a cgroup limit: `limit − (usage − inactive file cache)`, or `None` when the
/// limit is absent or unlimited (v2 writes `max`, v1 a number near 2⁶³).
#[cfg_attr(not(target_os = "linux"), allow(dead_code))] // read on Linux only
fn cgroup_room(limit: &str, usage: &str, inactive_file: Option<u64>) -> Option<u64> {
    let limit: u64 = limit.trim().parse().ok()?;
    if limit >= 1 << 60 {
        return None;
    }
    let usage: u64 = usage.trim().parse().ok()?;
    let used = usage.saturating_sub(inactive_file.unwrap_or(0));
    Some(limit.saturating_sub(used))
}

#[cfg(target_os = "linux")]
mod linux {
    use super::{cgroup_room, kib_field, stat_field, stat_text};
    use std::fs::read_to_string;
    use std::path::Path;

    pub fn available() -> Option<u64> {
        // Which cgroups this process is in, read once for both hierarchies.
        let own = read_to_string("/proc/self/cgroup").unwrap_or_default();
        [system(), cgroup_v2(&own), cgroup_v1(&own), address_space()]
            .into_iter()
            .flatten()
            .min()
    }

    pub(super) fn system() -> Option<u64> {
        kib_field(&read_to_string("/proc/meminfo").ok()?, "MemAvailable")
    }

    /// The tightest limit of this process's cgroup and its ancestors (cgroup v2).
    fn cgroup_v2(own: &str) -> Option<u64> {
        let path = own.lines().find_map(|l| l.strip_prefix("0::"))?.trim().to_string();
        let root = Path::new("/sys/fs/cgroup");
        let mut best: Option<u64> = None;
        let mut dir = Path::new(&path);
        loop {
            let at = root.join(dir.strip_prefix("/").unwrap_or(dir));
            if let (Ok(max), Ok(current)) = (
                read_to_string(at.join("memory.max")),
                read_to_string(at.join("memory.current")),
            ) {
                let stat = read_to_string(at.join("memory.stat")).ok();
                let inactive = stat.as_deref().and_then(|s| stat_field(s, "inactive_file"));
                if let Some(room) = cgroup_room(&max, &current, inactive) {
                    best = Some(best.map_or(room, |b| b.min(room)));
                }
            }
            match dir.parent() {
                Some(p) => dir = p,
                None => break,
            }
        }
        best
    }

    /// This process's memory cgroup (v1), whose `memory.stat` gives the limit of the whole
    /// hierarchy above it. Inside a container the cgroup's own directory is the mount's root.
    fn cgroup_v1(own: &str) -> Option<u64> {
        let path = own.lines().find_map(|l| {
            let mut f = l.splitn(3, ':');
            let (_, controllers, path) = (f.next()?, f.next()?, f.next()?);
            controllers
                .split(',')
                .any(|c| c == "memory")
                .then(|| path.trim().to_string())
        })?;
        let base = Path::new("/sys/fs/cgroup/memory");
        [base.join(path.trim_start_matches('/')), base.to_path_buf()]
            .into_iter()
            .find_map(|at| {
                let stat = read_to_string(at.join("memory.stat")).ok()?;
                let limit = stat_text(&stat, "hierarchical_memory_limit")?;
                let usage = read_to_string(at.join("memory.usage_in_bytes")).ok()?;
                cgroup_room(limit, &usage, stat_field(&stat, "total_inactive_file"))
            })
    }

    /// Room under `ulimit -v` (RLIMIT_AS): the limit less the address space already mapped.
    fn address_space() -> Option<u64> {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes one `rlimit` through the valid pointer given.
        if unsafe { libc::getrlimit(libc::RLIMIT_AS, &mut lim) } != 0 || lim.rlim_cur == libc::RLIM_INFINITY {
            return None;
        }
        let mapped = kib_field(&read_to_string("/proc/self/status").ok()?, "VmSize")?;
        // `rlim_t` is 64 bits here, not on every Linux target.
        #[allow(clippy::unnecessary_cast)]
        let limit = lim.rlim_cur as u64;
        Some(limit.saturating_sub(mapped))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_read_in_bytes() {
        let meminfo = "MemTotal:       24683792 kB\nMemFree:         1000 kB\nMemAvailable:   24101916 kB\n";
        assert_eq!(kib_field(meminfo, "MemAvailable"), Some(24101916 * 1024));
        assert_eq!(kib_field(meminfo, "MemFree"), Some(1000 * 1024));
        assert_eq!(kib_field(meminfo, "Mem"), None, "a prefix of a key is not the key");
        assert_eq!(kib_field("VmSize:\t  204800 kB\n", "VmSize"), Some(204800 * 1024));
        let stat =
            "cache 5\ninactive_file 4096\ntotal_inactive_file 8192\nhierarchical_memory_limit 9223372036854771712\n";
        assert_eq!(stat_field(stat, "inactive_file"), Some(4096));
        assert_eq!(stat_field(stat, "total_inactive_file"), Some(8192));
        assert_eq!(stat_field(stat, "inactive"), None);
        assert_eq!(
            stat_text(stat, "hierarchical_memory_limit"),
            Some("9223372036854771712")
        );
    }

    #[test]
    fn a_cgroup_limit_leaves_the_room_below_it_and_counts_inactive_cache_as_free() {
        assert_eq!(cgroup_room("max\n", "123", None), None, "v2 without a limit");
        assert_eq!(
            cgroup_room("9223372036854771712", "123", None),
            None,
            "v1 without a limit"
        );
        assert_eq!(cgroup_room("1000\n", "600\n", None), Some(400));
        assert_eq!(cgroup_room("1000", "600", Some(100)), Some(500));
        assert_eq!(cgroup_room("1000", "1200", None), Some(0), "over the limit: no room");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_machine_reports_some_memory_available() {
        let a = available().expect("Linux has /proc/meminfo");
        assert!(a > 0);
    }

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(human(1_500_000_000), "1.5 GB");
        assert_eq!(human(320_000_000), "320.0 MB");
        assert_eq!(human(12_345), "12 kB");
        assert_eq!(human(999), "999 B");
    }

    #[cfg(any(target_os = "linux", target_os = "macos"))]
    #[test]
    fn the_machine_has_more_memory_than_it_has_free() {
        let total = total().expect("Linux and macOS report their memory");
        assert!(total >= 64 << 20, "{total}");
        #[cfg(target_os = "linux")]
        assert!(linux::system().unwrap() <= total);
    }
}
