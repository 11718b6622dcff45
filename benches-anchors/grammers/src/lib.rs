//! Only a bench target (`benches/grammers.rs`).
