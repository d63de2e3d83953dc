//! The Update page (admin): both slots, the last result, a bundle uploaded,
//! verified against this box and shown before an admin confirms it with
//! their password again (re-authentication at the moment of the action,
//! as no earlier login counts for it), then installed through
//! `update::install` — the function `ecko-image install` runs — with its
//! progress polled from `/update/progress`.
//!
//! The upload is the page script's `POST /update/bundle` with the raw
//! bundle as the body and the CSRF token in `X-CSRF-Token` (the session's
//! check of every state change); the body is streamed to the data
//! partition under `[update] max_bundle_size`, never held in memory. A
//! bundle that fails verification is removed at once and its reason shown;
//! it never reaches a slot.

use crate::admin::auth::{Caller, Role};
use crate::admin::format::time;
use crate::admin::Shared;
use crate::update::{install, staged};
use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form, Json};
use minijinja::context;

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub struct UpdateNotice {
    pub error: Option<String>,
}

pub async fn update_page(
    State(state): State<Shared>,
    Extension(caller): Extension<Caller>,
    axum::extract::Query(notice): axum::extract::Query<UpdateNotice>,
) -> Response {
    if let Err(r) = caller.require(Role::Admin) {
        return r;
    }
    let config = state.config();
    let tz = super::super::api::site_tz(&state);
    let status = crate::update::status(config.update.as_ref()).await;
    let (slots, managed, read_error) = match status {
        None => (None, false, None),
        Some(Ok(s)) => (Some(s), true, None),
        Some(Err(e)) => (None, true, Some(e)),
    };
    let waiting = staged::waiting().map(|s| {
        context! {
            manifest => s.manifest,
            uploaded_by => s.uploaded_by,
            uploaded_at => time(s.uploaded_at, &tz),
        }
    });
    let progress = install::current().now();
    let max_bundle = config.update.as_ref().map(|u| u.max_bundle_size.0);
    let usb = match config.update.as_ref() {
        Some(u) => crate::update::usb::offered(u).await,
        None => Vec::new(),
    };
    state.templates.page(
        StatusCode::OK,
        "update.html",
        "Firmware update",
        Some(&caller),
        context! {
            managed,
            read_error,
            slots,
            waiting,
            progress,
            busy => install::current().busy(),
            error => notice.error,
            max_bundle,
            usb,
        },
    )
}

/// The install's progress, for the page's script.
pub async fn update_progress(Extension(caller): Extension<Caller>) -> Response {
    if let Err(r) = caller.require(Role::Admin) {
        return r;
    }
    Json(install::current().now()).into_response()
}

/// The raw bundle, streamed to the data partition and verified; JSON with
/// the verified manifest, or the reason it is refused.
pub async fn upload_bundle(
    State(state): State<Shared>,
    Extension(caller): Extension<Caller>,
    body: Body,
) -> Response {
    if let Err(r) = caller.require(Role::Admin) {
        return r;
    }
    let config = state.config();
    let Some(update) = config.update.clone() else {
        return refused(
            StatusCode::CONFLICT,
            "firmware updates are not managed by this gateway (no [update] section)".into(),
        );
    };
    if install::current().busy() {
        return refused(StatusCode::CONFLICT, "an install is running".into());
    }
    let dest = install::staging_dir(&state.journal)
        .join(format!("upload-{}.bundle", uuid::Uuid::new_v4().simple()));
    let received = staged::receive(&dest, body.into_data_stream(), update.max_bundle_size.0).await;
    let actor = caller.actor();
    if let Err(e) = received {
        audit_refusal(&state, &actor.name, &e.to_string()).await;
        return refused(StatusCode::PAYLOAD_TOO_LARGE, e.to_string());
    }
    match install::verify_bundle(&update, &dest).await {
        Ok(manifest) => {
            keep_verified(&state, actor.name, manifest.clone(), dest, None).await;
            Json(serde_json::json!({"verified": true, "manifest": manifest})).into_response()
        }
        Err(e) => {
            let _ = tokio::fs::remove_file(&dest).await;
            audit_refusal(&state, &actor.name, &e.to_string()).await;
            refused(StatusCode::UNPROCESSABLE_ENTITY, e.to_string())
        }
    }
}

/// A verified bundle kept waiting for the confirmation, audited as
/// `update.upload`; `usb` names the stick's file, which is not ours to
/// remove.
async fn keep_verified(
    state: &Shared,
    actor: String,
    manifest: install::Verified,
    path: std::path::PathBuf,
    usb: Option<&str>,
) {
    let detail = serde_json::json!({"version": manifest.version,
        "security_version": manifest.security_version, "hardware": manifest.hardware, "usb": usb})
    .to_string();
    if let Err(e) = state
        .journal
        .audit(
            &actor,
            "update.upload",
            Some(&manifest.version),
            Some(&detail),
        )
        .await
    {
        tracing::error!(error = %e, "a verified firmware bundle could not be audited");
    }
    staged::keep(staged::Staged {
        path,
        manifest,
        uploaded_by: actor,
        uploaded_at: state.journal.now_ms(),
        owned: usb.is_none(),
    });
}

async fn audit_refusal(state: &Shared, actor: &str, why: &str) {
    let detail = serde_json::json!({ "reason": why }).to_string();
    if let Err(e) = state
        .journal
        .audit(actor, "update.refused", None, Some(&detail))
        .await
    {
        tracing::error!(error = %e, "a refused firmware bundle could not be audited");
    }
}

fn refused(status: StatusCode, why: String) -> Response {
    (
        status,
        Json(serde_json::json!({"verified": false, "error": why})),
    )
        .into_response()
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub struct InstallForm {
    pub password: String,
    /// `on` to install an older version of the same security version.
    pub downgrade: Option<String>,
}

/// Installs the waiting bundle once the admin's password is verified again;
/// back to the page, which shows the progress.
pub async fn install_bundle(
    State(state): State<Shared>,
    Extension(caller): Extension<Caller>,
    Form(form): Form<InstallForm>,
) -> Response {
    if let Err(r) = caller.require(Role::Admin) {
        return r;
    }
    let config = state.config();
    let Some(update) = config.update.clone() else {
        return back_with("firmware updates are not managed by this gateway");
    };
    if !caller.confirms_with(form.password.clone()).await {
        let detail = serde_json::json!({"reason": "password not confirmed"}).to_string();
        let _ = state
            .journal
            .audit(caller.name(), "update.refused", None, Some(&detail))
            .await;
        return back_with("that is not your password: the install needs it again");
    }
    let Some(waiting) = staged::take() else {
        return back_with("no verified bundle is waiting: upload one first");
    };
    let journal = state.journal.clone();
    let actor = caller.actor();
    let downgrade = form.downgrade.is_some();
    tokio::spawn(async move {
        let done =
            install::install_bundle(&journal, &update, &actor, &waiting.path, downgrade).await;
        if let Err(e) = &done {
            tracing::warn!(error = %e, "firmware install from the admin page refused");
        }
        waiting.remove().await;
    });
    Redirect::to("/update").into_response()
}

/// Throws the waiting bundle away.
pub async fn discard_bundle(
    State(state): State<Shared>,
    Extension(caller): Extension<Caller>,
) -> Response {
    if let Err(r) = caller.require(Role::Admin) {
        return r;
    }
    if let Some(s) = staged::take() {
        s.remove().await;
        let _ = state
            .journal
            .audit(
                caller.name(),
                "update.discard",
                Some(&s.manifest.version),
                None,
            )
            .await;
    }
    Redirect::to("/update").into_response()
}

fn back_with(error: &str) -> Response {
    let q = serde_urlencoded::to_string([("error", error)]).unwrap_or_default();
    Redirect::to(&format!("/update?{q}")).into_response()
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub struct UsbForm {
    pub name: String,
}

/// Verifies a bundle offered on the USB stick and keeps it waiting for the
/// admin's confirmation, like an upload (the file stays on the stick).
pub async fn verify_usb_bundle(
    State(state): State<Shared>,
    Extension(caller): Extension<Caller>,
    Form(form): Form<UsbForm>,
) -> Response {
    if let Err(r) = caller.require(Role::Admin) {
        return r;
    }
    let config = state.config();
    let Some(update) = config.update.clone() else {
        return back_with("firmware updates are not managed by this gateway");
    };
    let Some(path) = crate::update::usb::bundle(&update, &form.name).await else {
        return back_with("no such bundle on the USB stick");
    };
    let actor = caller.actor();
    match install::verify_bundle(&update, &path).await {
        Ok(manifest) => {
            keep_verified(&state, actor.name, manifest, path, Some(&form.name)).await;
            Redirect::to("/update").into_response()
        }
        Err(e) => {
            audit_refusal(&state, &actor.name, &e.to_string()).await;
            back_with(&format!("{}: refused: {e}", form.name))
        }
    }
}
