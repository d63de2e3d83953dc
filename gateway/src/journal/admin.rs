//! What the admin page reads and writes: users, sessions, API tokens, the
//! audit log, message listing with filters and keyset paging, statistics,
//! the live event feed, and the retry and discard a person asks for.
//!
//! Message lists page by id (newest first, `id < before`), never by offset,
//! so page 10,000 costs what page 1 costs. A status filter is answered from
//! the outbox side (`outbox(state, message_id)`), a type, control id or
//! patient filter from its own index on `message`; each of those indexes
//! ends in the rowid, so the newest-first walk needs no sort. An endpoint
//! filter merges two such walks: messages from it (`message(source)`) and
//! messages routed to it (`outbox(destination, message_id)`). A time range
//! is checked on `received_at` itself, never assumed from ids (the clock can
//! step back). Alone, it walks `message(received_at)` newest first (the page
//! is then in time order, `before` keyed on the time of that message); with
//! other filters, its index drives the walk only when the range is narrow.
//!
//! Statistics come from `stats_minute` and `stats_duration`, per endpoint
//! and minute, kept by triggers on the event history (see the schema), so a
//! week on a million-message journal is a few thousand rows to add up.
//!
//! Every change made here writes an `audit` row in the same transaction as
//! the change; so does every view of a payload (see [`Journal::audit`]).

use super::schema::{DEAD, DELIVERED, DURATION_BUCKETS_MS, LEASED, QUEUED};
use super::{Journal, JournalError};
use rusqlite::{params, params_from_iter, Connection, OptionalExtension};
use std::collections::BTreeMap;
use std::path::Path;

/// A person who may use the admin page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminUser {
    pub id: i64,
    pub name: String,
    pub role: String,
    pub password_hash: String,
    pub created_at: i64,
    pub failed_logins: u32,
    pub locked_until: i64,
}

/// A live session, found by the hash of its cookie.
#[derive(Debug, Clone)]
pub struct SessionRecord {
    pub user: AdminUser,
    pub csrf: String,
    pub expires_at: i64,
}

/// One line of the audit log.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AuditRecord {
    pub id: i64,
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub target: Option<String>,
    pub detail: Option<String>,
}

/// What a message list may be narrowed to. Empty fields do not filter.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(default)]
pub struct MessageFilter {
    /// Source endpoint, or a destination the message was routed to.
    pub endpoint: Option<String>,
    /// `queued`, `delivered`, `dead`, `failing` (queued after a failed
    /// attempt) or `errors` (dead or failing).
    pub status: Option<String>,
    pub message_type: Option<String>,
    pub control_id: Option<String>,
    pub patient_id: Option<String>,
    /// Unix ms, inclusive.
    pub from: Option<i64>,
    /// Unix ms, exclusive.
    pub to: Option<i64>,
}

impl MessageFilter {
    pub const STATUSES: &'static [&'static str] =
        &["queued", "delivered", "dead", "failing", "errors"];

    fn normalized(mut self) -> Self {
        for f in [
            &mut self.endpoint,
            &mut self.status,
            &mut self.message_type,
            &mut self.control_id,
            &mut self.patient_id,
        ] {
            if f.as_deref().is_some_and(|s| s.trim().is_empty()) {
                *f = None;
            }
        }
        self
    }
}

/// One destination's state for one message, as a list shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DeliveryState {
    pub outbox_id: i64,
    pub destination: String,
    pub state: &'static str,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub discarded: bool,
}

/// One row of a message list.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MessageSummary {
    pub id: i64,
    pub received_at: i64,
    pub source: String,
    pub message_type: String,
    pub control_id: Option<String>,
    pub patient_id: Option<String>,
    pub size: i64,
    /// `delivered`, `queued`, `failing`, `dead` or `discarded`: the worst
    /// state among its destinations.
    pub status: &'static str,
    pub deliveries: Vec<DeliveryState>,
}

/// A page of messages, newest first.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MessagePage {
    pub messages: Vec<MessageSummary>,
    /// Pass as `before` for the next (older) page; `None` on the last page.
    pub next_before: Option<i64>,
}

/// Activity of one endpoint, for the dashboard.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct EndpointActivity {
    pub name: String,
    pub last_received_at: Option<i64>,
    pub received_since: u64,
    pub queued: u64,
    pub in_flight: u64,
    pub failing: u64,
    pub dead: u64,
    pub delivered_since: u64,
    pub last_delivered_at: Option<i64>,
    /// The error of the oldest row waiting to be retried.
    pub last_error: Option<String>,
    /// The error of the newest dead letter.
    pub dead_error: Option<String>,
}

/// Statistics of one endpoint over a window.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct EndpointStats {
    pub name: String,
    pub received: u64,
    pub attempts: u64,
    pub delivered: u64,
    pub failed: u64,
    /// Delivered attempts / all attempts, 0..1; `None` without attempts.
    pub success_rate: Option<f64>,
    /// Time a delivery attempt that succeeded took (the destination's
    /// answer included), in ms: the mean, and the 95th percentile as the
    /// upper bound of its duration bucket.
    pub avg_ms: Option<f64>,
    pub p95_ms: Option<i64>,
    /// Inbound transmissions refused as incomplete (ASTM) in the window.
    /// HL7 messages answered `AE`/`AR` are not journalled and not counted.
    pub rejected: u64,
    /// rejected / (received + rejected); `None` without traffic.
    pub rejection_rate: Option<f64>,
    /// Messages (received or delivered) per bucket, oldest first.
    pub buckets: Vec<u64>,
}

/// One entry of the live log.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LiveEvent {
    pub id: i64,
    pub at: i64,
    pub kind: String,
    pub outcome: Option<String>,
    pub duration_ms: Option<i64>,
    pub message_id: Option<i64>,
    pub source: Option<String>,
    pub destination: Option<String>,
    pub message_type: Option<String>,
    pub control_id: Option<String>,
    pub actor: Option<String>,
    /// For filtering only: the live log does not show it.
    #[serde(skip)]
    pub patient_id: Option<String>,
}

impl LiveEvent {
    /// Whether the event belongs in a live log filtered by `f`. Statuses
    /// map to events: `queued` is a message received; `delivered`, `dead`
    /// and `failing` are attempts with that outcome; `errors` either
    /// failure.
    pub fn matches(&self, f: &MessageFilter) -> bool {
        let same = |want: &Option<String>, have: &Option<String>| {
            want.as_deref().is_none_or(|w| have.as_deref() == Some(w))
        };
        if let Some(e) = f.endpoint.as_deref() {
            if self.source.as_deref() != Some(e) && self.destination.as_deref() != Some(e) {
                return false;
            }
        }
        if !same(&f.message_type, &self.message_type)
            || !same(&f.control_id, &self.control_id)
            || !same(&f.patient_id, &self.patient_id)
        {
            return false;
        }
        if f.from.is_some_and(|from| self.at < from) || f.to.is_some_and(|to| self.at >= to) {
            return false;
        }
        let outcome = self.outcome.as_deref();
        let attempt = self.kind == "attempt";
        match f.status.as_deref() {
            None => true,
            Some("queued") => self.kind == "received",
            Some("delivered") => attempt && outcome == Some("delivered"),
            Some("dead") => attempt && outcome == Some("dead"),
            Some("failing") => attempt && outcome == Some("retry"),
            Some("errors") => attempt && matches!(outcome, Some("retry") | Some("dead")),
            Some(_) => false,
        }
    }
}

/// Which messages a retry or discard applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    Message(i64),
    Matching(MessageFilter),
}

/// Most messages one "retry all" or "discard all" touches.
pub const BULK_LIMIT: usize = 10_000;

/// What a retry did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct BulkOutcome {
    /// Outbox rows queued again.
    pub rows: usize,
    /// More messages matched than [`BULK_LIMIT`]; the newest were retried.
    pub truncated: bool,
}

fn user_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AdminUser> {
    Ok(AdminUser {
        id: r.get(0)?,
        name: r.get(1)?,
        role: r.get(2)?,
        password_hash: r.get(3)?,
        created_at: r.get(4)?,
        failed_logins: r.get(5)?,
        locked_until: r.get(6)?,
    })
}

const USER_COLUMNS: &str =
    "u.id, u.name, u.role, u.password_hash, u.created_at, u.failed_logins, u.locked_until";

fn find_user(conn: &Connection, name: &str) -> Result<AdminUser, UserError> {
    conn.prepare_cached(&format!(
        "SELECT {USER_COLUMNS} FROM admin_user u WHERE u.name = ?1"
    ))
    .and_then(|mut s| s.query_row([name], user_row).optional())
    .map_err(JournalError::from)?
    .ok_or_else(|| UserError::NoSuchUser(name.to_string()))
}

fn admin_count(conn: &Connection) -> Result<i64, JournalError> {
    Ok(conn.query_row(
        "SELECT count(*) FROM admin_user WHERE role = 'admin'",
        [],
        |r| r.get(0),
    )?)
}

/// An API token to store.
#[derive(Debug, Clone)]
pub struct NewToken {
    /// SHA-256 of the secret, hex.
    pub hash: String,
    pub user_id: i64,
    pub label: String,
    pub role: String,
    pub expires_at: Option<i64>,
    pub actor: String,
}

/// An API token as the users page lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TokenRecord {
    pub id: i64,
    pub label: String,
    pub owner: String,
    pub role: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
}

fn insert_audit(
    conn: &Connection,
    now: i64,
    actor: &str,
    action: &str,
    target: Option<&str>,
    detail: Option<&str>,
) -> Result<(), JournalError> {
    conn.prepare_cached(
        "INSERT INTO audit (at, actor, action, target, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![now, actor, action, target, detail])?;
    Ok(())
}

/// Why a user could not be created or changed.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("a user named `{0}` exists already")]
    Exists(String),
    #[error("there is no user named `{0}`")]
    NoSuchUser(String),
    #[error("the last administrator cannot be deleted or lose the admin role")]
    LastAdmin,
    #[error("the first administrator has been created already")]
    NotFirst,
    #[error(transparent)]
    Journal(#[from] JournalError),
}

fn create_user(
    conn: &Connection,
    now: i64,
    name: &str,
    role: &str,
    hash: &str,
    actor: &str,
    first_only: bool,
) -> Result<i64, UserError> {
    if first_only {
        let n: i64 = conn
            .query_row("SELECT count(*) FROM admin_user", [], |r| r.get(0))
            .map_err(JournalError::from)?;
        if n > 0 {
            return Err(UserError::NotFirst);
        }
    }
    let exists: bool = conn
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM admin_user WHERE name = ?1)",
            [name],
            |r| r.get(0),
        )
        .map_err(JournalError::from)?;
    if exists {
        return Err(UserError::Exists(name.to_string()));
    }
    conn.execute(
        "INSERT INTO admin_user (name, role, password_hash, created_at) VALUES (?1, ?2, ?3, ?4)",
        params![name, role, hash, now],
    )
    .map_err(JournalError::from)?;
    let id = conn.last_insert_rowid();
    insert_audit(
        conn,
        now,
        actor,
        "user.create",
        Some(name),
        Some(&format!("role {role}")),
    )?;
    Ok(id)
}

/// Adds a user to the journal at `path` from outside the running gateway (the
/// `user add` command). SQLite's own locking makes this safe beside a running
/// gateway; the journal must already have this build's schema, which opening
/// it once with [`Journal::open`] gives.
pub fn add_user_offline(
    path: &Path,
    name: &str,
    role: &str,
    hash: &str,
    now: i64,
) -> Result<i64, UserError> {
    let conn = Connection::open(path).map_err(JournalError::from)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(JournalError::from)?;
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(JournalError::from)?;
    if version != super::schema::VERSION {
        return Err(JournalError::Storage(format!(
            "the journal has schema version {version}, this gateway writes {}",
            super::schema::VERSION
        ))
        .into());
    }
    let tx = conn.unchecked_transaction().map_err(JournalError::from)?;
    let id = create_user(&tx, now, name, role, hash, "cli", false)?;
    tx.commit().map_err(JournalError::from)?;
    Ok(id)
}

impl Journal {
    pub async fn admin_user_count(&self) -> Result<u64, JournalError> {
        self.read(|c| {
            Ok(c.query_row("SELECT count(*) FROM admin_user", [], |r| {
                r.get::<_, i64>(0)
            })? as u64)
        })
        .await
    }

    pub async fn admin_user(&self, name: &str) -> Result<Option<AdminUser>, JournalError> {
        let name = name.to_string();
        self.read(move |c| {
            Ok(c.prepare_cached(&format!(
                "SELECT {USER_COLUMNS} FROM admin_user u WHERE u.name = ?1"
            ))?
            .query_row([name], user_row)
            .optional()?)
        })
        .await
    }

    pub async fn admin_users(&self) -> Result<Vec<AdminUser>, JournalError> {
        self.read(|c| {
            let mut s = c.prepare_cached(&format!(
                "SELECT {USER_COLUMNS} FROM admin_user u ORDER BY u.name"
            ))?;
            let rows = s.query_map([], user_row)?.collect::<Result<_, _>>()?;
            Ok(rows)
        })
        .await
    }

    /// Creates a user; with `first_only`, only while there is no user at all
    /// (the first-run setup), decided inside the writing transaction.
    pub async fn admin_create_user(
        &self,
        name: &str,
        role: &str,
        password_hash: &str,
        actor: &str,
        first_only: bool,
    ) -> Result<i64, UserError> {
        let (name, role, hash, actor) = (
            name.to_string(),
            role.to_string(),
            password_hash.to_string(),
            actor.to_string(),
        );
        self.write_with(move |conn, cx| {
            create_user(conn, cx.now, &name, &role, &hash, &actor, first_only)
        })
        .await?
    }

    /// Counts a failed login; at `lock_after` failures in a row the account
    /// is locked until `lock_ms` from now. Returns the failures so far.
    pub async fn admin_login_failed(
        &self,
        user_id: i64,
        lock_after: u32,
        lock_ms: i64,
    ) -> Result<u32, JournalError> {
        self.write(move |conn, cx| {
            let n: u32 = conn.query_row(
                "UPDATE admin_user SET failed_logins = failed_logins + 1 WHERE id = ?1 RETURNING failed_logins",
                [user_id],
                |r| r.get(0),
            )?;
            if n >= lock_after {
                conn.execute(
                    "UPDATE admin_user SET locked_until = ?2, failed_logins = 0 WHERE id = ?1",
                    params![user_id, cx.now + lock_ms],
                )?;
                insert_audit(conn, cx.now, "system", "user.lock", None, Some(&format!("user id {user_id} after {n} failed logins")))?;
            }
            Ok(n)
        })
        .await
    }

    /// Records a successful login and opens a session.
    pub async fn admin_open_session(
        &self,
        user_id: i64,
        token_hash: &str,
        csrf: &str,
        ttl_ms: i64,
    ) -> Result<(), JournalError> {
        let (token_hash, csrf) = (token_hash.to_string(), csrf.to_string());
        self.write(move |conn, cx| {
            conn.execute(
                "UPDATE admin_user SET failed_logins = 0, locked_until = 0 WHERE id = ?1",
                [user_id],
            )?;
            conn.execute("DELETE FROM admin_session WHERE expires_at <= ?1", [cx.now])?;
            conn.execute(
                "INSERT INTO admin_session (token_hash, user_id, csrf, created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![token_hash, user_id, csrf, cx.now, cx.now + ttl_ms],
            )?;
            let name: String = conn.query_row("SELECT name FROM admin_user WHERE id = ?1", [user_id], |r| r.get(0))?;
            insert_audit(conn, cx.now, &name, "login", None, None)?;
            Ok(())
        })
        .await
    }

    /// The unexpired session whose cookie hashes to `token_hash`.
    pub async fn admin_session(
        &self,
        token_hash: &str,
    ) -> Result<Option<SessionRecord>, JournalError> {
        let token_hash = token_hash.to_string();
        let now = self.now_ms();
        self.read(move |c| {
            Ok(c.prepare_cached(&format!(
                "SELECT {USER_COLUMNS}, s.csrf, s.expires_at FROM admin_session s JOIN admin_user u ON u.id = s.user_id
                 WHERE s.token_hash = ?1 AND s.expires_at > ?2"
            ))?
            .query_row(params![token_hash, now], |r| {
                Ok(SessionRecord {
                    user: user_row(r)?,
                    csrf: r.get(7)?,
                    expires_at: r.get(8)?,
                })
            })
            .optional()?)
        })
        .await
    }

    pub async fn admin_close_session(
        &self,
        token_hash: &str,
        actor: &str,
    ) -> Result<(), JournalError> {
        let (token_hash, actor) = (token_hash.to_string(), actor.to_string());
        self.write(move |conn, cx| {
            conn.execute(
                "DELETE FROM admin_session WHERE token_hash = ?1",
                [token_hash],
            )?;
            insert_audit(conn, cx.now, &actor, "logout", None, None)
        })
        .await
    }

    /// Stores an API token (by its hash) for `user_id`, acting with `role`
    /// (never more than the user's own) until `expires_at` (Unix ms; `None`:
    /// until revoked). Returns the token's id.
    pub async fn admin_create_token(&self, token: NewToken) -> Result<i64, JournalError> {
        self.write(move |conn, cx| {
            conn.execute(
                "INSERT INTO admin_token (token_hash, user_id, label, role, created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![token.hash, token.user_id, token.label, token.role, cx.now, token.expires_at],
            )?;
            let id = conn.last_insert_rowid();
            insert_audit(
                conn,
                cx.now,
                &token.actor,
                "token.create",
                Some(&format!("token {id} ({})", token.label)),
                Some(&format!(
                    "role {}, {}",
                    token.role,
                    token
                        .expires_at
                        .map_or_else(|| "no expiry".to_string(), |e| format!("expires at {e}"))
                )),
            )?;
            Ok(id)
        })
        .await
    }

    /// Every API token (not their secrets), newest first.
    pub async fn admin_tokens(&self) -> Result<Vec<TokenRecord>, JournalError> {
        self.read(|c| {
            let mut s = c.prepare_cached(
                "SELECT t.id, t.label, u.name, t.role, t.created_at, t.expires_at FROM admin_token t JOIN admin_user u ON u.id = t.user_id ORDER BY t.id DESC",
            )?;
            let rows = s
                .query_map([], |r| {
                    Ok(TokenRecord {
                        id: r.get(0)?,
                        label: r.get(1)?,
                        owner: r.get(2)?,
                        role: r.get(3)?,
                        created_at: r.get(4)?,
                        expires_at: r.get(5)?,
                    })
                })?
                .collect::<Result<_, _>>()?;
            Ok(rows)
        })
        .await
    }

    /// Revokes a token; `false` if there was no such token.
    pub async fn admin_revoke_token(&self, id: i64, actor: &str) -> Result<bool, JournalError> {
        let actor = actor.to_string();
        self.write(move |conn, cx| {
            let label: Option<String> = conn
                .query_row(
                    "DELETE FROM admin_token WHERE id = ?1 RETURNING label",
                    [id],
                    |r| r.get(0),
                )
                .optional()?;
            if let Some(label) = &label {
                insert_audit(
                    conn,
                    cx.now,
                    &actor,
                    "token.revoke",
                    Some(&format!("token {id} ({label})")),
                    None,
                )?;
            }
            Ok(label.is_some())
        })
        .await
    }

    /// The user an unexpired API token belongs to, and the token's role.
    pub async fn admin_token_user(
        &self,
        token_hash: &str,
    ) -> Result<Option<(AdminUser, String)>, JournalError> {
        let token_hash = token_hash.to_string();
        let now = self.now_ms();
        self.read(move |c| {
            Ok(c.prepare_cached(&format!(
                "SELECT {USER_COLUMNS}, t.role FROM admin_token t JOIN admin_user u ON u.id = t.user_id
                 WHERE t.token_hash = ?1 AND (t.expires_at IS NULL OR t.expires_at > ?2)"
            ))?
            .query_row(params![token_hash, now], |r| Ok((user_row(r)?, r.get(7)?)))
            .optional()?)
        })
        .await
    }

    /// Deletes a user with their sessions and tokens. The last administrator
    /// cannot be deleted.
    pub async fn admin_delete_user(&self, name: &str, actor: &str) -> Result<(), UserError> {
        let (name, actor) = (name.to_string(), actor.to_string());
        self.write_with(move |conn, cx| {
            let user = find_user(conn, &name)?;
            if user.role == "admin" && admin_count(conn)? <= 1 {
                return Err(UserError::LastAdmin);
            }
            conn.execute("DELETE FROM admin_session WHERE user_id = ?1", [user.id])
                .map_err(JournalError::from)?;
            conn.execute("DELETE FROM admin_token WHERE user_id = ?1", [user.id])
                .map_err(JournalError::from)?;
            conn.execute("DELETE FROM admin_user WHERE id = ?1", [user.id])
                .map_err(JournalError::from)?;
            insert_audit(
                conn,
                cx.now,
                &actor,
                "user.delete",
                Some(&name),
                Some(&format!("role {}", user.role)),
            )?;
            Ok(())
        })
        .await?
    }

    /// Changes a user's role; their open sessions follow at once. Tokens
    /// keep their own role but never act above their owner's. The last
    /// administrator keeps the admin role.
    pub async fn admin_set_role(
        &self,
        name: &str,
        role: &str,
        actor: &str,
    ) -> Result<(), UserError> {
        let (name, role, actor) = (name.to_string(), role.to_string(), actor.to_string());
        self.write_with(move |conn, cx| {
            let user = find_user(conn, &name)?;
            if user.role == role {
                return Ok(());
            }
            if user.role == "admin" && admin_count(conn)? <= 1 {
                return Err(UserError::LastAdmin);
            }
            conn.execute(
                "UPDATE admin_user SET role = ?2 WHERE id = ?1",
                params![user.id, role],
            )
            .map_err(JournalError::from)?;
            insert_audit(
                conn,
                cx.now,
                &actor,
                "user.role",
                Some(&name),
                Some(&format!("{} → {role}", user.role)),
            )?;
            Ok(())
        })
        .await?
    }

    /// Sets a new password hash, unlocks the account and ends its sessions.
    pub async fn admin_set_password(
        &self,
        name: &str,
        hash: &str,
        actor: &str,
    ) -> Result<(), UserError> {
        let (name, hash, actor) = (name.to_string(), hash.to_string(), actor.to_string());
        self.write_with(move |conn, cx| {
            let user = find_user(conn, &name)?;
            conn.execute(
                "UPDATE admin_user SET password_hash = ?2, failed_logins = 0, locked_until = 0 WHERE id = ?1",
                params![user.id, hash],
            )
            .map_err(JournalError::from)?;
            conn.execute("DELETE FROM admin_session WHERE user_id = ?1", [user.id])
                .map_err(JournalError::from)?;
            insert_audit(conn, cx.now, &actor, "user.password", Some(&name), Some("password reset; sessions ended"))?;
            Ok(())
        })
        .await?
    }

    /// Lifts a lockout after failed logins.
    pub async fn admin_unlock(&self, name: &str, actor: &str) -> Result<(), UserError> {
        let (name, actor) = (name.to_string(), actor.to_string());
        self.write_with(move |conn, cx| {
            let user = find_user(conn, &name)?;
            conn.execute(
                "UPDATE admin_user SET failed_logins = 0, locked_until = 0 WHERE id = ?1",
                [user.id],
            )
            .map_err(JournalError::from)?;
            insert_audit(conn, cx.now, &actor, "user.unlock", Some(&name), None)?;
            Ok(())
        })
        .await?
    }

    /// Records that `actor` did (or saw) something.
    pub async fn audit(
        &self,
        actor: &str,
        action: &str,
        target: Option<&str>,
        detail: Option<&str>,
    ) -> Result<(), JournalError> {
        let (actor, action) = (actor.to_string(), action.to_string());
        let (target, detail) = (target.map(str::to_string), detail.map(str::to_string));
        self.write(move |conn, cx| {
            insert_audit(
                conn,
                cx.now,
                &actor,
                &action,
                target.as_deref(),
                detail.as_deref(),
            )
        })
        .await
    }

    /// Audit entries older than `before` (all when `None`), newest first.
    pub async fn audit_log(
        &self,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<AuditRecord>, JournalError> {
        self.read(move |c| {
            let mut s = c.prepare_cached(
                "SELECT id, at, actor, action, target, detail FROM audit WHERE id < ?1 ORDER BY id DESC LIMIT ?2",
            )?;
            let rows = s
                .query_map(params![before.unwrap_or(i64::MAX), limit as i64], |r| {
                    Ok(AuditRecord {
                        id: r.get(0)?,
                        at: r.get(1)?,
                        actor: r.get(2)?,
                        action: r.get(3)?,
                        target: r.get(4)?,
                        detail: r.get(5)?,
                    })
                })?
                .collect::<Result<_, _>>()?;
            Ok(rows)
        })
        .await
    }

    /// A page of messages matching `filter`, newest first, older than
    /// `before`.
    pub async fn list_messages(
        &self,
        filter: MessageFilter,
        before: Option<i64>,
        limit: usize,
    ) -> Result<MessagePage, JournalError> {
        self.read(move |c| list_messages(c, &filter.normalized(), before, limit.clamp(1, 500)))
            .await
    }

    /// Activity per endpoint since `since` (e.g. the start of today).
    pub async fn endpoint_activity(
        &self,
        names: Vec<String>,
        since: i64,
    ) -> Result<Vec<EndpointActivity>, JournalError> {
        self.read(move |c| {
            names
                .iter()
                .map(|n| endpoint_activity(c, n, since))
                .collect()
        })
        .await
    }

    /// Statistics per endpoint since `since`, with `buckets` equal buckets up
    /// to now for the charts.
    pub async fn endpoint_stats(
        &self,
        names: Vec<String>,
        since: i64,
        buckets: usize,
    ) -> Result<Vec<EndpointStats>, JournalError> {
        let now = self.now_ms();
        self.read(move |c| endpoint_stats(c, &names, since, now, buckets.max(1)))
            .await
    }

    /// Events after `after_id`, oldest first, with what the live log shows.
    pub async fn events_after(
        &self,
        after_id: i64,
        limit: usize,
    ) -> Result<Vec<LiveEvent>, JournalError> {
        self.read(move |c| {
            let mut s = c.prepare_cached(
                "SELECT e.id, e.at, e.kind, e.outcome, e.duration_ms, e.message_id, m.source, o.destination, m.message_type, m.control_id, e.actor, m.patient_id
                 FROM event e LEFT JOIN message m ON m.id = e.message_id LEFT JOIN outbox o ON o.id = e.outbox_id
                 WHERE e.id > ?1 ORDER BY e.id LIMIT ?2",
            )?;
            let rows = s
                .query_map(params![after_id, limit as i64], |r| {
                    Ok(LiveEvent {
                        id: r.get(0)?,
                        at: r.get(1)?,
                        kind: r.get(2)?,
                        outcome: r.get(3)?,
                        duration_ms: r.get(4)?,
                        message_id: r.get(5)?,
                        source: r.get(6)?,
                        destination: r.get(7)?,
                        message_type: r.get(8)?,
                        control_id: r.get(9)?,
                        actor: r.get(10)?,
                        patient_id: r.get(11)?,
                    })
                })?
                .collect::<Result<_, _>>()?;
            Ok(rows)
        })
        .await
    }

    /// Bytes of live data in the journal (what its size cap counts).
    pub async fn live_size(&self) -> Result<u64, JournalError> {
        self.read(|c| Ok(super::writer::live_bytes(c)?)).await
    }

    /// The newest event id (0 for an empty journal).
    pub async fn last_event_id(&self) -> Result<i64, JournalError> {
        self.read(|c| Ok(c.query_row("SELECT coalesce(max(id), 0) FROM event", [], |r| r.get(0))?))
            .await
    }

    /// Puts the dead or failing outbox rows of the selection back in the
    /// queue, due now, with a fresh attempt budget. Returns the rows retried.
    pub async fn admin_retry(
        &self,
        selection: Selection,
        actor: &str,
    ) -> Result<BulkOutcome, JournalError> {
        self.admin_retry_at_most(selection, actor, BULK_LIMIT).await
    }

    /// [`Journal::admin_retry`] touching at most `limit` messages of a
    /// filter (the newest).
    pub async fn admin_retry_at_most(
        &self,
        selection: Selection,
        actor: &str,
        limit: usize,
    ) -> Result<BulkOutcome, JournalError> {
        let actor = actor.to_string();
        let (destinations, truncated) = self
            .write(move |conn, cx| {
                let (rows, truncated) = selected_rows(conn, &selection, limit)?;
                let mut destinations = Vec::new();
                for (outbox_id, destination, state) in &rows {
                    if *state == DELIVERED || *state == LEASED {
                        continue;
                    }
                    conn.prepare_cached(
                        "UPDATE outbox SET state = ?2, attempts = 0, next_attempt_at = ?3, updated_at = ?3 WHERE id = ?1",
                    )?
                    .execute(params![outbox_id, QUEUED, cx.now])?;
                    conn.prepare_cached("DELETE FROM outbox_discard WHERE outbox_id = ?1")?
                        .execute([outbox_id])?;
                    conn.prepare_cached(
                        "INSERT INTO event (at, message_id, outbox_id, kind, actor)
                         VALUES (?1, (SELECT message_id FROM outbox WHERE id = ?2), ?2, 'retried', ?3)",
                    )?
                    .execute(params![cx.now, outbox_id, actor])?;
                    destinations.push(destination.clone());
                }
                insert_audit(
                    conn,
                    cx.now,
                    &actor,
                    "message.retry",
                    Some(&describe(&selection)),
                    Some(&format!(
                        "{} deliveries queued again{}",
                        destinations.len(),
                        if truncated { format!(" (stopped at {limit} messages)") } else { String::new() }
                    )),
                )?;
                Ok((destinations, truncated))
            })
            .await?;
        let rows = destinations.len();
        let mut unique = destinations;
        unique.sort();
        unique.dedup();
        self.wake(unique);
        Ok(BulkOutcome { rows, truncated })
    }

    /// Gives up on the undelivered outbox rows of the selection: they become
    /// dead and are marked discarded with `reason`, so the errors page no
    /// longer lists them. They stay in the journal and can still be retried.
    pub async fn admin_discard(
        &self,
        selection: Selection,
        reason: &str,
        actor: &str,
    ) -> Result<usize, JournalError> {
        let (actor, reason) = (actor.to_string(), reason.to_string());
        self.write(move |conn, cx| {
            let (rows, _) = selected_rows(conn, &selection, BULK_LIMIT)?;
            let mut n = 0;
            for (outbox_id, _, state) in &rows {
                if *state == DELIVERED || *state == LEASED {
                    continue;
                }
                conn.prepare_cached(
                    "UPDATE outbox SET state = ?2, updated_at = ?3 WHERE id = ?1",
                )?
                .execute(params![outbox_id, DEAD, cx.now])?;
                conn.prepare_cached(
                    "INSERT OR REPLACE INTO outbox_discard (outbox_id, at, actor, reason) VALUES (?1, ?2, ?3, ?4)",
                )?
                .execute(params![outbox_id, cx.now, actor, reason])?;
                conn.prepare_cached(
                    "INSERT INTO event (at, message_id, outbox_id, kind, detail, actor)
                     VALUES (?1, (SELECT message_id FROM outbox WHERE id = ?2), ?2, 'discarded', ?3, ?4)",
                )?
                .execute(params![cx.now, outbox_id, reason, actor])?;
                n += 1;
            }
            insert_audit(
                conn,
                cx.now,
                &actor,
                "message.discard",
                Some(&describe(&selection)),
                Some(&format!("{n} deliveries discarded: {reason}")),
            )?;
            Ok(n)
        })
        .await
    }

    /// Whether each outbox row of a message was discarded, and why.
    pub async fn discards_of(
        &self,
        message_id: i64,
    ) -> Result<BTreeMap<i64, (i64, String, String)>, JournalError> {
        self.read(move |c| {
            let mut s = c.prepare_cached(
                "SELECT d.outbox_id, d.at, d.actor, d.reason FROM outbox_discard d JOIN outbox o ON o.id = d.outbox_id WHERE o.message_id = ?1",
            )?;
            let rows = s
                .query_map([message_id], |r| {
                    Ok((r.get(0)?, (r.get(1)?, r.get(2)?, r.get(3)?)))
                })?
                .collect::<Result<_, _>>()?;
            Ok(rows)
        })
        .await
    }
}

fn describe(selection: &Selection) -> String {
    match selection {
        Selection::Message(id) => format!("message {id}"),
        Selection::Matching(f) => format!(
            "messages matching {}",
            serde_json::to_string(f).unwrap_or_default()
        ),
    }
}

/// (outbox id, destination, state) of the selection's rows that a person may
/// act on: all rows of one message; for a filter, the dead or failing rows of
/// up to [`BULK_LIMIT`] matching messages.
/// (outbox id, destination, state).
type SelectedRow = (i64, String, i64);

fn selected_rows(
    conn: &Connection,
    selection: &Selection,
    limit: usize,
) -> Result<(Vec<SelectedRow>, bool), JournalError> {
    let mut truncated = false;
    let message_ids: Vec<i64> = match selection {
        Selection::Message(id) => vec![*id],
        Selection::Matching(filter) => {
            let mut filter = filter.clone().normalized();
            if filter.status.is_none() {
                filter.status = Some("errors".into());
            }
            let mut ids = Vec::new();
            let mut before = None;
            loop {
                if ids.len() >= limit {
                    truncated = true;
                    break;
                }
                let page = list_messages(conn, &filter, before, 500)?;
                ids.extend(page.messages.iter().map(|m| m.id));
                match page.next_before {
                    Some(b) => before = Some(b),
                    None => break,
                }
            }
            if ids.len() > limit {
                ids.truncate(limit);
                truncated = true;
            }
            ids
        }
    };
    let mut out = Vec::new();
    let mut s = conn.prepare_cached(
        "SELECT id, destination, state FROM outbox WHERE message_id = ?1 AND (?2 OR state = 3 OR (state = 0 AND attempts > 0)) ORDER BY id",
    )?;
    let whole = matches!(selection, Selection::Message(_));
    for id in message_ids {
        let rows = s
            .query_map(params![id, whole], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        out.extend(rows);
    }
    Ok((out, truncated))
}

fn list_messages(
    c: &Connection,
    f: &MessageFilter,
    before: Option<i64>,
    limit: usize,
) -> Result<MessagePage, JournalError> {
    let PageQuery { sql, args, fetch } = page_query(c, f, before, limit)?;
    let mut ids: Vec<i64> = c
        .prepare_cached(&sql)?
        .query_map(params_from_iter(args.iter()), |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let scanned = ids.len();
    ids.dedup();
    let more = ids.len() > limit || scanned == fetch;
    ids.truncate(limit);
    let mut messages = Vec::with_capacity(ids.len());
    let mut head = c.prepare_cached(
        "SELECT id, received_at, source, message_type, control_id, patient_id, length(payload) FROM message WHERE id = ?1",
    )?;
    let mut deliveries = c.prepare_cached(
        "SELECT o.id, o.destination, o.state, o.attempts, o.last_error, d.outbox_id IS NOT NULL
         FROM outbox o LEFT JOIN outbox_discard d ON d.outbox_id = o.id WHERE o.message_id = ?1 ORDER BY o.id",
    )?;
    for id in &ids {
        let Some(mut m) = head
            .query_row([id], |r| {
                Ok(MessageSummary {
                    id: r.get(0)?,
                    received_at: r.get(1)?,
                    source: r.get(2)?,
                    message_type: r.get(3)?,
                    control_id: r.get(4)?,
                    patient_id: r.get(5)?,
                    size: r.get(6)?,
                    status: "delivered",
                    deliveries: Vec::new(),
                })
            })
            .optional()?
        else {
            continue;
        };
        m.deliveries = deliveries
            .query_map([id], |r| {
                let state: i64 = r.get(2)?;
                let attempts: u32 = r.get(3)?;
                let discarded: bool = r.get(5)?;
                Ok(DeliveryState {
                    outbox_id: r.get(0)?,
                    destination: r.get(1)?,
                    state: state_name(state, attempts, discarded),
                    attempts,
                    last_error: r.get(4)?,
                    discarded,
                })
            })?
            .collect::<Result<_, _>>()?;
        m.status = worst(m.deliveries.iter().map(|d| d.state));
        messages.push(m);
    }
    let next_before = if more {
        messages.last().map(|m| m.id)
    } else {
        None
    };
    Ok(MessagePage {
        messages,
        next_before,
    })
}

/// The statement that finds one page of message ids, newest first: at most
/// `fetch` ids, possibly repeated (one per matching outbox row).
struct PageQuery {
    sql: String,
    args: Vec<rusqlite::types::Value>,
    fetch: usize,
}

fn page_query(
    c: &Connection,
    f: &MessageFilter,
    before: Option<i64>,
    limit: usize,
) -> Result<PageQuery, JournalError> {
    let upper = before.unwrap_or(i64::MAX);
    // Conditions on the message itself (alias `m`), whichever side drives.
    let mut conditions: Vec<String> = Vec::new();
    let mut args: Vec<rusqlite::types::Value> = Vec::new();
    // The time range is checked on `received_at` itself (the clock may have
    // stepped back, so ids need not grow with it). Whether its index drives
    // the walk depends on how many rows the range roughly holds.
    let narrow_range = (f.from.is_some() || f.to.is_some()) && range_is_narrow(c, f.from, f.to)?;
    let at = if narrow_range {
        "m.received_at"
    } else {
        "+m.received_at"
    };
    if let Some(from) = f.from {
        conditions.push(format!("{at} >= ?"));
        args.push(from.into());
    }
    if let Some(to) = f.to {
        conditions.push(format!("{at} < ?"));
        args.push(to.into());
    }
    if let Some(t) = &f.message_type {
        conditions.push("m.message_type = ?".into());
        args.push(t.clone().into());
    }
    if let Some(t) = &f.control_id {
        conditions.push("m.control_id = ?".into());
        args.push(t.clone().into());
    }
    if let Some(t) = &f.patient_id {
        conditions.push("m.patient_id = ?".into());
        args.push(t.clone().into());
    }
    // One condition per outbox state the status covers, each an equality on
    // `outbox(state, message_id)`: walked one by one and merged, the ids come
    // newest first without sorting every row in the status.
    let dead = format!(
        "o.state = {DEAD} AND NOT EXISTS (SELECT 1 FROM outbox_discard d WHERE d.outbox_id = o.id)"
    );
    let failing = format!("o.state = {QUEUED} AND o.attempts > 0");
    let status_parts: Option<Vec<String>> = match f.status.as_deref() {
        None => None,
        Some("queued") => Some(vec![
            format!("o.state = {QUEUED}"),
            format!("o.state = {LEASED}"),
        ]),
        Some("delivered") => Some(vec![format!("o.state = {DELIVERED}")]),
        Some("dead") => Some(vec![dead]),
        Some("failing") => Some(vec![failing]),
        Some("errors") => Some(vec![dead, failing]),
        Some(other) => return Err(JournalError::Storage(format!("unknown status `{other}`"))),
    };
    let status_rows = status_parts.as_ref().map(|parts| {
        let any: Vec<String> = parts.iter().map(|p| format!("({p})")).collect();
        format!("({})", any.join(" OR "))
    });
    let and: String = conditions.iter().map(|x| format!(" AND {x}")).collect();
    let raw_limit = limit + 1;
    // The status filter may yield one message several times (one per
    // matching outbox row): read a few pages' worth and de-duplicate.
    let fetch = if status_rows.is_some() {
        raw_limit * 4
    } else {
        raw_limit
    };
    let mut all_args: Vec<rusqlite::types::Value> = Vec::new();
    let sql = match (&f.endpoint, &status_rows) {
        // A time range alone walks `message(received_at)` newest first,
        // whatever the ids did: a page costs what it shows, however wide or
        // old the range. `before` is still a message id; its time is the
        // keyset.
        (None, None)
            if (f.from.is_some() || f.to.is_some())
                && f.message_type.is_none()
                && f.control_id.is_none()
                && f.patient_id.is_none() =>
        {
            let before_at: Option<i64> = match before {
                Some(id) => c
                    .prepare_cached("SELECT received_at FROM message WHERE id = ?1")?
                    .query_row([id], |r| r.get(0))
                    .optional()?,
                None => None,
            };
            let keyset = match before_at {
                Some(at) => {
                    all_args.push(at.into());
                    all_args.push(at.into());
                    all_args.push(upper.into());
                    "(m.received_at < ? OR (m.received_at = ? AND m.id < ?))"
                }
                None => {
                    all_args.push(upper.into());
                    "m.id < ?"
                }
            };
            all_args.extend(args);
            let and = and.replace("+m.received_at", "m.received_at");
            format!(
                "SELECT m.id FROM message m INDEXED BY message_received WHERE {keyset}{and}
                 ORDER BY m.received_at DESC, m.id DESC LIMIT {fetch}"
            )
        }
        (None, None) => {
            all_args.push(upper.into());
            all_args.extend(args);
            format!(
                "SELECT m.id FROM message m WHERE m.id < ?{and} ORDER BY m.id DESC LIMIT {fetch}"
            )
        }
        // A patient or a control id holds few messages: walk those newest
        // first and keep the ones with a row in the status.
        (None, Some(rows)) if f.patient_id.is_some() || f.control_id.is_some() => {
            all_args.push(upper.into());
            all_args.extend(args);
            format!(
                "SELECT m.id FROM message m WHERE m.id < ?{and}
                 AND EXISTS (SELECT 1 FROM outbox o WHERE o.message_id = m.id AND {rows})
                 ORDER BY m.id DESC LIMIT {fetch}"
            )
        }
        (None, Some(_)) => {
            let walks: Vec<String> = status_parts
                .iter()
                .flatten()
                .map(|part| {
                    all_args.push(upper.into());
                    all_args.extend(args.iter().cloned());
                    format!(
                        "SELECT o.message_id FROM outbox o JOIN message m ON m.id = o.message_id
                         WHERE o.message_id < ? AND {part}{and}"
                    )
                })
                .collect();
            format!("{} ORDER BY 1 DESC LIMIT {fetch}", walks.join(" UNION "))
        }
        // An endpoint is the message's source or one of its destinations:
        // two walks newest first (by source on `message`, by destination on
        // `outbox(destination, message_id)`), merged. With a status, the
        // destination's own row must be in it; for the source, any row.
        (Some(e), rows) => {
            let from_source = rows
                .as_ref()
                .map(|r| {
                    format!(
                        " AND EXISTS (SELECT 1 FROM outbox o WHERE o.message_id = m.id AND {r})"
                    )
                })
                .unwrap_or_default();
            let to_destination = rows
                .as_ref()
                .map(|r| format!(" AND {r}"))
                .unwrap_or_default();
            all_args.push(e.clone().into());
            all_args.push(upper.into());
            all_args.extend(args.iter().cloned());
            all_args.push(e.clone().into());
            all_args.push(upper.into());
            all_args.extend(args);
            format!(
                "SELECT m.id FROM message m WHERE m.source = ? AND m.id < ?{and}{from_source}
                 UNION
                 SELECT o.message_id FROM outbox o JOIN message m ON m.id = o.message_id
                 WHERE o.destination = ? AND o.message_id < ?{and}{to_destination}
                 ORDER BY 1 DESC LIMIT {fetch}"
            )
        }
    };
    Ok(PageQuery {
        sql,
        args: all_args,
        fetch,
    })
}

/// Rows a time range may hold before its index stops being the cheaper
/// walk (it needs a sort by id; the walk by id does not).
const NARROW_RANGE: i64 = 50_000;

/// Whether `[from, to)` holds few messages, estimated from the ids at its
/// ends in `received_at` order. The estimate is exact while ids grow with
/// time; after a clock step only the choice of walk can suffer, never the
/// answer, which always checks `received_at` itself.
fn range_is_narrow(
    c: &Connection,
    from: Option<i64>,
    to: Option<i64>,
) -> Result<bool, JournalError> {
    let mut first = c.prepare_cached(
        "SELECT id FROM message WHERE received_at >= ?1 ORDER BY received_at, id LIMIT 1",
    )?;
    let Some(start) = first
        .query_row([from.unwrap_or(i64::MIN)], |r| r.get::<_, i64>(0))
        .optional()?
    else {
        return Ok(true); // nothing at or after `from`
    };
    let end = match to {
        Some(t) => first.query_row([t], |r| r.get::<_, i64>(0)).optional()?,
        None => None,
    };
    let end = match end {
        Some(e) => e,
        None => c.query_row("SELECT coalesce(max(id), 0) FROM message", [], |r| r.get(0))?,
    };
    Ok((end - start).abs() <= NARROW_RANGE)
}

/// The name the admin page uses for an outbox state.
pub fn state_name(state: i64, attempts: u32, discarded: bool) -> &'static str {
    match state {
        QUEUED if attempts > 0 => "failing",
        QUEUED => "queued",
        LEASED => "in-flight",
        DELIVERED => "delivered",
        _ if discarded => "discarded",
        _ => "dead",
    }
}

fn worst<'a>(states: impl Iterator<Item = &'a str>) -> &'static str {
    let rank = |s: &str| match s {
        "dead" => 5,
        "failing" => 4,
        "in-flight" => 3,
        "queued" => 2,
        "discarded" => 1,
        _ => 0,
    };
    let names = [
        "delivered",
        "discarded",
        "queued",
        "in-flight",
        "failing",
        "dead",
    ];
    names[states.map(rank).max().unwrap_or(0)]
}

fn endpoint_activity(
    c: &Connection,
    name: &str,
    since: i64,
) -> Result<EndpointActivity, JournalError> {
    let mut a = EndpointActivity {
        name: name.to_string(),
        ..Default::default()
    };
    a.last_received_at = c
        .prepare_cached(
            "SELECT received_at FROM message WHERE source = ?1 ORDER BY source DESC, received_at DESC LIMIT 1",
        )?
        .query_row([name], |r| r.get(0))
        .optional()?;
    let (received, delivered, last_delivered): (i64, i64, i64) = c
        .prepare_cached(
            "SELECT coalesce(sum(received), 0), coalesce(sum(delivered), 0),
                    (SELECT coalesce(max(last_delivered_at), 0) FROM stats_minute WHERE endpoint = ?1)
             FROM stats_minute WHERE endpoint = ?1 AND minute >= ?2",
        )?
        .query_row(params![name, since.div_euclid(60_000)], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?;
    a.received_since = received as u64;
    a.delivered_since = delivered as u64;
    a.last_delivered_at = (last_delivered > 0).then_some(last_delivered);
    let mut s = c.prepare_cached(
        "SELECT state, attempts > 0, count(*) FROM outbox WHERE destination = ?1 AND state IN (0, 1, 3) GROUP BY state, attempts > 0",
    )?;
    let rows = s.query_map([name], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, bool>(1)?,
            r.get::<_, i64>(2)?,
        ))
    })?;
    for row in rows {
        let (state, tried, n) = row?;
        let n = n as u64;
        match state {
            QUEUED if tried => {
                a.queued += n;
                a.failing += n;
            }
            QUEUED => a.queued += n,
            LEASED => a.in_flight += n,
            _ => a.dead += n,
        }
    }
    if a.dead > 0 {
        // Discarded rows are dead too, but nobody needs to look at them.
        a.dead -= c
            .prepare_cached(
                "SELECT count(*) FROM outbox o JOIN outbox_discard d ON d.outbox_id = o.id WHERE o.destination = ?1 AND o.state = 3",
            )?
            .query_row([name], |r| r.get::<_, i64>(0))? as u64;
    }
    if a.failing > 0 {
        a.last_error = c
            .prepare_cached(
                "SELECT last_error FROM outbox WHERE destination = ?1 AND state = 0 AND attempts > 0 ORDER BY id LIMIT 1",
            )?
            .query_row([name], |r| r.get(0))
            .optional()?
            .flatten();
    }
    if a.dead > 0 {
        a.dead_error = c
            .prepare_cached(
                "SELECT o.last_error FROM outbox o WHERE o.destination = ?1 AND o.state = 3
                 AND NOT EXISTS (SELECT 1 FROM outbox_discard d WHERE d.outbox_id = o.id) ORDER BY o.id DESC LIMIT 1",
            )?
            .query_row([name], |r| r.get(0))
            .optional()?
            .flatten();
    }
    Ok(a)
}

fn endpoint_stats(
    c: &Connection,
    names: &[String],
    since: i64,
    now: i64,
    buckets: usize,
) -> Result<Vec<EndpointStats>, JournalError> {
    let first_minute = since.div_euclid(60_000);
    let minutes = ((now - since).max(60_000) / 60_000).max(1) as f64;
    let bucket = |minute: i64| -> usize {
        ((((minute - first_minute).max(0) as f64) * buckets as f64 / minutes) as usize)
            .min(buckets - 1)
    };
    let mut rows = c.prepare_cached(
        "SELECT minute, received, rejected, attempts, delivered, failed, duration_sum, duration_max
         FROM stats_minute WHERE endpoint = ?1 AND minute >= ?2",
    )?;
    let mut durations = c.prepare_cached(
        "SELECT bucket, sum(n) FROM stats_duration WHERE endpoint = ?1 AND minute >= ?2 GROUP BY bucket ORDER BY bucket",
    )?;
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let mut s = EndpointStats {
            name: name.clone(),
            buckets: vec![0; buckets],
            ..Default::default()
        };
        let mut duration_sum = 0i64;
        let mut duration_max = 0i64;
        let mut rejected = 0u64;
        let found = rows.query_map(params![name, first_minute], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                [
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, i64>(5)?,
                    r.get::<_, i64>(6)?,
                    r.get::<_, i64>(7)?,
                ],
            ))
        })?;
        for row in found {
            let (minute, [received, refused, attempts, delivered, failed, sum, max]) = row?;
            s.received += received as u64;
            rejected += refused as u64;
            s.attempts += attempts as u64;
            s.delivered += delivered as u64;
            s.failed += failed as u64;
            duration_sum += sum;
            duration_max = duration_max.max(max);
            s.buckets[bucket(minute)] += (received + delivered) as u64;
        }
        if s.attempts > 0 {
            s.success_rate = Some(s.delivered as f64 / s.attempts as f64);
        }
        if s.delivered > 0 {
            s.avg_ms = Some(duration_sum as f64 / s.delivered as f64);
            let counts: Vec<(usize, i64)> = durations
                .query_map(params![name, first_minute], |r| {
                    Ok((r.get::<_, i64>(0)? as usize, r.get::<_, i64>(1)?))
                })?
                .collect::<Result<_, _>>()?;
            s.p95_ms = Some(percentile(&counts, 0.95, duration_max));
        }
        if s.received + rejected > 0 {
            s.rejected = rejected;
            s.rejection_rate = Some(rejected as f64 / (s.received + rejected) as f64);
        }
        out.push(s);
    }
    Ok(out)
}

/// The `q` quantile of durations counted per bucket of
/// [`DURATION_BUCKETS_MS`]: the upper bound of the bucket holding it, or the
/// longest duration seen when that is shorter (or the bucket is unbounded).
fn percentile(counts: &[(usize, i64)], q: f64, max: i64) -> i64 {
    let total: i64 = counts.iter().map(|(_, n)| n).sum();
    let rank = ((total as f64) * q).ceil().max(1.0) as i64;
    let mut seen = 0;
    for (bucket, n) in counts {
        seen += n;
        if seen >= rank {
            return DURATION_BUCKETS_MS
                .get(*bucket)
                .map_or(max, |bound| (*bound).min(max));
        }
    }
    max
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What SQLite plans for the page query of `f`, one line per step.
    fn plan(f: &MessageFilter) -> String {
        let mut c = Connection::open_in_memory().unwrap();
        super::super::schema::migrate(&mut c).unwrap();
        let q = page_query(&c, f, Some(1_000_000), 50).unwrap();
        let mut s = c.prepare(&format!("EXPLAIN QUERY PLAN {}", q.sql)).unwrap();
        let steps: Vec<String> = s
            .query_map(params_from_iter(q.args.iter()), |r| r.get(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        steps.join("\n")
    }

    #[test]
    fn every_log_page_filter_walks_an_index_newest_first_instead_of_sorting_its_matches() {
        let filters = [
            MessageFilter::default(),
            MessageFilter {
                endpoint: Some("lab".into()),
                ..Default::default()
            },
            MessageFilter {
                endpoint: Some("lab".into()),
                status: Some("dead".into()),
                ..Default::default()
            },
            MessageFilter {
                status: Some("errors".into()),
                ..Default::default()
            },
            MessageFilter {
                status: Some("queued".into()),
                ..Default::default()
            },
            MessageFilter {
                message_type: Some("ORU^R01".into()),
                status: Some("dead".into()),
                ..Default::default()
            },
            MessageFilter {
                control_id: Some("C1".into()),
                status: Some("delivered".into()),
                ..Default::default()
            },
            MessageFilter {
                patient_id: Some("P1".into()),
                status: Some("queued".into()),
                ..Default::default()
            },
            MessageFilter {
                message_type: Some("ORU^R01".into()),
                ..Default::default()
            },
            MessageFilter {
                control_id: Some("C1".into()),
                ..Default::default()
            },
            MessageFilter {
                from: Some(0),
                to: Some(3_600_000),
                ..Default::default()
            },
        ];
        for f in filters {
            let plan = plan(&f);
            // A sort needs every match first: on a million-message journal
            // that is a whole source or status, not one page.
            assert!(!plan.contains("TEMP B-TREE"), "{f:?} sorts:\n{plan}");
        }
    }
}
