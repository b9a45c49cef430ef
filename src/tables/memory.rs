//! The memory this process can still take, checked before a table load allocates: a file
//! larger than that is refused with the reason, rather than read until the kernel's OOM
//! killer ends the process (and, on a reload, every request it was serving).
//!
//! What is left is the least of: the host's `MemAvailable` (`/proc/meminfo`), and for each
//! control group from this process's up to the root of its hierarchy that sets a memory
//! limit (v2 `memory.max`, or v1 `memory.limit_in_bytes`), that limit less the group's usage
//! net of its page cache (`active_file` and `inactive_file`, which the kernel reclaims
//! before it kills). Where none of these can be read (not Linux), nothing is refused.

use std::path::Path;

/// Refuses `bytes` more for `what` if they are more than the memory left.
pub(super) fn room_for(bytes: usize, what: &str) -> Result<(), String> {
    match left() {
        Some(left) if bytes as u64 > left => Err(format!(
            "{what} takes {bytes} bytes, more than the {left} bytes of memory left \
             (the container's limit or the host's available memory)"
        )),
        _ => Ok(()),
    }
}

/// The bytes of memory this process can still take, if known.
pub fn left() -> Option<u64> {
    let host = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| available(&text));
    let groups = std::fs::read_to_string("/proc/self/cgroup")
        .ok()
        .map(|text| groups_left(&text))
        .unwrap_or_default();
    host.into_iter().chain(groups).min()
}

/// `MemAvailable` of a `/proc/meminfo` text, in bytes.
fn available(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// What each limited control group of this process leaves, given `/proc/self/cgroup`.
fn groups_left(cgroup: &str) -> Vec<u64> {
    let mut left = Vec::new();
    for line in cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let files = if controllers.is_empty() {
            GroupFiles::V2
        } else if controllers.split(',').any(|c| c == "memory") {
            GroupFiles::V1
        } else {
            continue;
        };
        let root = Path::new(files.mount());
        // From this process's group up to the root: a limit may be set on any of them (in a
        // container the group's own path may not be visible, and its files are at the root).
        let mut dir = root.join(path.trim_start_matches('/'));
        loop {
            left.extend(files.left_in(&dir));
            if dir == root || !dir.pop() {
                break;
            }
        }
    }
    left
}

/// Which control group files say the limit, the usage and the page cache.
#[derive(Clone, Copy)]
enum GroupFiles {
    V1,
    V2,
}

impl GroupFiles {
    fn mount(self) -> &'static str {
        match self {
            GroupFiles::V1 => "/sys/fs/cgroup/memory",
            GroupFiles::V2 => "/sys/fs/cgroup",
        }
    }

    /// What the group at `dir` leaves, if it sets a limit.
    fn left_in(self, dir: &Path) -> Option<u64> {
        let read = |name: &str| std::fs::read_to_string(dir.join(name)).ok();
        let (limit, usage, cache) = match self {
            GroupFiles::V2 => (
                read("memory.max")?,
                read("memory.current")?,
                ["active_file", "inactive_file"],
            ),
            GroupFiles::V1 => (
                read("memory.limit_in_bytes")?,
                read("memory.usage_in_bytes")?,
                ["total_active_file", "total_inactive_file"],
            ),
        };
        let limit = limit_bytes(&limit)?;
        let usage: u64 = usage.trim().parse().ok()?;
        let stat = read("memory.stat").unwrap_or_default();
        let cache = cache.iter().filter_map(|key| stat_value(&stat, key)).sum();
        Some(room(limit, usage, cache))
    }
}

/// A limit file's bytes, or `None` when it sets no limit (`max`, or v1's near-`i64::MAX`).
fn limit_bytes(text: &str) -> Option<u64> {
    let limit: u64 = text.trim().parse().ok()?;
    (limit < 1 << 62).then_some(limit)
}

/// The value of `key` in a `memory.stat` text.
fn stat_value(stat: &str, key: &str) -> Option<u64> {
    stat.lines().find_map(|line| {
        let (name, value) = line.split_once(' ')?;
        (name == key).then(|| value.trim().parse().ok()).flatten()
    })
}

/// What a group limited to `limit` bytes leaves when it uses `usage`, `cache` of it page cache.
fn room(limit: u64, usage: u64, cache: u64) -> u64 {
    limit.saturating_sub(usage.saturating_sub(cache))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_s_available_memory_is_read_in_bytes() {
        let meminfo =
            "MemTotal:       24683792 kB\nMemFree:  100 kB\nMemAvailable:   24152256 kB\n";
        assert_eq!(available(meminfo), Some(24_152_256 * 1024));
        assert_eq!(available("MemTotal: 5 kB\n"), None);
    }

    #[test]
    fn a_group_leaves_its_limit_less_what_it_uses_besides_page_cache() {
        let stat = "anon 300\nactive_file 200\ninactive_file 100\ntotal_active_file 7\n";
        let cache: u64 = ["active_file", "inactive_file"]
            .iter()
            .filter_map(|k| stat_value(stat, k))
            .sum();
        assert_eq!(cache, 300);
        assert_eq!(room(1000, 600, cache), 700);
        // Usage above the limit (the kernel is reclaiming) leaves nothing, without wrapping.
        assert_eq!(room(1000, 1500, 100), 0);
        assert_eq!(stat_value(stat, "total_active_file"), Some(7));
        assert_eq!(stat_value(stat, "file"), None);
    }

    #[test]
    fn max_and_v1_s_huge_limit_set_no_limit() {
        assert_eq!(limit_bytes("max\n"), None);
        assert_eq!(limit_bytes("9223372036854771712\n"), None);
        assert_eq!(limit_bytes("2147483648\n"), Some(2 << 30));
    }

    #[test]
    fn this_machine_says_how_much_is_left_and_a_load_past_it_is_refused() {
        let left = left().expect("Linux says how much memory is left");
        assert!(left > 0);
        let refused = room_for(
            usize::try_from(left).unwrap() + (1 << 30),
            "reading it whole",
        );
        let reason = refused.unwrap_err();
        assert!(reason.starts_with("reading it whole takes "), "{reason}");
        assert!(reason.contains("bytes of memory left"), "{reason}");
        assert_eq!(room_for(1 << 20, "reading it whole"), Ok(()));
    }
}
