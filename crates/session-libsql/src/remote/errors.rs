//! The libsql client's errors, mapped to the `SessionError` kind a caller acts on.

use session_core::SessionError;

/// Maps a libsql client error to the kind a caller acts on. The client reports transport and
/// HTTP failures as text only (its error types are private), so the text is what is matched.
pub(crate) fn map_error(e: libsql::Error, resource: &str) -> SessionError {
    let text = e.to_string();
    let transport = matches!(e, libsql::Error::ConnectionFailed(_))
        || text.contains("http error")
        || text.contains("stream closed")
        || text.contains("Received an invalid baton")
        // A stream the server expired while idle: nothing of the request ran.
        || text.contains("STREAM_EXPIRED");
    let status = http_status(&text);
    if session_sql::lease::is_fence_violation(&text) {
        // The write's fence found another owner's token: nothing of the transaction was applied.
        return SessionError::LeaseLost {
            resource: resource.to_owned(),
            reason: "the write was refused: another owner took the session over".to_owned(),
        };
    }
    if text.contains("InvalidUri") {
        // The URL passed the first checks but the HTTP layer cannot use it: retrying cannot help.
        return SessionError::invalid(format!("libSQL URL {resource}"), "not a valid http(s) URL");
    }
    let source: session_core::BoxError = Box::new(e);
    match status {
        Some(401 | 403) => SessionError::Unauthorized { resource: resource.to_owned(), source },
        Some(408 | 429 | 500..=599) => SessionError::Unavailable { resource: resource.to_owned(), source },
        _ if transport => SessionError::Unavailable { resource: resource.to_owned(), source },
        _ => SessionError::Backend { backend: "libsql".to_owned(), source },
    }
}

fn http_status(text: &str) -> Option<u16> {
    let (_, rest) = text.split_once("status=")?;
    rest.get(..3)?.parse().ok()
}

/// The server refused to send a response over its size limit.
pub(super) fn too_large(e: &libsql::Error) -> bool {
    e.to_string().contains("RESPONSE_TOO_LARGE")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        assert_eq!(http_status("Hrana: `api error: `status=401 Unauthorized, body=x``"), Some(401));
        assert_eq!(http_status("no status"), None);
    }
}
