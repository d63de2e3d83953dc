//! The factory reset on the admin page (`/settings/factory-reset`, admin):
//! what the reset wipes and keeps on this box, and a form that takes the
//! admin's password again, as the Update page's install does (a login alone
//! is not enough for it). Confirmed, the reset goes through
//! [`control::factory_reset`]: audited, logged, handed to the running
//! gateway, which answers this page, stops, wipes and restarts.

use crate::admin::auth::{Caller, Role};
use crate::admin::Shared;
use crate::control;
use crate::factory_reset::Plan;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::{Extension, Form};
use minijinja::context;

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub struct ResetForm {
    pub password: String,
}

pub async fn page(State(state): State<Shared>, Extension(caller): Extension<Caller>) -> Response {
    if let Err(r) = caller.require(Role::Admin) {
        return r;
    }
    show(&state, &caller, StatusCode::OK, None)
}

/// Resets once the admin's password is verified again.
pub async fn confirm(
    State(state): State<Shared>,
    Extension(caller): Extension<Caller>,
    Form(form): Form<ResetForm>,
) -> Response {
    if let Err(r) = caller.require(Role::Admin) {
        return r;
    }
    if !caller.confirms_with(form.password).await {
        let detail = serde_json::json!({"reason": "password not confirmed"}).to_string();
        let _ = state
            .journal
            .audit(
                caller.name(),
                "device.factory_reset_refused",
                None,
                Some(&detail),
            )
            .await;
        return show(
            &state,
            &caller,
            StatusCode::FORBIDDEN,
            Some("that is not your password: the reset needs it again"),
        );
    }
    match control::factory_reset::request(&state.ops, &caller.actor()).await {
        Ok(plan) => state.templates.page(
            StatusCode::OK,
            "factory_reset.html",
            "Factory reset",
            Some(&caller),
            context! { resetting => true, file => plan.config_file.display().to_string() },
        ),
        Err(e) => show(&state, &caller, StatusCode::CONFLICT, Some(&e.to_string())),
    }
}

fn show(state: &Shared, caller: &Caller, status: StatusCode, error: Option<&str>) -> Response {
    let config = state.config();
    let (wiped, kept, plan_error) = match Plan::for_config(&config, caller.name()) {
        Ok(p) => (paths(&p.wipe), paths(&p.kept), None),
        Err(e) => (Vec::new(), Vec::new(), Some(e.to_string())),
    };
    state.templates.page(
        status,
        "factory_reset.html",
        "Factory reset",
        Some(caller),
        context! {
            resetting => false,
            wiped,
            kept,
            error => error.map(str::to_string).or(plan_error),
            busy => state.service.factory_reset.pending(),
        },
    )
}

fn paths(paths: &[std::path::PathBuf]) -> Vec<String> {
    paths.iter().map(|p| p.display().to_string()).collect()
}
