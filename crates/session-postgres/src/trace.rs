//! Timing and outcome of the backend's `tracing` spans: session-core's `span_timing!`, expanded
//! here so that the events keep this crate's target.

session_core::span_timing!(session_core::SessionError);
