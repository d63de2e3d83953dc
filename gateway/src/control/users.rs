//! Users of the admin page and their API tokens: the first administrator,
//! add, remove, change role or password, unlock, create and revoke tokens;
//! and the command line's `user add`, beside a running gateway or not.
//! Every change needs the admin role, except the first administrator,
//! which only an empty journal accepts.

use super::{Actor, Operations, Refusal, Role};
use crate::config::Config;
use crate::journal::{Journal, JournalOptions};
use crate::journal::{NewToken, UserError};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use sha2::{Digest, Sha256};

/// An argon2id hash in PHC string form.
pub fn hash_password(password: &str) -> Result<String, String> {
    let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>()).map_err(|e| e.to_string())?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Whether `password` is the one `hash` was made of.
pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| {
        Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// What a password must be.
pub fn check_password(password: &str) -> Result<(), &'static str> {
    if password.chars().count() < 10 {
        return Err("at least 10 characters");
    }
    if password.len() > 1024 {
        return Err("at most 1024 bytes");
    }
    Ok(())
}

/// What a user name must be.
pub fn check_user_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.len() > 64 {
        return Err("1 to 64 characters");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'))
    {
        return Err("letters, digits and - _ . @ only");
    }
    Ok(())
}

/// A fresh random token, hex encoded.
pub fn new_token() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

/// What the journal keeps of a token or session secret.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A user to add. Fields are checked in this order: `name` (trimmed),
/// `role`, `password`, `confirm`.
#[derive(Debug, Clone, Default)]
pub struct NewUser {
    pub name: String,
    pub role: String,
    pub password: String,
    /// The password typed again; `None` when the front end asks once.
    pub confirm: Option<String>,
}

fn parse_role(role: &str) -> Result<Role, Refusal> {
    Role::parse(role).ok_or_else(|| {
        Refusal::invalid("role", format!("`{role}` is not admin, operator or viewer"))
    })
}

fn check_new_password(password: &str, confirm: Option<&str>) -> Result<(), Refusal> {
    check_password(password).map_err(|e| Refusal::invalid("password", e))?;
    if confirm.is_some_and(|c| c != password) {
        return Err(Refusal::invalid("confirm", "the two passwords differ"));
    }
    Ok(())
}

/// The user checked: (trimmed name, role).
fn check_new_user(user: &NewUser) -> Result<(String, Role), Refusal> {
    let name = user.name.trim();
    check_user_name(name).map_err(|e| Refusal::invalid("name", e))?;
    let role = parse_role(&user.role)?;
    check_new_password(&user.password, user.confirm.as_deref())?;
    Ok((name.to_string(), role))
}

async fn hashed(password: &str) -> Result<String, Refusal> {
    let password = password.to_string();
    match tokio::task::spawn_blocking(move || hash_password(&password)).await {
        Ok(Ok(hash)) => Ok(hash),
        _ => Err(Refusal::Internal("cannot hash the password".into())),
    }
}

fn user_refusal(e: UserError) -> Refusal {
    match e {
        e @ UserError::NoSuchUser(_) => Refusal::NotFound(e.to_string()),
        e @ (UserError::Exists(_) | UserError::LastAdmin | UserError::NotFirst) => {
            Refusal::Conflict(e.to_string())
        }
        UserError::Journal(e) => Refusal::Journal(e),
    }
}

/// Whether the first administrator is still to be made.
pub async fn needs_setup(journal: &Journal) -> Result<bool, Refusal> {
    Ok(journal.admin_user_count().await? == 0)
}

const FIRST_EXISTS: &str = "the first administrator exists already";

/// How the maker of the first administrator is let in.
#[derive(Debug, Clone)]
pub enum Admission {
    /// With the setup code they typed: it must be this device's
    /// ([`super::setup_code`]).
    Code(String),
    /// From the device itself, where `setup_from_loopback_only` needs no
    /// code; the front end has checked the address.
    Loopback,
}

/// Makes the first administrator (its role is admin whatever `user.role`
/// says) for whoever `admission` lets in; only an empty journal takes it,
/// decided inside the write, so two racing requests cannot both win. The
/// setup code is checked before anything else (a refusal names the field
/// `setup_code`, so that a front end can count it as a failed login) and
/// deleted once the administrator exists. Audited as `user.create` by
/// `setup`.
pub async fn setup(
    ops: &Operations,
    user: &NewUser,
    admission: &Admission,
) -> Result<i64, Refusal> {
    if !needs_setup(ops.journal()).await? {
        return Err(Refusal::Conflict(FIRST_EXISTS.into()));
    }
    let dir = super::config::data_dir(&ops.config());
    if let Admission::Code(given) = admission {
        // Read, or made now if it was never issued (a page started without
        // the gateway's start-up, a file deleted by hand): either way the
        // code that counts is the one in the file, and a new one is
        // announced where the person with the device can read it.
        let (expected, made) = super::setup_code::issue(&dir)
            .map_err(|e| Refusal::Internal(format!("the setup code: {e}")))?;
        if made {
            super::setup_code::announce(&expected, &dir);
        }
        if given.trim().is_empty() {
            return Err(Refusal::invalid(
                "setup_code",
                "needed; see the log, the console or `ecko-gateway setup-code`",
            ));
        }
        if !super::setup_code::matches(given, &expected) {
            return Err(Refusal::invalid(
                "setup_code",
                "not this device's setup code",
            ));
        }
    }
    let (name, _) = check_new_user(&NewUser {
        role: "admin".into(),
        ..user.clone()
    })?;
    let hash = hashed(&user.password).await?;
    match ops
        .journal()
        .admin_create_user(&name, "admin", &hash, "setup", true)
        .await
    {
        Ok(id) => {
            if let Err(e) = super::setup_code::consume(&dir) {
                // The administrator exists, so no code admits anyone any
                // more; the file left behind is deleted at the next start.
                tracing::warn!(error = %e, "cannot delete the used setup code");
            }
            Ok(id)
        }
        Err(UserError::NotFirst) => Err(Refusal::Conflict(FIRST_EXISTS.into())),
        Err(e) => Err(user_refusal(e)),
    }
}

/// Adds a user. Needs admin; audited as `user.create`.
pub async fn add(ops: &Operations, actor: &Actor, user: &NewUser) -> Result<i64, Refusal> {
    actor.require(Role::Admin)?;
    let (name, role) = check_new_user(user)?;
    let hash = hashed(&user.password).await?;
    ops.journal()
        .admin_create_user(&name, role.as_str(), &hash, &actor.name, false)
        .await
        .map_err(user_refusal)
}

/// Changes user `name`'s role. Needs admin; audited as `user.role`; the
/// last administrator keeps the admin role.
pub async fn set_role(
    ops: &Operations,
    actor: &Actor,
    name: &str,
    role: &str,
) -> Result<(), Refusal> {
    actor.require(Role::Admin)?;
    let role = parse_role(role)?;
    ops.journal()
        .admin_set_role(name, role.as_str(), &actor.name)
        .await
        .map_err(user_refusal)
}

/// Sets user `name`'s password and ends their sessions. Needs admin;
/// audited as `user.password`.
pub async fn set_password(
    ops: &Operations,
    actor: &Actor,
    name: &str,
    password: &str,
    confirm: Option<&str>,
) -> Result<(), Refusal> {
    actor.require(Role::Admin)?;
    check_new_password(password, confirm)?;
    let hash = hashed(password).await?;
    ops.journal()
        .admin_set_password(name, &hash, &actor.name)
        .await
        .map_err(user_refusal)
}

/// A user's change of their own password.
#[derive(Debug, Clone, Default)]
pub struct OwnPassword {
    /// The password they log in with now: a session left open on a shared
    /// bench computer must not be enough to take the account over.
    pub current: String,
    pub password: String,
    pub confirm: Option<String>,
}

/// Changes the acting user's own password, once their current one is
/// verified; their other sessions end, `keep_session` (the token hash of
/// the session they are in) stays. Every role; audited as `user.password`.
/// A wrong current password is refused on the field `current`.
pub async fn change_own_password(
    ops: &Operations,
    actor: &Actor,
    change: &OwnPassword,
    keep_session: Option<&str>,
) -> Result<(), Refusal> {
    actor.require(Role::Viewer)?;
    if actor.user_id.is_none() {
        return Err(Refusal::Conflict(
            "only a user of the admin page has a password here".into(),
        ));
    }
    let Some(user) = ops.journal().admin_user(&actor.name).await? else {
        return Err(Refusal::NotFound(format!("no user {}", actor.name)));
    };
    let (current, hash) = (change.current.clone(), user.password_hash.clone());
    let verified = tokio::task::spawn_blocking(move || verify_password(&current, &hash))
        .await
        .unwrap_or(false);
    if !verified {
        return Err(Refusal::invalid("current", "not your current password"));
    }
    check_new_password(&change.password, change.confirm.as_deref())?;
    let hash = hashed(&change.password).await?;
    ops.journal()
        .admin_change_own_password(&actor.name, &hash, keep_session)
        .await
        .map_err(user_refusal)
}

/// Lifts the lock after failed logins. Needs admin; audited as
/// `user.unlock`.
pub async fn unlock(ops: &Operations, actor: &Actor, name: &str) -> Result<(), Refusal> {
    actor.require(Role::Admin)?;
    ops.journal()
        .admin_unlock(name, &actor.name)
        .await
        .map_err(user_refusal)
}

/// Deletes a user with their sessions and tokens; never the last
/// administrator. Needs admin; audited as `user.delete`.
pub async fn remove(ops: &Operations, actor: &Actor, name: &str) -> Result<(), Refusal> {
    actor.require(Role::Admin)?;
    ops.journal()
        .admin_delete_user(name, &actor.name)
        .await
        .map_err(user_refusal)
}

/// An API token to make for the acting user.
#[derive(Debug, Clone, Default)]
pub struct TokenRequest {
    /// 1 to 100 characters, trimmed.
    pub label: String,
    /// Default `viewer`; never above the actor's role.
    pub role: Option<String>,
    /// Days until it stops working (at most 3650); `None` or 0: until
    /// revoked.
    pub expires_in_days: Option<u32>,
}

/// A token made: the secret is here once; the journal keeps its hash.
#[derive(Debug, Clone)]
pub struct CreatedToken {
    pub id: i64,
    pub token: String,
    pub label: String,
    pub role: Role,
    pub expires_at: Option<i64>,
}

/// A token request checked: (label, role, expiry in Unix ms).
pub fn check_token(
    request: &TokenRequest,
    actor: &Actor,
    now: i64,
) -> Result<(String, Role, Option<i64>), Refusal> {
    let label = request.label.trim();
    if label.is_empty() || label.len() > 100 {
        return Err(Refusal::invalid("label", "1 to 100 characters"));
    }
    let role = match request
        .role
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty())
    {
        None => Role::Viewer,
        Some(r) => parse_role(r)?,
    };
    if role > actor.role {
        return Err(Refusal::invalid(
            "role",
            format!(
                "a token cannot have more than your role ({})",
                actor.role.as_str()
            ),
        ));
    }
    let expires_at = match request.expires_in_days {
        None | Some(0) => None,
        Some(d) if d <= 3650 => Some(now + i64::from(d) * 86_400_000),
        Some(_) => return Err(Refusal::invalid("expires_in_days", "at most 3650")),
    };
    Ok((label.to_string(), role, expires_at))
}

/// Makes an API token owned by the acting user. Needs admin; audited as
/// `token.create`.
pub async fn create_token(
    ops: &Operations,
    actor: &Actor,
    request: &TokenRequest,
) -> Result<CreatedToken, Refusal> {
    actor.require(Role::Admin)?;
    let Some(user_id) = actor.user_id else {
        return Err(Refusal::Conflict(
            "an API token belongs to a user of the admin page".into(),
        ));
    };
    let (label, role, expires_at) = check_token(request, actor, ops.journal().now_ms())?;
    let token = new_token();
    let id = ops
        .journal()
        .admin_create_token(NewToken {
            hash: token_hash(&token),
            user_id,
            label: label.clone(),
            role: role.as_str().into(),
            expires_at,
            actor: actor.name.clone(),
        })
        .await?;
    Ok(CreatedToken {
        id,
        token,
        label,
        role,
        expires_at,
    })
}

/// Revokes token `id`. Needs admin; audited as `token.revoke`.
pub async fn revoke_token(ops: &Operations, actor: &Actor, id: i64) -> Result<(), Refusal> {
    actor.require(Role::Admin)?;
    if ops.journal().admin_revoke_token(id, &actor.name).await? {
        Ok(())
    } else {
        Err(Refusal::NotFound("no such token".into()))
    }
}

/// The sessions open now, every user's. Needs admin.
pub async fn sessions(
    ops: &Operations,
    actor: &Actor,
) -> Result<Vec<crate::journal::OpenSession>, Refusal> {
    actor.require(Role::Admin)?;
    Ok(ops.journal().admin_open_sessions().await?)
}

/// Ends session `id` (as [`sessions`] lists it): its browser is logged out
/// at its next request. Needs admin; audited as `session.revoke`.
pub async fn revoke_session(ops: &Operations, actor: &Actor, id: &str) -> Result<(), Refusal> {
    actor.require(Role::Admin)?;
    if ops.journal().admin_revoke_session(id, &actor.name).await? {
        Ok(())
    } else {
        Err(Refusal::NotFound("no such session".into()))
    }
}

/// Adds a user to the configured journal through its file, beside a
/// running gateway or not, creating the journal when there is none yet
/// (`ecko-gateway user add`). Needs admin; audited as `user.create` by
/// the actor (`cli:<login>`), like every other command-line action.
pub async fn add_offline(config: &Config, actor: &Actor, user: &NewUser) -> Result<i64, Refusal> {
    actor.require(Role::Admin)?;
    let (name, role) = check_new_user(user)?;
    let path = crate::config::resolve(&config.journal.path);
    if !path.exists() {
        // A new journal: create it with its schema first.
        let j = Journal::open(JournalOptions::new(&path))?;
        j.close().await;
    }
    let hash = hash_password(&user.password).map_err(Refusal::Internal)?;
    let id = crate::journal::external::add_user_offline(
        &path,
        &name,
        role.as_str(),
        &hash,
        &actor.name,
        jiff::Timestamp::now().as_millisecond(),
    )
    .map_err(user_refusal)?;
    // A user exists: the first-run setup is over, and its code with it (a
    // running gateway's page refuses the setup from now on).
    if let Err(e) = super::setup_code::consume(&super::config::data_dir(config)) {
        tracing::warn!(error = %e, "cannot delete the setup code");
    }
    Ok(id)
}
