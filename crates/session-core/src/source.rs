//! Where a client's session lives: a backend value, or a path that chooses one.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::backend::SessionBackend;

/// A session backend, or a path whose form chooses the backend (the client decides: `.db`
/// selects SQLite, anything else the binary file).
///
/// Anything that implements [`SessionBackend`] converts into it, and so do `&str`, `String`,
/// `&Path` and `PathBuf`; this is what lets `ClientBuilder::session` take either.
///
/// Exhaustive on purpose: clients match on it, and a third form would be a new major version.
#[derive(Clone)]
pub enum SessionSource {
    /// A backend value.
    Backend(Arc<dyn SessionBackend>),
    /// A path.
    Path(PathBuf),
}

impl std::fmt::Debug for SessionSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SessionSource::Backend(b) => f.debug_tuple("Backend").field(&b.name()).finish(),
            SessionSource::Path(p) => f.debug_tuple("Path").field(p).finish(),
        }
    }
}

impl<B: SessionBackend + 'static> From<B> for SessionSource {
    fn from(backend: B) -> Self {
        SessionSource::Backend(Arc::new(backend))
    }
}

impl From<&str> for SessionSource {
    fn from(path: &str) -> Self {
        SessionSource::Path(PathBuf::from(path))
    }
}

impl From<String> for SessionSource {
    fn from(path: String) -> Self {
        SessionSource::Path(PathBuf::from(path))
    }
}

impl From<&Path> for SessionSource {
    fn from(path: &Path) -> Self {
        SessionSource::Path(path.to_path_buf())
    }
}

impl From<PathBuf> for SessionSource {
    fn from(path: PathBuf) -> Self {
        SessionSource::Path(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::InMemoryBackend;

    #[test]
    fn backends_and_paths_both_convert() {
        assert!(matches!(SessionSource::from(InMemoryBackend::new()), SessionSource::Backend(_)));
        assert!(matches!(SessionSource::from(Arc::new(InMemoryBackend::new())), SessionSource::Backend(_)));
        assert!(matches!(SessionSource::from("a.session"), SessionSource::Path(p) if p == Path::new("a.session")));
        assert!(matches!(SessionSource::from(PathBuf::from("b.db")), SessionSource::Path(_)));
    }
}
