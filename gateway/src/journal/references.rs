//! Which messages are still kept, by their control id: how a source that
//! keeps its payloads outside the journal (DICOM objects as files) learns
//! which of its files retention has released.

use super::{Journal, JournalError};
use std::collections::HashSet;

impl Journal {
    /// Of `control_ids`, those a message from `source` still carries. Such a
    /// source keys its messages by the same id (a SOP instance UID is both),
    /// so the duplicate key's index finds them; control ids have no index
    /// of their own on the acknowledgement's path.
    pub async fn control_ids_kept(
        &self,
        source: &str,
        control_ids: Vec<String>,
    ) -> Result<HashSet<String>, JournalError> {
        let source = source.to_string();
        self.read(move |conn| {
            let mut kept = HashSet::new();
            let mut stmt = conn.prepare_cached(
                "SELECT 1 FROM message WHERE source = ?2 AND dedup_key = ?1 AND control_id = ?1 LIMIT 1",
            )?;
            for id in control_ids {
                if stmt.exists(rusqlite::params![id, source])? {
                    kept.insert(id);
                }
            }
            Ok(kept)
        })
        .await
    }
}
