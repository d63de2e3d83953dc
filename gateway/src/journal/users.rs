//! Who may use the admin page: users, their login sessions and API tokens.
//!
//! Only hashes are stored: of the password (argon2id, made by the admin
//! layer), of the session cookie and of the API token's secret; a stolen
//! journal file opens no session. Every change writes its audit row in the
//! same transaction. There is always at least one administrator once the
//! first exists: deleting or demoting the last one is refused inside the
//! writing transaction, so two racing requests cannot both pass the check.
//!
//! A user can also be added from the command line while a gateway runs
//! ([`add_user_offline`]), through [`super::external`].

use super::audit::insert_audit;
use super::{external, Journal, JournalError};
use rusqlite::{params, Connection, OptionalExtension};
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

/// A live session as the users page lists it. `id` is the first 16 hex
/// digits of the cookie's hash: stable for the session's life, and no
/// use for logging in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenSession {
    pub id: String,
    pub user: String,
    pub created_at: i64,
    pub expires_at: i64,
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    pub id: i64,
    pub label: String,
    pub owner: String,
    pub role: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
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

/// Adds a user to the journal at `path` from another process than the
/// gateway's (the `user add` command), whether or not a gateway has it open.
/// The journal must already have this build's schema, which opening it once
/// with [`Journal::open`] gives.
pub fn add_user_offline(
    path: &Path,
    name: &str,
    role: &str,
    hash: &str,
    actor: &str,
    now: i64,
) -> Result<i64, UserError> {
    external::change(path, |tx| {
        create_user(tx, now, name, role, hash, actor, false)
    })
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
            let (n, name): (u32, String) = conn.query_row(
                "UPDATE admin_user SET failed_logins = failed_logins + 1 WHERE id = ?1 RETURNING failed_logins, name",
                [user_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            if n >= lock_after {
                conn.execute(
                    "UPDATE admin_user SET locked_until = ?2, failed_logins = 0 WHERE id = ?1",
                    params![user_id, cx.now + lock_ms],
                )?;
                insert_audit(conn, cx.now, "system", "user.lock", Some(&name), Some(&format!("user id {user_id} after {n} failed logins")))?;
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

    /// Sessions not yet expired, newest first.
    pub async fn admin_open_sessions(&self) -> Result<Vec<OpenSession>, JournalError> {
        let now = self.now_ms();
        self.read(move |c| {
            let mut s = c.prepare_cached(
                "SELECT substr(s.token_hash, 1, 16), u.name, s.created_at, s.expires_at FROM admin_session s JOIN admin_user u ON u.id = s.user_id WHERE s.expires_at > ?1 ORDER BY s.created_at DESC",
            )?;
            let rows = s
                .query_map([now], |r| {
                    Ok(OpenSession {
                        id: r.get(0)?,
                        user: r.get(1)?,
                        created_at: r.get(2)?,
                        expires_at: r.get(3)?,
                    })
                })?
                .collect::<Result<_, _>>()?;
            Ok(rows)
        })
        .await
    }

    /// Ends session `id` (see [`OpenSession`]); `false` if there was none.
    pub async fn admin_revoke_session(&self, id: &str, actor: &str) -> Result<bool, JournalError> {
        let (id, actor) = (id.to_string(), actor.to_string());
        self.write(move |conn, cx| {
            if id.len() != 16 {
                return Ok(false);
            }
            let user: Option<String> = conn
                .query_row(
                    "DELETE FROM admin_session WHERE substr(token_hash, 1, 16) = ?1 RETURNING (SELECT name FROM admin_user u WHERE u.id = user_id)",
                    [&id],
                    |r| r.get(0),
                )
                .optional()?;
            if let Some(user) = &user {
                insert_audit(conn, cx.now, &actor, "session.revoke", Some(user), Some(&format!("session {id}")))?;
            }
            Ok(user.is_some())
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

    /// A user's change of their own password: their other sessions end,
    /// the one they changed it in (`keep_session`, a token hash) stays.
    pub async fn admin_change_own_password(
        &self,
        name: &str,
        hash: &str,
        keep_session: Option<&str>,
    ) -> Result<(), UserError> {
        let (name, hash) = (name.to_string(), hash.to_string());
        let keep = keep_session.unwrap_or_default().to_string();
        self.write_with(move |conn, cx| {
            let user = find_user(conn, &name)?;
            conn.execute(
                "UPDATE admin_user SET password_hash = ?2, failed_logins = 0, locked_until = 0 WHERE id = ?1",
                params![user.id, hash],
            )
            .map_err(JournalError::from)?;
            conn.execute(
                "DELETE FROM admin_session WHERE user_id = ?1 AND token_hash <> ?2",
                params![user.id, keep],
            )
            .map_err(JournalError::from)?;
            insert_audit(conn, cx.now, &name, "user.password", Some(&name), Some("own password changed; other sessions ended"))?;
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::JournalOptions;

    #[tokio::test(flavor = "multi_thread")]
    async fn a_user_added_by_another_process_is_seen_by_the_running_gateway_and_audited() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.db");
        let j = Journal::open(JournalOptions::new(&path)).unwrap();

        let id = add_user_offline(&path, "ann", "admin", "hash", "cli:root", 5).unwrap();
        let ann = j.admin_user("ann").await.unwrap().unwrap();
        assert_eq!(
            (ann.id, ann.role.as_str(), ann.created_at),
            (id, "admin", 5)
        );
        assert!(j
            .audit_log(None, 10)
            .await
            .unwrap()
            .iter()
            .any(|a| a.actor == "cli:root"
                && a.action == "user.create"
                && a.target.as_deref() == Some("ann")));
        assert!(matches!(
            add_user_offline(&path, "ann", "viewer", "other", "cli:root", 6),
            Err(UserError::Exists(name)) if name == "ann"
        ));
        j.close().await;
    }
}
