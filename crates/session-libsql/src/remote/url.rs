//! The server's URL: which schemes are accepted, the URL the HTTP client is given, and the form
//! messages and logs show (no credentials, no query).

use session_core::SessionError;

/// The URL as messages and logs show it: without `user:password@` and without the query
/// (which may carry `authToken=`).
pub(crate) fn shown_url(url: &str) -> String {
    let no_query = url.split(['?', '#']).next().unwrap_or_default();
    match no_query.split_once("://") {
        Some((scheme, rest)) => match rest.split_once('@') {
            Some((_, host)) => format!("{scheme}://***@{host}"),
            None => no_query.to_owned(),
        },
        None => no_query.to_owned(),
    }
}

/// Checks the URL and gives the one the HTTP client uses (`libsql://` is HTTPS).
pub(crate) fn http_url(url: &str) -> Result<String, SessionError> {
    let shown = shown_url(url);
    let bad = |reason: &str| SessionError::invalid("libSQL URL", format!("{shown:?}: {reason}"));
    let (scheme, rest) =
        url.split_once("://").ok_or_else(|| bad("no scheme (expected libsql://, https:// or http://)"))?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if host.is_empty() {
        return Err(bad("no host"));
    }
    if host.contains('@') {
        return Err(bad("credentials belong in the auth token, not in the URL"));
    }
    // host, [v6]:port or host:port; a port is 1 to 65535 (anything else would be looked up as a
    // host name and come back as "unreachable", which a caller retries forever).
    let (name, port) = match host.strip_prefix('[') {
        Some(v6) => {
            let (addr, after) = v6.split_once(']').ok_or_else(|| bad("an IPv6 address without its closing ]"))?;
            if addr.is_empty() {
                return Err(bad("an empty IPv6 address"));
            }
            match after {
                "" => ("v6", None),
                p => ("v6", Some(p.strip_prefix(':').ok_or_else(|| bad("text after the IPv6 address"))?)),
            }
        }
        None => match host.rsplit_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (host, None),
        },
    };
    if name.is_empty() {
        return Err(bad("no host"));
    }
    if let Some(port) = port {
        if !matches!(port.parse::<u16>(), Ok(p) if p > 0) {
            return Err(bad("the port is not a number from 1 to 65535"));
        }
    }
    match scheme.to_ascii_lowercase().as_str() {
        "libsql" | "https" => Ok(format!("https://{rest}")),
        "http" => Ok(format!("http://{rest}")),
        other => Err(bad(&format!("unsupported scheme {other:?} (expected libsql://, https:// or http://)"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(http_url("libsql://db-org.turso.io").ok().as_deref(), Some("https://db-org.turso.io"));
        assert_eq!(http_url("https://h:8080/x").ok().as_deref(), Some("https://h:8080/x"));
        assert_eq!(http_url("http://127.0.0.1:1").ok().as_deref(), Some("http://127.0.0.1:1"));
        assert_eq!(http_url("http://[::1]:8080").ok().as_deref(), Some("http://[::1]:8080"));
        for bad in [
            "db.turso.io",
            "ws://h",
            "https://",
            "https://user:pw@h",
            "http://h:notaport",
            "http://h:0",
            "http://h:65536",
            "http://[::1",
            "http://[]:1",
            "http://:80",
        ] {
            assert!(matches!(http_url(bad), Err(SessionError::Invalid { .. })), "{bad}");
        }
    }
}
