//! The certificate part of the endpoint form and page: each PEM setting
//! with the file it names and that file's expiry (a warning from
//! [`WARN_BEFORE_DAYS`] days before, as the `certificate_expiring` alert
//! warns by default), and the upload of new files
//! ([`control::certificates`](crate::control::certificates)), a
//! `multipart/form-data` post whose CSRF token the session check reads
//! from the form like any other.

use super::endpoints::{edit_page_with, EditExtras};
use crate::admin::api::site_tz;
use crate::admin::auth::{forbidden, Caller, Role};
use crate::admin::format::time;
use crate::admin::Shared;
use crate::control::certificates::{self as service, Owner, PemSetting, Upload, UploadError};
use crate::control::config::{ChangeError, FieldError};
use axum::extract::{Multipart, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Extension;
use minijinja::{context, Value};

/// How many days before its expiry a certificate is shown as a warning.
pub const WARN_BEFORE_DAYS: i64 = 30;

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// The PEM settings as `_certificates.html` draws them, with the upload
/// errors placed beside the setting they are about.
pub fn values(
    state: &Shared,
    settings: &[PemSetting],
    errors: &[FieldError],
    now_ms: i64,
) -> Vec<Value> {
    let tz = site_tz(state);
    settings
        .iter()
        .map(|s| {
            let days = s.expires.map(|e| (e - now_ms).div_euclid(DAY_MS));
            let state = match days {
                Some(d) if d < 0 => "expired",
                Some(d) if d < WARN_BEFORE_DAYS => "expiring",
                Some(_) => "valid",
                None => "",
            };
            let errors: Vec<&str> = errors
                .iter()
                .filter(|e| e.field.as_deref() == Some(s.key))
                .map(|e| e.message.as_str())
                .collect();
            context! {
                key => s.key,
                label => s.label,
                written => s.written,
                certificate => s.certificate,
                expires => s.expires.map(|ms| time(ms, &tz)),
                days,
                state,
                unreadable => s.unreadable,
                errors,
            }
        })
        .collect()
}

/// The upload's errors that no setting takes.
pub fn general_errors(settings: &[PemSetting], errors: &[FieldError]) -> Vec<String> {
    errors
        .iter()
        .filter(|e| {
            !e.field
                .as_deref()
                .is_some_and(|f| settings.iter().any(|s| s.key == f))
        })
        .map(|e| e.message.clone())
        .collect()
}

/// `POST /endpoints/{name}/certificates`: the files chosen, one field per
/// setting (its key); an empty file field is no upload.
pub async fn upload(
    State(state): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    form: Multipart,
) -> Response {
    if let Err(r) = caller.require(Role::Admin) {
        return r;
    }
    match receive(&state, &caller, Owner::Endpoint(&name), form).await {
        Ok(notice) => {
            let q = serde_urlencoded::to_string([("applied", notice)]).unwrap_or_default();
            Redirect::to(&format!("/endpoints/{name}?{q}")).into_response()
        }
        Err(Refused::Forbidden(role)) => forbidden(role),
        Err(Refused::With(status, errors)) => refused_page(&state, &caller, &name, status, &errors),
    }
}

/// `POST /settings/certificates/{section}`: the same for the `[admin]` or
/// `[hub]` section, read at the next start.
pub async fn upload_for_section(
    State(state): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(section): Path<String>,
    form: Multipart,
) -> Response {
    if let Err(r) = caller.require(Role::Admin) {
        return r;
    }
    match receive(&state, &caller, Owner::Section(&section), form).await {
        Ok(notice) => {
            let q = serde_urlencoded::to_string([("applied", notice)]).unwrap_or_default();
            Redirect::to(&format!("/settings?{q}")).into_response()
        }
        Err(Refused::Forbidden(role)) => forbidden(role),
        Err(Refused::With(status, errors)) => {
            super::config::settings_with_upload(&state, &caller, status, &section, &errors)
        }
    }
}

enum Refused {
    Forbidden(Role),
    With(StatusCode, Vec<FieldError>),
}

/// The form's files read and uploaded for `owner`: what was done, for the
/// notice, or why nothing was.
async fn receive(
    state: &Shared,
    caller: &Caller,
    owner: Owner<'_>,
    mut form: Multipart,
) -> Result<String, Refused> {
    let mut uploads = Vec::new();
    let mut unreadable = None;
    loop {
        match form.next_field().await {
            Ok(Some(field)) => {
                let Some(key) = field.name().map(str::to_string) else {
                    continue;
                };
                if key == "csrf" {
                    continue;
                }
                match field.bytes().await {
                    Ok(bytes) if bytes.is_empty() => {}
                    Ok(bytes) => uploads.push(Upload {
                        key,
                        bytes: bytes.to_vec(),
                    }),
                    Err(e) => {
                        unreadable = Some(e.body_text());
                        break;
                    }
                }
            }
            Ok(None) => break,
            Err(e) => {
                unreadable = Some(e.body_text());
                break;
            }
        }
    }
    let result = match unreadable {
        Some(why) => Err(UploadError::Refused(vec![FieldError {
            field: None,
            message: format!(
                "the upload could not be read: {why} (at most {} KiB a file)",
                service::MAX_FILE_SIZE / 1024
            ),
            line: 0,
        }])),
        None => service::upload(&state.ops, &caller.actor(), owner, uploads).await,
    };
    match result {
        Ok((applied, stored)) => {
            let files: Vec<String> = stored
                .iter()
                .map(|s| format!("{} ({})", s.key, s.accepted.subject))
                .collect();
            let saved = match &applied.version {
                Some(v) => format!("saved as version {}", v.id),
                None => "the file already said so".into(),
            };
            Ok(format!(
                "Uploaded {}; {saved}; {}",
                files.join(", "),
                applied.report.summary()
            ))
        }
        Err(UploadError::Forbidden(role)) => Err(Refused::Forbidden(role)),
        Err(UploadError::Refused(errors)) => {
            Err(Refused::With(StatusCode::UNPROCESSABLE_ENTITY, errors))
        }
        Err(UploadError::Change(e)) => {
            let status = match &e {
                ChangeError::Forbidden(role) => return Err(Refused::Forbidden(*role)),
                ChangeError::Edit(crate::config::edit::EditError::UnknownEndpoint(_)) => {
                    StatusCode::NOT_FOUND
                }
                ChangeError::NotEditable(_) => StatusCode::CONFLICT,
                ChangeError::Write(_) => StatusCode::INTERNAL_SERVER_ERROR,
                _ => StatusCode::UNPROCESSABLE_ENTITY,
            };
            let errors: Vec<FieldError> = super::endpoints::field_errors(&e)
                .into_iter()
                .map(|mut f| {
                    // The loader's errors are about the settings, not the
                    // files: shown above the upload as a whole.
                    f.field = None;
                    f
                })
                .collect();
            Err(Refused::With(status, errors))
        }
    }
}

fn refused_page(
    state: &Shared,
    caller: &Caller,
    name: &str,
    status: StatusCode,
    errors: &[FieldError],
) -> Response {
    edit_page_with(
        state,
        caller,
        name,
        status,
        EditExtras {
            upload_errors: errors,
        },
    )
}
