//! Application services: every operator action written once, below every
//! front end. The admin page's HTML forms, its JSON API and the command line
//! decode their request, call one function here, and render its typed
//! result; none of them calls the journal's write functions or the
//! supervisor for these actions.
//!
//! Each action is one function with a typed input, a typed result, the
//! [`Role`] it needs (checked here, against the [`Actor`]) and the audit
//! record it writes (named in its documentation):
//!
//! | module | actions |
//! | --- | --- |
//! | [`messages`] | retry one delivery, retry every match, discard; dead letters from the command line |
//! | [`endpoints`] | enable, disable, test ("probe"), create, edit |
//! | [`certificates`] | upload an endpoint's certificates, keys and CA bundles |
//! | [`config`] | one validated, versioned, live-applied change; settings, routes, rollback |
//! | [`integrations`] | an integration template added to the configuration (page or file) |
//! | [`users`] | first administrator (admitted by the [`setup_code`]), add, remove, role, password, unlock, API tokens |
//! | [`orders`] | add and list analyzer orders |
//! | [`audit`] | export the audit log |
//! | [`factory_reset`] | hand the running gateway a factory reset |
//!
//! The running gateway is reached through [`Gateway`], a trait the
//! supervisor implements, held in an [`Operations`] handle; so `app` starts
//! the admin page with a handle and nothing here imports `app`.

pub mod audit;
pub mod certificates;
pub mod code_maps;
pub mod config;
pub mod endpoints;
pub mod errors;
pub mod factory_reset;
pub mod integrations;
pub mod log_bundle;
pub mod messages;
mod ops;
pub mod orders;
pub mod setup_code;
pub mod users;

pub use ops::{ApplyFailed, ApplyReport, Gateway, Operations};

use crate::journal::JournalError;

/// What a user may do; each role may do everything the ones before it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Viewer,
    Operator,
    Admin,
}

impl Role {
    pub const NAMES: &'static [&'static str] = &["admin", "operator", "viewer"];

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "viewer" => Some(Role::Viewer),
            "operator" => Some(Role::Operator),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

/// Who does an action: the name the audit log records and the role the
/// action is checked against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub name: String,
    pub role: Role,
    /// The admin page's user id; `None` for the command line.
    pub user_id: Option<i64>,
}

impl Actor {
    /// A user of the admin page (or of its API).
    pub fn user(name: &str, role: Role, user_id: i64) -> Actor {
        Actor {
            name: name.to_string(),
            role,
            user_id: Some(user_id),
        }
    }

    /// The local command line, run by `login` (`SUDO_USER` or `USER`):
    /// whoever may open the journal's file may do everything.
    pub fn command_line(login: &str) -> Actor {
        Actor {
            name: format!("cli:{login}"),
            role: Role::Admin,
            user_id: None,
        }
    }

    /// `Ok` when the actor has at least `role`.
    pub fn require(&self, role: Role) -> Result<(), Refusal> {
        if self.role >= role {
            Ok(())
        } else {
            Err(Refusal::Forbidden(role))
        }
    }
}

/// Why an action was not done; nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// The actor's role is below the one the action needs.
    #[error("this needs the {} role", .0.as_str())]
    Forbidden(Role),
    /// One input is not acceptable; `message` says why, without the field.
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    /// What the action is about does not exist (`no such message`).
    #[error("{0}")]
    NotFound(String),
    /// The action contradicts what exists (a user of that name, the last
    /// administrator, the first administrator made already).
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Internal(String),
    #[error(transparent)]
    Journal(#[from] JournalError),
}

impl Refusal {
    pub(crate) fn invalid(field: &'static str, message: impl Into<String>) -> Refusal {
        Refusal::Invalid {
            field,
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests;
