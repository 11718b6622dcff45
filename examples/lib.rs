//! Runnable examples of layer-client sessions; see the `[[example]]` targets.
