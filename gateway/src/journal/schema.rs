//! The journal's tables, created and upgraded by numbered migrations.
//!
//! `PRAGMA user_version` holds the number of the last migration applied. A
//! migration runs in the same transaction as the version bump, so a crash
//! mid-upgrade leaves the previous schema intact. A journal written by a newer
//! gateway is refused rather than misread.

use rusqlite::Connection;

/// Outbox row states, stored as small integers.
pub const QUEUED: i64 = 0;
pub const LEASED: i64 = 1;
pub const DELIVERED: i64 = 2;
pub const DEAD: i64 = 3;

const MIGRATIONS: &[&str] = &[
    // 1: messages, their outbox rows and the event history.
    "
    CREATE TABLE message (
        id            INTEGER PRIMARY KEY,
        source        TEXT    NOT NULL,
        dedup_key     TEXT,
        message_type  TEXT    NOT NULL,
        content_type  TEXT    NOT NULL,
        control_id    TEXT,
        patient_id    TEXT,
        received_at   INTEGER NOT NULL,
        payload       BLOB    NOT NULL,
        ack           BLOB
    );
    CREATE UNIQUE INDEX message_dedup ON message(source, dedup_key) WHERE dedup_key IS NOT NULL;
    CREATE INDEX message_received ON message(received_at);

    CREATE TABLE outbox (
        id              INTEGER PRIMARY KEY,
        message_id      INTEGER NOT NULL REFERENCES message(id),
        destination     TEXT    NOT NULL,
        transform       TEXT    NOT NULL,
        lane            TEXT    NOT NULL,
        state           INTEGER NOT NULL CHECK (state IN (0, 1, 2, 3)),
        attempts        INTEGER NOT NULL DEFAULT 0,
        next_attempt_at INTEGER NOT NULL,
        lease_token     INTEGER,
        created_at      INTEGER NOT NULL,
        updated_at      INTEGER NOT NULL,
        last_error      TEXT
    );
    CREATE INDEX outbox_message ON outbox(message_id);
    CREATE INDEX outbox_pending ON outbox(destination, lane, id) WHERE state IN (0, 1);
    CREATE INDEX outbox_state ON outbox(destination, state, lane);

    CREATE TABLE event (
        id          INTEGER PRIMARY KEY,
        at          INTEGER NOT NULL,
        message_id  INTEGER,
        outbox_id   INTEGER,
        kind        TEXT    NOT NULL,
        outcome     TEXT,
        duration_ms INTEGER,
        detail      TEXT,
        actor       TEXT
    );
    CREATE INDEX event_message ON event(message_id);
    CREATE INDEX event_at ON event(at);
    ",
    // ASTM: orders kept for analyzers (host query, download) and
    // transmissions that never became a message, kept for inspection.
    "
    CREATE TABLE astm_order (
        id            INTEGER PRIMARY KEY,
        analyzer      TEXT    NOT NULL,
        specimen_id   TEXT    NOT NULL,
        patient_id    TEXT    NOT NULL DEFAULT '',
        patient_name  TEXT    NOT NULL DEFAULT '',
        tests         TEXT    NOT NULL,
        priority      TEXT    NOT NULL DEFAULT 'R',
        state         TEXT    NOT NULL DEFAULT 'pending',
        created_at    INTEGER NOT NULL,
        sent_at       INTEGER,
        send_count    INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX astm_order_pending ON astm_order(analyzer, state, id);
    CREATE INDEX astm_order_specimen ON astm_order(analyzer, specimen_id);

    CREATE TABLE astm_incomplete (
        id          INTEGER PRIMARY KEY,
        endpoint    TEXT    NOT NULL,
        at          INTEGER NOT NULL,
        reason      TEXT    NOT NULL,
        records     BLOB    NOT NULL,
        partial     BLOB    NOT NULL
    );
    CREATE INDEX astm_incomplete_endpoint ON astm_incomplete(endpoint, id);
    ",
    // admin page: users, sessions, API tokens, the audit log, discarded
    // outbox rows, and the indexes its filters and keyset paging need.
    "
    CREATE TABLE admin_user (
        id            INTEGER PRIMARY KEY,
        name          TEXT    NOT NULL UNIQUE,
        role          TEXT    NOT NULL CHECK (role IN ('admin', 'operator', 'viewer')),
        password_hash TEXT    NOT NULL,
        created_at    INTEGER NOT NULL,
        failed_logins INTEGER NOT NULL DEFAULT 0,
        locked_until  INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE admin_session (
        token_hash  TEXT    PRIMARY KEY,
        user_id     INTEGER NOT NULL REFERENCES admin_user(id) ON DELETE CASCADE,
        csrf        TEXT    NOT NULL,
        created_at  INTEGER NOT NULL,
        expires_at  INTEGER NOT NULL
    );
    CREATE INDEX admin_session_expiry ON admin_session(expires_at);
    CREATE TABLE admin_token (
        token_hash  TEXT    PRIMARY KEY,
        user_id     INTEGER NOT NULL REFERENCES admin_user(id) ON DELETE CASCADE,
        label       TEXT    NOT NULL,
        created_at  INTEGER NOT NULL
    );
    CREATE TABLE audit (
        id      INTEGER PRIMARY KEY,
        at      INTEGER NOT NULL,
        actor   TEXT    NOT NULL,
        action  TEXT    NOT NULL,
        target  TEXT,
        detail  TEXT
    );
    CREATE TABLE outbox_discard (
        outbox_id INTEGER PRIMARY KEY,
        at        INTEGER NOT NULL,
        actor     TEXT    NOT NULL,
        reason    TEXT    NOT NULL
    );
    CREATE INDEX message_source ON message(source);
    CREATE INDEX message_source_received ON message(source, received_at);
    CREATE INDEX message_type ON message(message_type);
    CREATE INDEX message_control ON message(control_id) WHERE control_id IS NOT NULL;
    CREATE INDEX message_patient ON message(patient_id) WHERE patient_id IS NOT NULL;
    CREATE INDEX outbox_state_message ON outbox(state, message_id);
    CREATE INDEX event_outbox ON event(outbox_id) WHERE outbox_id IS NOT NULL;
    ",
    // Duplicates are recognised by key and content within a window, so a
    // sender that reuses a control id for a different message is stored
    // again instead of being told "already have it"; an outbox row may ask
    // for an application acknowledgement to a reply endpoint once it settles.
    "
    ALTER TABLE message ADD COLUMN payload_hash BLOB;
    DROP INDEX message_dedup;
    CREATE INDEX message_dedup_recent ON message(source, dedup_key, received_at) WHERE dedup_key IS NOT NULL;
    ALTER TABLE outbox ADD COLUMN reply_to TEXT;
    -- message_source_received(source, received_at) serves every lookup by
    -- source; one index fewer to update per message.
    DROP INDEX message_source;
    ",
];

/// The schema version this build writes.
pub const VERSION: i64 = MIGRATIONS.len() as i64;

#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    #[error("the journal has schema version {found}, newer than this gateway's {VERSION}; refusing to touch it")]
    TooNew { found: i64 },
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
}

/// Brings the schema up to [`VERSION`].
pub fn migrate(conn: &mut Connection) -> Result<(), MigrationError> {
    let found: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if found > VERSION {
        return Err(MigrationError::TooNew { found });
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", index as i64 + 1)?;
        tx.commit()?;
    }
    Ok(())
}
