//! The ids of the hub's commands seen: the uplink refuses a command whose
//! id is here as replayed.
//!
//! An id is recorded in the same write that purges the ids issued before
//! `forget_before`; the uplink passes a bound older than any command it
//! would still accept by age, so a forgotten id can only come back too old
//! to run.

use super::{Journal, JournalError};
use rusqlite::params;

impl Journal {
    /// Records command `id` issued at `issued_at` (Unix ms) as seen;
    /// `false` when it was seen already. Ids issued before `forget_before`
    /// are purged in the same write.
    pub async fn first_sight_of_hub_command(
        &self,
        id: &str,
        issued_at: i64,
        forget_before: i64,
    ) -> Result<bool, JournalError> {
        let id = id.to_string();
        self.write(move |conn, cx| {
            conn.prepare_cached("DELETE FROM hub_command_seen WHERE issued_at < ?1")?
                .execute([forget_before])?;
            let added = conn
                .prepare_cached(
                    "INSERT OR IGNORE INTO hub_command_seen (id, issued_at, seen_at) VALUES (?1, ?2, ?3)",
                )?
                .execute(params![id, issued_at, cx.now])?;
            Ok(added == 1)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use crate::journal::{Journal, JournalOptions};

    #[tokio::test]
    async fn a_command_id_is_new_once_and_forgotten_only_past_the_bound() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(JournalOptions::new(dir.path().join("j.db"))).unwrap();
        assert!(j.first_sight_of_hub_command("c-1", 1_000, 0).await.unwrap());
        assert!(!j.first_sight_of_hub_command("c-1", 1_000, 0).await.unwrap());
        assert!(j
            .first_sight_of_hub_command("c-2", 5_000, 1_000)
            .await
            .unwrap());
        assert!(!j
            .first_sight_of_hub_command("c-1", 1_000, 1_000)
            .await
            .unwrap());
        // Issued before the bound: purged, so it reads as new again (the
        // uplink refuses it as too old before asking).
        assert!(j
            .first_sight_of_hub_command("c-1", 1_000, 1_001)
            .await
            .unwrap());
        j.close().await;
    }
}
