//! [`span_timing!`](crate::span_timing): the timing and outcome helpers of a backend's `tracing`
//! spans, written once and expanded in each backend crate.
//!
//! Why a macro and not functions: `tracing` gives an event the target of the module its
//! `debug!` is written in (`module_path!()` at the expansion site). Functions here would log as
//! `session_core::…`; operators and the capture tests filter each backend by its own target
//! (`session_file`, `session_sqlite`, `session_libsql`). Expanded in the backend's module, the
//! same code keeps the backend's target.

/// Defines, in the calling module, the helpers a backend times its spans with:
///
/// - `timed(span, op).await`: runs the future `op` inside `span`; records `elapsed_us` on the
///   span when it ends, and a debug event saying why it failed when it does (errors never hold a
///   key, a token or a session string).
/// - `timed_sync(&span, op)`: the same for work on the current (blocking) thread.
/// - `micros(start)`: microseconds since `start`, saturating.
/// - `failed(&SessionError)`: the debug event for a failed operation, with the fields an operator
///   acts on (the lock holder's pid, where a damaged file's copy was kept, ...).
///
/// The argument is the error type the backend's operations return: [`SessionError`] or
/// [`BoxError`] (whose events name the [`SessionError`] inside when there is one).
///
/// The clock is read only when the span is enabled: with no subscriber, or one that leaves debug
/// off, an operation pays for a disabled span (a cached callsite check) and nothing else.
///
/// The calling crate depends on `tracing`. Hidden from the docs because it is the backends'
/// plumbing, not an API for users; it is exported only because a macro is the one way to share
/// code that must log under the caller's target.
///
/// [`SessionError`]: crate::SessionError
/// [`BoxError`]: crate::BoxError
///
/// ```
/// mod trace {
///     session_core::span_timing!(session_core::SessionError);
/// }
/// # fn main() {
/// let span = tracing::debug_span!("load", elapsed_us = tracing::field::Empty);
/// let r = trace::timed_sync(&span, || Ok::<_, session_core::SessionError>(7));
/// assert_eq!(r.ok(), Some(7));
/// # }
/// ```
#[doc(hidden)]
#[macro_export]
macro_rules! span_timing {
    ($error:ty) => {
        /// Runs `op` inside `span`; records `elapsed_us` on the span when it ends, and a debug
        /// event saying why it failed when it does.
        pub(crate) async fn timed<T>(
            span: ::tracing::Span,
            op: impl ::core::future::Future<Output = ::core::result::Result<T, $error>>,
        ) -> ::core::result::Result<T, $error> {
            use ::tracing::Instrument as _;
            let start = (!span.is_disabled()).then(::std::time::Instant::now);
            let result = op.instrument(span.clone()).await;
            if let Some(start) = start {
                span.record("elapsed_us", micros(start));
                if let Err(e) = &result {
                    span.in_scope(|| Failure::report(e));
                }
            }
            result
        }

        /// [`timed`] for work on the current (blocking) thread.
        // Not every backend has blocking work to time.
        #[allow(dead_code)]
        pub(crate) fn timed_sync<T>(
            span: &::tracing::Span,
            op: impl FnOnce() -> ::core::result::Result<T, $error>,
        ) -> ::core::result::Result<T, $error> {
            let start = (!span.is_disabled()).then(::std::time::Instant::now);
            let result = span.in_scope(op);
            if let Some(start) = start {
                span.record("elapsed_us", micros(start));
                if let Err(e) = &result {
                    span.in_scope(|| Failure::report(e));
                }
            }
            result
        }

        /// Microseconds since `start`.
        pub(crate) fn micros(start: ::std::time::Instant) -> u64 {
            u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX)
        }

        /// A debug event for a failed operation, with the fields an operator acts on.
        pub(crate) fn failed(e: &$crate::SessionError) {
            match e {
                $crate::SessionError::Locked { resource, pid: Some(pid), .. } => {
                    ::tracing::debug!(
                        resource = %resource,
                        holder_pid = pid,
                        "refused: the session is locked by another owner"
                    );
                }
                $crate::SessionError::Locked { resource, pid: None, .. } => {
                    ::tracing::debug!(
                        resource = %resource,
                        "refused: the session is locked by another owner (pid unknown)"
                    );
                }
                $crate::SessionError::Corrupt { resource, reason, preserved_at: Some(copy) } => ::tracing::debug!(
                    resource = %resource,
                    reason = %reason,
                    copy = %copy.display(),
                    "refused: the stored session is damaged"
                ),
                $crate::SessionError::Corrupt { resource, reason, preserved_at: None } => ::tracing::debug!(
                    resource = %resource,
                    reason = %reason,
                    "refused: the stored session is damaged (no copy kept)"
                ),
                $crate::SessionError::UnsupportedVersion { what, found, supported } => {
                    ::tracing::debug!(format = what, found, supported, "refused: written by a newer build")
                }
                other => ::tracing::debug!(error = %other, "failed"),
            }
        }

        /// An error a timed operation can end with: says why it failed, as a debug event.
        trait Failure {
            fn report(&self);
        }

        impl Failure for $crate::SessionError {
            fn report(&self) {
                failed(self)
            }
        }

        impl Failure for $crate::BoxError {
            fn report(&self) {
                match self.downcast_ref::<$crate::SessionError>() {
                    Some(e) => failed(e),
                    None => ::tracing::debug!(error = %self, "failed"),
                }
            }
        }
    };
}
