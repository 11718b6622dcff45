//! Timing and outcome of the backend's `tracing` spans (see the book's Observability page for
//! every span and field).
//!
//! The clock is read only when the span is enabled: with no subscriber, or one that leaves
//! debug off, a call pays for a disabled span (a cached callsite check) and nothing else.

use std::future::Future;
use std::time::Instant;

use session_core::{BoxError, SessionError};
use tracing::{Instrument as _, Span};

/// Runs `op` inside `span`; records `elapsed_us` when it ends, and a debug event saying why it
/// failed when it does (errors never hold a key or a session).
pub(crate) async fn timed<T>(span: Span, op: impl Future<Output = Result<T, BoxError>>) -> Result<T, BoxError> {
    let start = (!span.is_disabled()).then(Instant::now);
    let result = op.instrument(span.clone()).await;
    if let Some(start) = start {
        span.record("elapsed_us", micros(start));
        if let Err(e) = &result {
            span.in_scope(|| match e.downcast_ref::<SessionError>() {
                Some(e) => failed(e),
                None => tracing::debug!(error = %e, "failed"),
            });
        }
    }
    result
}

/// Microseconds since `start`.
pub(crate) fn micros(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// A debug event for a failed operation, with the fields an operator acts on.
pub(crate) fn failed(e: &SessionError) {
    match e {
        SessionError::Locked { resource, pid: Some(pid) } => {
            tracing::debug!(resource = %resource, holder_pid = pid, "refused: the session is locked by another owner");
        }
        SessionError::Locked { resource, pid: None } => {
            tracing::debug!(resource = %resource, "refused: the session is locked by another owner (pid unknown)");
        }
        SessionError::Corrupt { resource, reason, preserved_at: Some(copy) } => tracing::debug!(
            resource = %resource,
            reason = %reason,
            copy = %copy.display(),
            "refused: the stored session is damaged"
        ),
        SessionError::Corrupt { resource, reason, preserved_at: None } => tracing::debug!(
            resource = %resource,
            reason = %reason,
            "refused: the stored session is damaged (no copy kept)"
        ),
        SessionError::UnsupportedVersion { what, found, supported } => {
            tracing::debug!(format = what, found, supported, "refused: written by a newer build")
        }
        other => tracing::debug!(error = %other, "failed"),
    }
}
