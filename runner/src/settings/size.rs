//! Sizes written as `512MiB`, `2GiB`, `1.5 GB` or a number of bytes (the `bytesize` crate reads
//! them: IEC units are powers of 1024, SI units powers of 1000).

use serde::{Deserialize, Deserializer};

/// Parses `512MiB`, `2GB`, `1048576`; zero is an error.
pub fn parse(text: &str) -> Result<u64, String> {
    // The crate's own message names its parsing steps (`cannot parse float`), not the rule.
    let parsed: bytesize::ByteSize = text
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a size: write it like `512MiB`, `2GiB` or `1GB`"))?;
    if parsed.as_u64() == 0 {
        return Err(format!("`{text}`: the size must be more than zero"));
    }
    Ok(parsed.as_u64())
}

/// A size setting (`deserialize_with`), read by [`parse`]; a bare number is bytes.
pub fn bytes<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    let size = opt(d)?.ok_or_else(|| serde::de::Error::custom("a size is missing here"))?;
    usize::try_from(size).map_err(|_| serde::de::Error::custom("the size is too large"))
}

/// An optional size setting (`deserialize_with`), read by [`parse`]; a bare number is bytes.
pub fn opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Written {
        Bytes(u64),
        Text(String),
    }
    match Option::<Written>::deserialize(d)? {
        Some(Written::Bytes(0)) => Err(serde::de::Error::custom("the size must be more than zero")),
        Some(Written::Bytes(n)) => Ok(Some(n)),
        Some(Written::Text(text)) => parse(&text).map(Some).map_err(serde::de::Error::custom),
        None => Ok(None),
    }
}

/// The memory limit of an aggregation that does not set one: half the machine's memory, or
/// half the container's limit when that is lower (the rest is for the input, the result and
/// the sinks).
pub fn default_memory_limit() -> usize {
    let machine = physical_memory().unwrap_or(4 << 30);
    let limit = container_limit().map_or(machine, |c| c.min(machine));
    limit / 2
}

fn physical_memory() -> Option<usize> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: usize = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// cgroup v2's `memory.max`, or v1's `memory.limit_in_bytes` (`max` or a huge number: none).
fn container_limit() -> Option<usize> {
    [
        "/sys/fs/cgroup/memory.max",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
    ]
    .iter()
    .find_map(|path| std::fs::read_to_string(path).ok()?.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_are_read_as_written() {
        assert_eq!(parse("512MiB"), Ok(512 << 20));
        assert_eq!(parse("2 GiB"), Ok(2 << 30));
        assert_eq!(parse("1GB"), Ok(1_000_000_000));
        assert_eq!(parse("4096"), Ok(4096));
    }

    #[test]
    fn nonsense_and_zero_are_refused() {
        assert!(parse("lots").unwrap_err().contains("is not a size"));
        assert!(parse("0MiB").unwrap_err().contains("more than zero"));
        assert!(parse("-5MB").is_err());
    }

    #[test]
    fn the_default_limit_is_a_part_of_this_machines_memory() {
        let limit = default_memory_limit();
        assert!(limit >= 64 << 20, "{limit}");
        if let Some(machine) = physical_memory() {
            assert!(limit <= machine / 2);
        }
    }
}
