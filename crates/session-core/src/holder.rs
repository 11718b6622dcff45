//! Who holds a lease: the identity an owner records in the store and a refused owner is shown.
//! (Its own module because both the lease and the error types name it.)

use std::fmt;

/// Who holds a lease, for messages: the machine, the process and a random id of the owning
/// backend instance (two backends of one process are two owners).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LeaseHolder {
    /// The host name of the owner's machine.
    pub host: String,
    /// The owner's process id on that machine.
    pub pid: u32,
    /// A random id of the owning instance (16 hex digits).
    pub instance: String,
}

impl LeaseHolder {
    /// An identity for a new owner in this process: this machine's host name, this pid and a
    /// fresh random instance id.
    pub fn current() -> LeaseHolder {
        LeaseHolder { host: host_name(), pid: std::process::id(), instance: format!("{:016x}", random_u64()) }
    }

    /// The stored form: `host`, `pid` and `instance` separated by tabs (a host name holds no tab).
    pub fn encode(&self) -> String {
        format!("{}\t{}\t{}", self.host.replace('\t', " "), self.pid, self.instance)
    }

    /// Reads [`encode`](LeaseHolder::encode)'s form back; `None` for anything else.
    pub fn decode(s: &str) -> Option<LeaseHolder> {
        let mut parts = s.split('\t');
        let (host, pid, instance) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        Some(LeaseHolder { host: host.to_owned(), pid: pid.parse().ok()?, instance: instance.to_owned() })
    }
}

impl fmt::Display for LeaseHolder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pid {} on {} (instance {})", self.pid, self.host, self.instance)
    }
}

fn host_name() -> String {
    // Read once: the kernel's name for this machine lives in memory (procfs), so this read does
    // not wait on a disk; later calls use the cached value.
    static HOST: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HOST.get_or_init(|| {
        ["/proc/sys/kernel/hostname", "/etc/hostname"]
            .iter()
            .find_map(|p| std::fs::read_to_string(p).ok().map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()))
            .or_else(|| std::env::var("HOSTNAME").ok())
            .or_else(|| std::env::var("COMPUTERNAME").ok())
            .unwrap_or_else(|| "unknown-host".to_owned())
    })
    .clone()
}

/// 64 bits that differ between instances and processes. Not a secret (it is shown in messages):
/// std's randomly seeded hasher, mixed with the time and a counter.
fn random_u64() -> u64 {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u32(std::process::id());
    if let Ok(t) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        h.write_u128(t.as_nanos());
    }
    h.finish()
}
