//! A backend that keeps the session in memory, for tests and short-lived bots.

use std::sync::Mutex;

use async_trait::async_trait;

use crate::backend::SessionBackend;
use crate::change::Change;
use crate::error::BoxError;
use crate::model::SessionData;

/// Keeps the session in memory; nothing survives the process.
///
/// Persisting a change applies it to the stored session, so the cost is O(change).
#[derive(Debug, Default)]
pub struct InMemoryBackend {
    data: Mutex<Option<SessionData>>,
}

impl InMemoryBackend {
    /// An empty backend.
    pub fn new() -> Self {
        Self::default()
    }

    /// A backend that already holds `data`.
    pub fn with_session(data: SessionData) -> Self {
        Self { data: Mutex::new(Some(data)) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<SessionData>> {
        // A panic while holding this lock cannot leave the session half-changed (every write is a
        // single assignment or `apply`), so a poisoned lock is still consistent.
        self.data.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[async_trait]
impl SessionBackend for InMemoryBackend {
    async fn load(&self) -> Result<Option<Vec<u8>>, BoxError> {
        match &*self.lock() {
            Some(data) => Ok(Some(crate::codec::encode(data)?)),
            None => Ok(None),
        }
    }

    async fn save(&self, data: &[u8]) -> Result<(), BoxError> {
        let decoded = if data.is_empty() { None } else { Some(crate::codec::decode(data)?) };
        *self.lock() = decoded;
        Ok(())
    }

    async fn delete(&self) -> Result<(), BoxError> {
        *self.lock() = None;
        Ok(())
    }

    fn name(&self) -> &str {
        "memory"
    }

    async fn load_session(&self) -> Result<Option<SessionData>, BoxError> {
        Ok(self.lock().clone())
    }

    async fn save_session(&self, data: &SessionData) -> Result<(), BoxError> {
        *self.lock() = Some(data.clone());
        Ok(())
    }

    async fn persist(&self, changes: &[Change], _full: &SessionData) -> Result<(), BoxError> {
        let mut guard = self.lock();
        guard.get_or_insert_with(SessionData::default).apply_all(changes);
        Ok(())
    }
}
