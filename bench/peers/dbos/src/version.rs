//! The version of DBOS this peer was built with.

/// The version of the `dbos` crate this binary was built with, read from the peer's
/// `Cargo.lock` (which `--locked` builds keep as committed); `unknown` if it is not there.
pub(crate) fn dbos_version() -> &'static str {
    locked_version(include_str!("../Cargo.lock"), "dbos").unwrap_or("unknown")
}

/// The version of `package` in the text of a `Cargo.lock`.
fn locked_version<'a>(lock: &'a str, package: &str) -> Option<&'a str> {
    let name_line = format!("name = \"{package}\"");
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line.trim() == name_line {
            let version = lines.next()?.trim();
            return version
                .strip_prefix("version = \"")
                .and_then(|v| v.strip_suffix('"'));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_locked_version_is_read() {
        let lock = "[[package]]\nname = \"dbos-macros\"\nversion = \"9.9.9\"\n\n\
                    [[package]]\nname = \"dbos\"\nversion = \"0.5.0\"\n";
        assert_eq!(locked_version(lock, "dbos"), Some("0.5.0"));
        assert_eq!(locked_version(lock, "tokio"), None);
        assert_ne!(dbos_version(), "unknown");
    }
}
