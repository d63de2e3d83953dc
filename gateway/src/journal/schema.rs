//! The journal's tables, created and upgraded by numbered migrations.
//!
//! `PRAGMA user_version` holds the number of the last migration applied. A
//! migration runs in the same transaction as the version bump, so a crash
//! mid-upgrade leaves the previous schema intact. A journal written by a newer
//! gateway is never migrated nor written: the journal opens it read-only
//! ([`newer_on_disk`], read before anything else touches the file).

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
    // ASTM analyzer identity (endpoint + H-5 sender name): the sender name
    // of each stored ASTM message, and orders aimed at one analyzer among
    // several sharing an endpoint (NULL: any analyzer on the endpoint).
    "
    CREATE TABLE astm_sender (
        message_id  INTEGER PRIMARY KEY REFERENCES message(id) ON DELETE CASCADE,
        sender      TEXT    NOT NULL
    );
    ALTER TABLE astm_order ADD COLUMN sender TEXT;
    ",
    // admin page, second step:
    // - the endpoint filter walks a destination's rows newest first;
    // - API tokens get an id, a role of their own and an expiry;
    // - statistics per endpoint and minute, kept by triggers on the event
    //   history (and on ASTM transmissions refused as incomplete), so the
    //   statistics page reads a few thousand rows instead of every message
    //   in its window. Delivery durations are counted in buckets
    //   (`stats_duration`) for the p95.
    "
    CREATE INDEX outbox_destination_message ON outbox(destination, message_id);

    CREATE TABLE admin_token_v2 (
        id           INTEGER PRIMARY KEY,
        token_hash   TEXT    NOT NULL UNIQUE,
        user_id      INTEGER NOT NULL REFERENCES admin_user(id) ON DELETE CASCADE,
        label        TEXT    NOT NULL,
        role         TEXT    NOT NULL CHECK (role IN ('admin', 'operator', 'viewer')),
        created_at   INTEGER NOT NULL,
        expires_at   INTEGER,
        last_used_at INTEGER
    );
    INSERT INTO admin_token_v2 (token_hash, user_id, label, role, created_at)
        SELECT t.token_hash, t.user_id, t.label, u.role, t.created_at
        FROM admin_token t JOIN admin_user u ON u.id = t.user_id;
    DROP TABLE admin_token;
    ALTER TABLE admin_token_v2 RENAME TO admin_token;

    CREATE TABLE stats_minute (
        endpoint          TEXT    NOT NULL,
        minute            INTEGER NOT NULL,
        received          INTEGER NOT NULL DEFAULT 0,
        rejected          INTEGER NOT NULL DEFAULT 0,
        attempts          INTEGER NOT NULL DEFAULT 0,
        delivered         INTEGER NOT NULL DEFAULT 0,
        failed            INTEGER NOT NULL DEFAULT 0,
        duration_sum      INTEGER NOT NULL DEFAULT 0,
        duration_max      INTEGER NOT NULL DEFAULT 0,
        last_received_at  INTEGER NOT NULL DEFAULT 0,
        last_delivered_at INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (endpoint, minute)
    ) WITHOUT ROWID;
    CREATE TABLE stats_duration (
        endpoint TEXT    NOT NULL,
        minute   INTEGER NOT NULL,
        bucket   INTEGER NOT NULL,
        n        INTEGER NOT NULL,
        PRIMARY KEY (endpoint, minute, bucket)
    ) WITHOUT ROWID;

    CREATE TRIGGER stats_received AFTER INSERT ON event WHEN NEW.kind = 'received' BEGIN
        INSERT INTO stats_minute (endpoint, minute, received, last_received_at)
            SELECT source, NEW.at / 60000, 1, NEW.at FROM message WHERE id = NEW.message_id
        ON CONFLICT (endpoint, minute) DO UPDATE SET
            received = received + 1,
            last_received_at = max(last_received_at, excluded.last_received_at);
    END;
    CREATE TRIGGER stats_attempt AFTER INSERT ON event WHEN NEW.kind = 'attempt' BEGIN
        INSERT INTO stats_minute (endpoint, minute, attempts, delivered, failed, duration_sum, duration_max, last_delivered_at)
            SELECT destination, NEW.at / 60000, 1,
                   NEW.outcome IS 'delivered', NEW.outcome IS NOT 'delivered',
                   iif(NEW.outcome IS 'delivered', coalesce(NEW.duration_ms, 0), 0),
                   iif(NEW.outcome IS 'delivered', coalesce(NEW.duration_ms, 0), 0),
                   iif(NEW.outcome IS 'delivered', NEW.at, 0)
            FROM outbox WHERE id = NEW.outbox_id
        ON CONFLICT (endpoint, minute) DO UPDATE SET
            attempts = attempts + 1,
            delivered = delivered + excluded.delivered,
            failed = failed + excluded.failed,
            duration_sum = duration_sum + excluded.duration_sum,
            duration_max = max(duration_max, excluded.duration_max),
            last_delivered_at = max(last_delivered_at, excluded.last_delivered_at);
        INSERT INTO stats_duration (endpoint, minute, bucket, n)
            SELECT destination, NEW.at / 60000, CASE
                WHEN coalesce(NEW.duration_ms, 0) <= 1 THEN 0
                WHEN NEW.duration_ms <= 2 THEN 1
                WHEN NEW.duration_ms <= 5 THEN 2
                WHEN NEW.duration_ms <= 10 THEN 3
                WHEN NEW.duration_ms <= 20 THEN 4
                WHEN NEW.duration_ms <= 50 THEN 5
                WHEN NEW.duration_ms <= 100 THEN 6
                WHEN NEW.duration_ms <= 200 THEN 7
                WHEN NEW.duration_ms <= 500 THEN 8
                WHEN NEW.duration_ms <= 1000 THEN 9
                WHEN NEW.duration_ms <= 2000 THEN 10
                WHEN NEW.duration_ms <= 5000 THEN 11
                WHEN NEW.duration_ms <= 10000 THEN 12
                WHEN NEW.duration_ms <= 30000 THEN 13
                WHEN NEW.duration_ms <= 60000 THEN 14
                ELSE 15 END, 1
            FROM outbox WHERE id = NEW.outbox_id AND NEW.outcome IS 'delivered'
        ON CONFLICT (endpoint, minute, bucket) DO UPDATE SET n = n + 1;
    END;
    CREATE TRIGGER stats_rejected AFTER INSERT ON astm_incomplete BEGIN
        INSERT INTO stats_minute (endpoint, minute, rejected) VALUES (NEW.endpoint, NEW.at / 60000, 1)
        ON CONFLICT (endpoint, minute) DO UPDATE SET rejected = rejected + 1;
    END;

    INSERT INTO stats_minute (endpoint, minute, received, last_received_at)
        SELECT m.source, e.at / 60000, count(*), max(e.at)
        FROM event e JOIN message m ON m.id = e.message_id WHERE e.kind = 'received'
        GROUP BY 1, 2;
    INSERT INTO stats_minute (endpoint, minute, attempts, delivered, failed, duration_sum, duration_max, last_delivered_at)
        SELECT o.destination, e.at / 60000, count(*),
               sum(e.outcome IS 'delivered'), sum(e.outcome IS NOT 'delivered'),
               sum(iif(e.outcome IS 'delivered', coalesce(e.duration_ms, 0), 0)),
               max(iif(e.outcome IS 'delivered', coalesce(e.duration_ms, 0), 0)),
               max(iif(e.outcome IS 'delivered', e.at, 0))
        FROM event e JOIN outbox o ON o.id = e.outbox_id WHERE e.kind = 'attempt'
        GROUP BY 1, 2
    ON CONFLICT (endpoint, minute) DO UPDATE SET
        attempts = excluded.attempts, delivered = excluded.delivered, failed = excluded.failed,
        duration_sum = excluded.duration_sum, duration_max = excluded.duration_max,
        last_delivered_at = excluded.last_delivered_at;
    INSERT INTO stats_duration (endpoint, minute, bucket, n)
        SELECT o.destination, e.at / 60000, CASE
                WHEN coalesce(e.duration_ms, 0) <= 1 THEN 0
                WHEN e.duration_ms <= 2 THEN 1
                WHEN e.duration_ms <= 5 THEN 2
                WHEN e.duration_ms <= 10 THEN 3
                WHEN e.duration_ms <= 20 THEN 4
                WHEN e.duration_ms <= 50 THEN 5
                WHEN e.duration_ms <= 100 THEN 6
                WHEN e.duration_ms <= 200 THEN 7
                WHEN e.duration_ms <= 500 THEN 8
                WHEN e.duration_ms <= 1000 THEN 9
                WHEN e.duration_ms <= 2000 THEN 10
                WHEN e.duration_ms <= 5000 THEN 11
                WHEN e.duration_ms <= 10000 THEN 12
                WHEN e.duration_ms <= 30000 THEN 13
                WHEN e.duration_ms <= 60000 THEN 14
                ELSE 15 END, count(*)
        FROM event e JOIN outbox o ON o.id = e.outbox_id WHERE e.kind = 'attempt' AND e.outcome IS 'delivered'
        GROUP BY 1, 2, 3;
    INSERT INTO stats_minute (endpoint, minute, rejected)
        SELECT endpoint, at / 60000, count(*) FROM astm_incomplete WHERE true GROUP BY 1, 2
    ON CONFLICT (endpoint, minute) DO UPDATE SET rejected = excluded.rejected;
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
    // ... except the log page's filter by source, which walks one source's
    // messages newest first by id: (source, received_at) holds them in
    // time order, so every match had to be read and sorted (a whole
    // source of a million-message journal for one page).
    "
    CREATE INDEX message_source ON message(source);
    ",
    // What the source assumed to read a message (the envelope's decode
    // hints), so a transform at delivery time reads it the same way.
    "
    ALTER TABLE message ADD COLUMN charset TEXT;
    ALTER TABLE message ADD COLUMN time_zone TEXT;
    ",
    // The hub uplink's durable events: journalled when they happen, deleted
    // once the broker has acknowledged their publication. AUTOINCREMENT:
    // an id is never given twice, even after the newest row is deleted, so
    // the hub can deduplicate by (epoch, id). The epoch tells this journal
    // from one made afresh on the same device. A delivery given up on is an
    // event in the same transaction that marks it dead.
    "
    CREATE TABLE hub_event (
        id       INTEGER PRIMARY KEY AUTOINCREMENT,
        at       INTEGER NOT NULL,
        kind     TEXT    NOT NULL,
        subject  TEXT,
        detail   TEXT
    );
    CREATE TABLE hub_meta (
        key    TEXT PRIMARY KEY,
        value  TEXT NOT NULL
    ) WITHOUT ROWID;
    INSERT INTO hub_meta (key, value) VALUES ('epoch', lower(hex(randomblob(8))));
    CREATE TRIGGER hub_event_dead AFTER UPDATE OF state ON outbox
        WHEN NEW.state = 3 AND OLD.state <> 3 BEGIN
        INSERT INTO hub_event (at, kind, subject, detail)
            VALUES (NEW.updated_at, 'message.dead', NEW.destination,
                    json_object('message_id', NEW.message_id, 'outbox_id', NEW.id,
                                'attempts', NEW.attempts, 'error', NEW.last_error));
    END;
    ",
    // The ids of the hub's commands seen, so a replayed one is refused. A
    // row is kept while a command of its issue time could still be young
    // enough to run, then purged by `issued_at`.
    "
    CREATE TABLE hub_command_seen (
        id         TEXT    PRIMARY KEY,
        issued_at  INTEGER NOT NULL,
        seen_at    INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX hub_command_seen_issued ON hub_command_seen(issued_at);
    ",
    // Orders from the hub carry the hub's reference (the ServiceRequest's
    // requisition or identifier), unique per analyzer: a QoS 1 order
    // delivered twice is one order, and a cancellation finds its order.
    "
    ALTER TABLE astm_order ADD COLUMN hub_ref TEXT;
    CREATE UNIQUE INDEX astm_order_hub_ref ON astm_order(analyzer, hub_ref) WHERE hub_ref IS NOT NULL;
    ",
    // Modality Worklist entries (`worklist.rs`): one per worklist and
    // order key, replaced by each later message about the same order.
    "
    CREATE TABLE worklist_item (
        id         INTEGER PRIMARY KEY,
        worklist   TEXT    NOT NULL,
        key        TEXT    NOT NULL,
        state      TEXT    NOT NULL,
        start      TEXT    NOT NULL,
        expires_at INTEGER NOT NULL,
        item       TEXT    NOT NULL,
        message_id INTEGER,
        updated_at INTEGER NOT NULL,
        UNIQUE (worklist, key)
    );
    CREATE INDEX worklist_item_offered ON worklist_item(worklist, state, start);
    CREATE INDEX worklist_item_expires ON worklist_item(expires_at);
    ",
    // The DICOM studies a store SCP has received objects of, kept in each
    // object's ingest transaction: when the last one arrived, how many
    // have (`version`), and up to which version the study was announced
    // as an ImagingStudy; and which messages hold a study's objects.
    "
    CREATE TABLE dicom_study (
        source          TEXT    NOT NULL,
        study_uid       TEXT    NOT NULL,
        last_object_at  INTEGER NOT NULL,
        version         INTEGER NOT NULL,
        announced       INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (source, study_uid)
    ) WITHOUT ROWID;
    CREATE INDEX dicom_study_due ON dicom_study(source, last_object_at) WHERE version > announced;
    CREATE TABLE dicom_study_object (
        source      TEXT    NOT NULL,
        study_uid   TEXT    NOT NULL,
        message_id  INTEGER NOT NULL,
        PRIMARY KEY (source, study_uid, message_id)
    ) WITHOUT ROWID;
    CREATE INDEX dicom_study_object_message ON dicom_study_object(message_id);
    ",
    // Modality Performed Procedure Steps: each step's status and its
    // attributes so far (the N-CREATE's with every N-SET laid over them),
    // kept in the transaction of the message that changed them.
    "
    CREATE TABLE mpps_step (
        source        TEXT    NOT NULL,
        sop_instance  TEXT    NOT NULL,
        status        TEXT    NOT NULL,
        attributes    TEXT    NOT NULL,
        updated_at    INTEGER NOT NULL,
        PRIMARY KEY (source, sop_instance)
    ) WITHOUT ROWID;
    ",
    // The queue of each destination per minute, its peak over the samples
    // taken while anything waits (`stats.rs`): an outage's backlog over
    // time. Idle minutes write nothing.
    "
    CREATE TABLE stats_queue (
        endpoint      TEXT    NOT NULL,
        minute        INTEGER NOT NULL,
        waiting       INTEGER NOT NULL,
        oldest_age_ms INTEGER NOT NULL,
        PRIMARY KEY (endpoint, minute)
    ) WITHOUT ROWID;
    ",
    // The order and specimen ids each message names, for the log page's
    // search (`search_keys.rs`): filled after the commit, off the
    // acknowledgement's path, up to the message id in `search_key_progress`.
    "
    CREATE TABLE search_key (
        value       TEXT    NOT NULL,
        message_id  INTEGER NOT NULL,
        PRIMARY KEY (value, message_id)
    ) WITHOUT ROWID;
    CREATE INDEX search_key_message ON search_key(message_id);
    CREATE TABLE search_key_progress (
        id           INTEGER PRIMARY KEY CHECK (id = 1),
        indexed_to   INTEGER NOT NULL
    );
    INSERT INTO search_key_progress (id, indexed_to) VALUES (1, 0);
    ",
    // Flood protection and sandbox mode (`breakers.rs`): a destination's
    // tripped circuit breaker, kept until an operator resumes it (a restart
    // does not); and what a sandboxed destination would have sent, one row
    // per outbox row settled as captured (state delivered, like a discard
    // is state dead with its row in `outbox_discard`).
    "
    CREATE TABLE endpoint_breaker (
        endpoint    TEXT    PRIMARY KEY,
        tripped_at  INTEGER NOT NULL,
        failures    INTEGER NOT NULL,
        reason      TEXT    NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE outbox_capture (
        outbox_id  INTEGER PRIMARY KEY,
        at         INTEGER NOT NULL,
        request    TEXT    NOT NULL
    );
    ",
    // The acknowledgement's path writes only what durability and duplicate
    // detection need (`ingest.rs`):
    // - no `received` or `routed` events: the message row and its outbox
    //   rows are those records, and the history derives them;
    // - statistics are folded from the rows every few seconds
    //   (`stats_fold.rs`) instead of counted by triggers on each insert;
    // - control ids and patient ids, whose values scatter over the whole
    //   index, are indexed by the search indexer into `search_key` after
    //   the commit (`search_keys.rs`); the log page reads the unindexed
    //   tail itself;
    // - `message(source, received_at)` goes: the newest message of a
    //   source is found by `message(source)`, which ends in the id.
    // The triggers have counted every row so far: the watermarks start at
    // the newest ones. The control and patient ids of the messages the
    // indexer has read are recorded here, once.
    "
    DROP TRIGGER stats_received;
    DROP TRIGGER stats_attempt;
    DROP TRIGGER stats_rejected;
    CREATE TABLE stats_progress (
        id             INTEGER PRIMARY KEY CHECK (id = 1),
        message_to     INTEGER NOT NULL,
        event_to       INTEGER NOT NULL,
        incomplete_to  INTEGER NOT NULL
    );
    INSERT INTO stats_progress (id, message_to, event_to, incomplete_to) VALUES (1,
        (SELECT coalesce(max(id), 0) FROM message),
        (SELECT coalesce(max(id), 0) FROM event),
        (SELECT coalesce(max(id), 0) FROM astm_incomplete));
    DROP INDEX message_control;
    DROP INDEX message_patient;
    DROP INDEX message_source_received;
    INSERT OR IGNORE INTO search_key (value, message_id)
        SELECT char(1) || 'c' || control_id, id FROM message
        WHERE control_id IS NOT NULL AND id <= (SELECT indexed_to FROM search_key_progress);
    INSERT OR IGNORE INTO search_key (value, message_id)
        SELECT char(1) || 'p' || patient_id, id FROM message
        WHERE patient_id IS NOT NULL AND id <= (SELECT indexed_to FROM search_key_progress);
    ",
];

/// Upper bounds (ms) of the delivery-duration buckets of `stats_duration`;
/// the last bucket has no bound (the window's longest duration is used).
pub const DURATION_BUCKETS_MS: &[i64] = &[
    1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 30000, 60000,
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

/// The schema version of the journal at `path` when it is newer than this
/// build's, read through a read-only connection (nothing is written, not
/// even a WAL); `None` for a missing file or one this build can migrate.
pub fn newer_on_disk(path: &std::path::Path) -> Result<Option<i64>, super::JournalError> {
    if !path.exists() {
        return Ok(None);
    }
    let found: i64 =
        super::external::open_reader(path)?.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    Ok((found > VERSION).then_some(found))
}

/// What a journal of a newer schema means, for the log and every refusal.
pub fn newer_schema(found: i64) -> String {
    format!(
        "the journal was written by a newer gateway (schema version {found}, this one knows up to \
         {VERSION}): it is open read-only, every message is refused and nothing is written or \
         migrated until a gateway that knows version {found} runs again"
    )
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
