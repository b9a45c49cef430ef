//! The memory this process can still take, checked before each large allocation of a table
//! load: a file too large for it is refused with the reason, rather than read until the
//! kernel's OOM killer ends the process (and, on a reload, every request it was serving).
//!
//! What is left is the least of: the host's `MemAvailable` (`/proc/meminfo`), and for each
//! control group from this process's up to the root of its hierarchy that sets a memory
//! limit (v2 `memory.max` under `/sys/fs/cgroup`, or v1 `memory.limit_in_bytes` under
//! `/sys/fs/cgroup/memory`), that limit less the group's usage net of its page cache
//! (`active_file` and `inactive_file`, which the kernel reclaims before it kills). A group
//! whose usage or page cache cannot be read is passed over; where none of these can be read
//! (not Linux), nothing is refused. [`HEADROOM`] of what is left stays for serving.

use std::path::Path;

/// Bytes of what is left that a load may not take: the process's own needs while it loads
/// (requests being served, buffers, the allocator's slack).
pub(super) const HEADROOM: u64 = 64 << 20;

/// The memory left for one file's load: read once when the load begins ([`Room::now`]), less
/// what the load has taken since. Reading `/proc` and the control group files costs far more
/// than a check (about 175 µs), so a `.safetensors` file of 40,000 tensors reads them once,
/// not once per tensor; and what its earlier tensors took counts against the later ones.
#[derive(Debug)]
pub(super) struct Room {
    left: Option<Left>,
}

impl Room {
    /// What is left now (nothing is refused where it cannot be known).
    pub(super) fn now() -> Self {
        Room { left: left() }
    }

    /// Refuses `bytes` more for `what` (`reading it whole`, `its values as float32`, …) if
    /// they and [`HEADROOM`] are more than what is left; else counts them as taken.
    pub(super) fn take(&mut self, bytes: usize, what: &str) -> Result<(), String> {
        let Some(left) = &mut self.left else {
            return Ok(());
        };
        let bytes = bytes as u64;
        if bytes.saturating_add(HEADROOM) <= left.bytes {
            left.bytes -= bytes;
            return Ok(());
        }
        Err(format!(
            "{what}: {} of memory needed, and {} left ({}; {} of it kept for serving)",
            size(bytes),
            size(left.bytes),
            left.bound,
            size(HEADROOM)
        ))
    }

    /// Counts `bytes` taken earlier as left again: for a step that counts them itself.
    pub(super) fn give_back(&mut self, bytes: usize) {
        if let Some(left) = &mut self.left {
            left.bytes = left.bytes.saturating_add(bytes as u64);
        }
    }
}

/// `bytes` in bytes and, past a KiB, in the largest binary unit it reaches.
fn size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    let mut unit = None;
    let mut scaled = bytes as f64;
    for name in UNITS {
        if scaled < 1024.0 {
            break;
        }
        scaled /= 1024.0;
        unit = Some(name);
    }
    match unit {
        Some(unit) => format!("{bytes} bytes ({scaled:.1} {unit})"),
        None => format!("{bytes} bytes"),
    }
}

/// The memory left, and what bounds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Left {
    pub(super) bytes: u64,
    /// `the host's available memory`, or `the limit of control group /x`.
    pub(super) bound: String,
}

/// The memory this process can still take, if known.
pub(super) fn left() -> Option<Left> {
    #[cfg(test)]
    if let Some(bytes) = tests::LEFT.with(std::cell::Cell::get) {
        let bound = "a test's bound".to_owned();
        return Some(Left { bytes, bound });
    }
    let host = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| available(&text))
        .map(|bytes| Left {
            bytes,
            bound: "the host's available memory".to_owned(),
        });
    let groups = std::fs::read_to_string("/proc/self/cgroup")
        .ok()
        .map(|text| groups_left(&text, Mounts::STANDARD))
        .unwrap_or_default();
    host.into_iter().chain(groups).min_by_key(|left| left.bytes)
}

/// `MemAvailable` of a `/proc/meminfo` text, in bytes.
fn available(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// Where the control group hierarchies are mounted.
#[derive(Clone, Copy)]
struct Mounts<'a> {
    v1_memory: &'a str,
    v2: &'a str,
}

impl Mounts<'_> {
    const STANDARD: Mounts<'static> = Mounts {
        v1_memory: "/sys/fs/cgroup/memory",
        v2: "/sys/fs/cgroup",
    };
}

/// What each limited control group of this process leaves, given `/proc/self/cgroup`.
fn groups_left(cgroup: &str, mounts: Mounts) -> Vec<Left> {
    let mut left = Vec::new();
    for line in cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let (files, mount) = if controllers.is_empty() {
            (GroupFiles::V2, mounts.v2)
        } else if controllers.split(',').any(|c| c == "memory") {
            (GroupFiles::V1, mounts.v1_memory)
        } else {
            continue;
        };
        let root = Path::new(mount);
        // From this process's group up to the root: a limit may be set on any of them (in a
        // container the group's own path may not be visible, and its files are at the root).
        let mut dir = root.join(path.trim_start_matches('/'));
        loop {
            if let Some(bytes) = files.left_in(&dir) {
                let group = dir.strip_prefix(root).unwrap_or(&dir).display().to_string();
                let bound = format!("the memory limit of control group /{group}");
                left.push(Left { bytes, bound });
            }
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
    /// What the group at `dir` leaves, if it sets a limit and says its usage and page cache.
    fn left_in(self, dir: &Path) -> Option<u64> {
        let read = |name: &str| std::fs::read_to_string(dir.join(name)).ok();
        let (limit, usage, cache_keys) = match self {
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
        let stat = read("memory.stat")?;
        let mut cache = 0u64;
        for key in cache_keys {
            cache = cache.saturating_add(stat_value(&stat, key)?);
        }
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
pub(super) mod tests {
    use std::cell::Cell;
    use std::path::PathBuf;

    use super::*;

    thread_local! {
        /// The memory left, as a test sets it for its own thread ([`with_left`]).
        pub(super) static LEFT: Cell<Option<u64>> = const { Cell::new(None) };
    }

    /// Runs `f` with `bytes` as the memory left on this thread.
    pub(in crate::tables) fn with_left<T>(bytes: u64, f: impl FnOnce() -> T) -> T {
        LEFT.with(|left| left.set(Some(bytes)));
        let result = f();
        LEFT.with(|left| left.set(None));
        result
    }

    /// A fresh directory for a fake hierarchy.
    fn tree(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("simserve-cgroup-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn write(dir: &Path, files: &[(&str, &str)]) {
        std::fs::create_dir_all(dir).unwrap();
        for (name, text) in files {
            std::fs::write(dir.join(name), text).unwrap();
        }
    }

    #[test]
    fn the_host_s_available_memory_is_read_in_bytes() {
        let meminfo =
            "MemTotal:       24683792 kB\nMemFree:  100 kB\nMemAvailable:   24152256 kB\n";
        assert_eq!(available(meminfo), Some(24_152_256 * 1024));
        assert_eq!(available("MemTotal: 5 kB\n"), None);
    }

    #[test]
    fn each_limited_group_up_the_hierarchy_leaves_its_limit_less_use_besides_page_cache() {
        let v2 = tree("v2");
        let v1 = tree("v1");
        // v2: the pod's group limits to 1000 and uses 900, 300 of it page cache; the
        // container's own sets no limit; the root has no limit files.
        let stat = "anon 600\nfile 300\nactive_file 200\ninactive_file 100\n";
        write(
            &v2.join("pod"),
            &[
                ("memory.max", "1000\n"),
                ("memory.current", "900\n"),
                ("memory.stat", stat),
            ],
        );
        write(
            &v2.join("pod/box"),
            &[
                ("memory.max", "max\n"),
                ("memory.current", "850\n"),
                ("memory.stat", stat),
            ],
        );
        // v1: a limit of 5000 at the root, 1000 used of which 400 is page cache.
        let v1_stat = "rss 600\ntotal_active_file 300\ntotal_inactive_file 100\n";
        write(
            &v1,
            &[
                ("memory.limit_in_bytes", "5000\n"),
                ("memory.usage_in_bytes", "1000\n"),
                ("memory.stat", v1_stat),
            ],
        );
        write(
            &v1.join("job"),
            &[
                ("memory.limit_in_bytes", "9223372036854771712\n"),
                ("memory.usage_in_bytes", "1000\n"),
                ("memory.stat", v1_stat),
            ],
        );
        let mounts = Mounts {
            v1_memory: v1.to_str().unwrap(),
            v2: v2.to_str().unwrap(),
        };
        let cgroup = "4:memory:/job\n3:cpu,cpuacct:/job\n0::/pod/box\n";
        let left: Vec<(u64, String)> = groups_left(cgroup, mounts)
            .into_iter()
            .map(|l| (l.bytes, l.bound))
            .collect();
        assert_eq!(
            left,
            [
                (4400, "the memory limit of control group /".to_owned()),
                (400, "the memory limit of control group /pod".to_owned()),
            ]
        );
        // A group whose page cache cannot be read is passed over, not counted as all used.
        std::fs::remove_file(v2.join("pod/memory.stat")).unwrap();
        std::fs::write(v1.join("memory.stat"), "rss 600\n").unwrap();
        assert!(groups_left(cgroup, mounts).is_empty());
        // Usage above the limit (the kernel is reclaiming) leaves nothing, without wrapping.
        assert_eq!(room(1000, 1500, 100), 0);
        std::fs::remove_dir_all(v1).unwrap();
        std::fs::remove_dir_all(v2).unwrap();
    }

    #[test]
    fn max_and_v1_s_huge_limit_set_no_limit() {
        assert_eq!(limit_bytes("max\n"), None);
        assert_eq!(limit_bytes("9223372036854771712\n"), None);
        assert_eq!(limit_bytes("2147483648\n"), Some(2 << 30));
    }

    #[test]
    fn a_refusal_says_the_sizes_and_what_bounds_them() {
        let refused = with_left(HEADROOM + (3 << 30), || {
            Room::now().take((3 << 30) + 1, "reading it whole")
        });
        assert_eq!(
            refused.unwrap_err(),
            "reading it whole: 3221225473 bytes (3.0 GiB) of memory needed, and 3288334336 \
             bytes (3.1 GiB) left (a test's bound; 67108864 bytes (64.0 MiB) of it kept for \
             serving)"
        );
        let fits = with_left(HEADROOM + (3 << 30), || {
            Room::now().take(3 << 30, "reading it whole")
        });
        assert_eq!(fits, Ok(()));
        assert_eq!(size(1000), "1000 bytes");
    }

    #[test]
    fn what_a_load_took_is_no_longer_left_for_its_next_step() {
        let mut room = with_left(HEADROOM + 1000, Room::now);
        assert_eq!(room.take(600, "reading it whole"), Ok(()));
        let refused = room.take(401, "its values as float32").unwrap_err();
        assert!(
            refused.starts_with("its values as float32: 401 bytes of memory needed, and 67109264"),
            "{refused}"
        );
        assert_eq!(room.take(400, "its values as float32"), Ok(()));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn linux_says_how_much_is_left() {
        let left = left().expect("Linux says how much memory is left");
        assert!(left.bytes > HEADROOM, "{left:?}");
    }
}
