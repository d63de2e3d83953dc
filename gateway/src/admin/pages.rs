//! The HTML pages. Each reads the journal, renders on the server, and works
//! without script; `app.js` adds the live log.

use super::api::json;
use super::api::{
    bad_request, journal_error, overview, site_tz, window, FilterParams, StatsParams,
};
use super::auth::{
    allow_login_attempt, clear_cookie, client_ip, forbidden, new_token, same_origin,
    session_cookie, still_valid, token_hash, verify_password, Caller, Role,
};
use super::render::{
    bars, csrf_field, esc, opt_time, page, payload, printable, query_value, safe_back, time,
};
use super::{ClientAddr, Shared};
use crate::control::users::{NewUser, TokenRequest};
use crate::control::{self, Refusal};
use crate::journal::{BulkOutcome, MessageFilter, MessagePage, BULK_LIMIT};
use axum::extract::{Form, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Extension;
use std::fmt::Write;
use std::time::Duration;

fn html(status: StatusCode, body: String) -> Response {
    (status, Html(body)).into_response()
}

fn problem(status: StatusCode, caller: Option<&Caller>, why: &str) -> Response {
    html(
        status,
        page(
            "Cannot do that",
            caller,
            &format!("<p class=\"error\">{}</p>", esc(why)),
        ),
    )
}

pub async fn not_found() -> Response {
    problem(StatusCode::NOT_FOUND, None, "There is no such page.")
}

// ---- first run, login, logout ----

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub struct Credentials {
    pub name: String,
    pub password: String,
    pub confirm: String,
    pub role: String,
    pub csrf: String,
}

fn setup_page(error: Option<&str>, name: &str) -> String {
    page(
        "Create the first administrator",
        None,
        &format!(
            "<form method=\"post\" action=\"/setup\" class=\"card\"><p>This gateway has no users yet. The account made here can manage everything, including other users.</p>{}\
             <label>User name <input name=\"name\" value=\"{}\" required autocomplete=\"username\"></label>\
             <label>Password (at least 10 characters) <input type=\"password\" name=\"password\" required autocomplete=\"new-password\"></label>\
             <label>Password again <input type=\"password\" name=\"confirm\" required autocomplete=\"new-password\"></label>\
             <button id=\"create\">Create administrator</button></form>",
            error.map(|e| format!("<p class=\"error\">{}</p>", esc(e))).unwrap_or_default(),
            esc(name)
        ),
    )
}

pub async fn setup_form(State(state): State<Shared>) -> Response {
    match state.journal.admin_user_count().await {
        Ok(0) => html(StatusCode::OK, setup_page(None, "")),
        Ok(_) => Redirect::to("/login").into_response(),
        Err(e) => journal_error(e),
    }
}

pub async fn setup(
    State(state): State<Shared>,
    headers: HeaderMap,
    Form(c): Form<Credentials>,
) -> Response {
    if !same_origin(&headers) {
        return problem(StatusCode::FORBIDDEN, None, "cross-site request refused");
    }
    let user = NewUser {
        name: c.name.clone(),
        role: "admin".into(),
        password: c.password.clone(),
        confirm: Some(c.confirm.clone()),
    };
    match control::users::setup(&state.ops, &user).await {
        Ok(_) => Redirect::to("/login").into_response(),
        Err(Refusal::Invalid { field, message }) => html(
            StatusCode::UNPROCESSABLE_ENTITY,
            setup_page(Some(&user_sentence(field, &message)), c.name.trim()),
        ),
        Err(e @ Refusal::Conflict(_)) => problem(StatusCode::FORBIDDEN, None, &e.to_string()),
        Err(e) => refused(None, &e),
    }
}

/// A refused user field as the users and setup pages say it.
fn user_sentence(field: &str, message: &str) -> String {
    match field {
        "name" => format!("User name: {message}."),
        "role" => format!("Role: {message}."),
        "password" => format!("Password: {message}."),
        "confirm" => "The two passwords differ.".into(),
        "expires_in_days" | "label" => format!("{field}: {message}"),
        other => format!("{other}: {message}"),
    }
}

/// A refusal of a service as a page says it.
fn refused(caller: Option<&Caller>, e: &Refusal) -> Response {
    let status = match e {
        Refusal::Forbidden(role) => return forbidden(*role),
        Refusal::Invalid { .. } => StatusCode::BAD_REQUEST,
        Refusal::NotFound(_) => StatusCode::NOT_FOUND,
        Refusal::Conflict(_) => StatusCode::CONFLICT,
        Refusal::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        Refusal::Journal(j) => return journal_problem(caller, j),
    };
    problem(status, caller, &e.to_string())
}

/// A journal error as a page (never a JSON body on an HTML route).
pub(super) fn journal_problem(
    caller: Option<&Caller>,
    e: &crate::journal::JournalError,
) -> Response {
    tracing::error!(error = %e, "admin page: journal error");
    problem(StatusCode::INTERNAL_SERVER_ERROR, caller, "journal error")
}

fn login_page(error: Option<&str>, name: &str) -> String {
    page(
        "Log in",
        None,
        &format!(
            "<form method=\"post\" action=\"/login\" class=\"card\">{}\
             <label>User name <input name=\"name\" value=\"{}\" required autocomplete=\"username\"></label>\
             <label>Password <input type=\"password\" name=\"password\" required autocomplete=\"current-password\"></label>\
             <button id=\"login\">Log in</button></form>",
            error.map(|e| format!("<p class=\"error\">{}</p>", esc(e))).unwrap_or_default(),
            esc(name)
        ),
    )
}

pub async fn login_form(State(state): State<Shared>) -> Response {
    match state.journal.admin_user_count().await {
        Ok(0) => Redirect::to("/setup").into_response(),
        Ok(_) => html(StatusCode::OK, login_page(None, "")),
        Err(e) => journal_error(e),
    }
}

pub async fn login(
    State(state): State<Shared>,
    addr: Option<Extension<ClientAddr>>,
    headers: HeaderMap,
    Form(c): Form<Credentials>,
) -> Response {
    if !same_origin(&headers) {
        return problem(StatusCode::FORBIDDEN, None, "cross-site request refused");
    }
    let ip = client_ip(addr.as_ref().map(|a| &a.0));
    if !allow_login_attempt(&state, ip) {
        return html(
            StatusCode::TOO_MANY_REQUESTS,
            login_page(Some("Too many attempts; wait a minute."), &c.name),
        );
    }
    let j = &state.journal;
    let name = c.name.trim().to_string();
    let user = match j.admin_user(&name).await {
        Ok(u) => u,
        Err(e) => return journal_error(e),
    };
    let failed = || {
        html(
            StatusCode::UNAUTHORIZED,
            login_page(Some("Wrong user name or password."), &name),
        )
    };
    let Some(user) = user else {
        let password = c.password.clone();
        let dummy = state.dummy_hash.clone();
        let _ = tokio::task::spawn_blocking(move || verify_password(&password, &dummy)).await;
        return failed();
    };
    let now = j.now_ms();
    if user.locked_until > now {
        let _ = j
            .audit(&name, "login.refused", None, Some("account locked"))
            .await;
        return html(
            StatusCode::TOO_MANY_REQUESTS,
            login_page(
                Some("This account is locked after repeated failed logins; try again later."),
                &name,
            ),
        );
    }
    let (password, hash) = (c.password.clone(), user.password_hash.clone());
    let ok = tokio::task::spawn_blocking(move || verify_password(&password, &hash))
        .await
        .unwrap_or(false);
    if !ok {
        let config = state.config();
        let admin = &config.admin;
        if let Err(e) = j
            .admin_login_failed(
                user.id,
                admin.lockout_after.max(1),
                admin.lockout.0.as_millis() as i64,
            )
            .await
        {
            return journal_error(e);
        }
        return failed();
    }
    let token = new_token();
    let ttl = state.config().admin.session_ttl.0;
    if let Err(e) = j
        .admin_open_session(
            user.id,
            &token_hash(&token),
            &new_token(),
            ttl.as_millis() as i64,
        )
        .await
    {
        return journal_error(e);
    }
    (
        StatusCode::SEE_OTHER,
        [
            (header::SET_COOKIE, session_cookie(&token, ttl.as_secs())),
            (header::LOCATION, "/".to_string()),
        ],
    )
        .into_response()
}

pub async fn logout(State(state): State<Shared>, Extension(caller): Extension<Caller>) -> Response {
    if let Some(hash) = &caller.session_hash {
        if let Err(e) = state.journal.admin_close_session(hash, caller.name()).await {
            return journal_error(e);
        }
    }
    (
        StatusCode::SEE_OTHER,
        [
            (header::SET_COOKIE, clear_cookie()),
            (header::LOCATION, "/login".to_string()),
        ],
    )
        .into_response()
}

// ---- dashboard ----

pub async fn dashboard(
    State(state): State<Shared>,
    Extension(caller): Extension<Caller>,
) -> Response {
    let o = match overview(&state).await {
        Ok(v) => v,
        Err(e) => return journal_error(e),
    };
    let tz = site_tz(&state);
    let mut body = String::new();
    if o.alerts.is_empty() {
        body.push_str("<p id=\"alerts\" class=\"ok\">No alerts.</p>");
    } else {
        body.push_str("<ul id=\"alerts\" class=\"alerts\">");
        for a in &o.alerts {
            let _ = write!(body, "<li class=\"error\">{}</li>", esc(a));
        }
        body.push_str("</ul>");
    }
    body.push_str(
        "<table id=\"endpoints\"><thead><tr><th>Endpoint</th><th>Type</th><th>Direction</th><th>Status</th><th>Last message</th><th>Queue</th><th>Dead</th><th>Messages today</th><th>Alerts</th></tr></thead><tbody>",
    );
    for v in &o.endpoints {
        let since = match (v.status, v.since) {
            ("down" | "degraded", Some(s)) => format!(" since {}", time(s, &tz)),
            _ => String::new(),
        };
        let _ = write!(
            body,
            "<tr class=\"endpoint\" data-name=\"{n}\"><td><a href=\"/logs?endpoint={q}\">{n}</a></td><td>{}</td><td>{}</td><td class=\"status {s}\" title=\"{}\">{s}{since}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"error\">{}</td></tr>",
            v.kind,
            esc(&v.direction),
            esc(v.detail.as_deref().unwrap_or("")),
            opt_time(v.last_message_at, &tz),
            v.queue_depth,
            v.dead,
            v.messages_today,
            esc(&v.alerts.join("; ")),
            n = esc(&v.name),
            q = esc(&query_value(&v.name)),
            s = v.status,
        );
    }
    body.push_str("</tbody></table>");
    html(StatusCode::OK, page("Dashboard", Some(&caller), &body))
}

// ---- logs ----

fn filter_form(action: &str, p: &FilterParams, state: &Shared) -> String {
    let v = |o: &Option<String>| esc(o.as_deref().unwrap_or(""));
    let mut endpoints = String::from("<option value=\"\">any</option>");
    for e in &state.config().endpoints {
        let sel = if p.endpoint.as_deref() == Some(e.name.as_str()) {
            " selected"
        } else {
            ""
        };
        let _ = write!(endpoints, "<option{sel}>{}</option>", esc(&e.name));
    }
    let mut statuses = String::from("<option value=\"\">any</option>");
    for s in MessageFilter::STATUSES {
        let sel = if p.status.as_deref() == Some(s) {
            " selected"
        } else {
            ""
        };
        let _ = write!(statuses, "<option{sel}>{s}</option>");
    }
    format!(
        "<form method=\"get\" action=\"{action}\" class=\"filters\">\
         <label>Endpoint <select name=\"endpoint\">{endpoints}</select></label>\
         <label>Status <select name=\"status\">{statuses}</select></label>\
         <label>Message type <input name=\"message_type\" value=\"{}\" size=\"10\"></label>\
         <label>Control id <input name=\"control_id\" value=\"{}\" size=\"12\"></label>\
         <label>Patient id <input name=\"patient_id\" value=\"{}\" size=\"12\"></label>\
         <label>From <input type=\"datetime-local\" name=\"from\" value=\"{}\"></label>\
         <label>To <input type=\"datetime-local\" name=\"to\" value=\"{}\"></label>\
         <button>Filter</button></form>",
        v(&p.message_type),
        v(&p.control_id),
        v(&p.patient_id),
        v(&p.from),
        v(&p.to),
    )
}

fn query_string(p: &FilterParams, before: Option<i64>) -> String {
    let mut pairs: Vec<(&str, String)> = Vec::new();
    for (k, v) in [
        ("endpoint", &p.endpoint),
        ("status", &p.status),
        ("message_type", &p.message_type),
        ("control_id", &p.control_id),
        ("patient_id", &p.patient_id),
        ("from", &p.from),
        ("to", &p.to),
    ] {
        if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
            pairs.push((k, v.to_string()));
        }
    }
    if let Some(b) = before {
        pairs.push(("before", b.to_string()));
    }
    serde_urlencoded::to_string(&pairs).unwrap_or_default()
}

/// The message list; with `actions`, each row gets retry and discard forms
/// that come back to the given page.
fn message_table(
    page_: &MessagePage,
    tz: &jiff::tz::TimeZone,
    actions: Option<(&Caller, &str)>,
) -> String {
    let mut body = String::from(
        "<table id=\"messages\"><thead><tr><th>Received</th><th>Id</th><th>Source</th><th>Type</th><th>Control id</th><th>Patient</th><th>Status</th><th>Destinations</th>",
    );
    if actions.is_some() {
        body.push_str("<th>Actions</th>");
    }
    body.push_str("</tr></thead><tbody>");
    for m in &page_.messages {
        let mut dests = String::new();
        for d in &m.deliveries {
            let _ = write!(
                dests,
                "<div><span class=\"st-{s}\">{}: {s}</span>{}</div>",
                esc(&d.destination),
                d.last_error
                    .as_deref()
                    .filter(|_| d.state != "delivered")
                    .map(|e| format!(" <span class=\"error\">{}</span>", esc(e)))
                    .unwrap_or_default(),
                s = d.state,
            );
        }
        let _ = write!(
            body,
            "<tr class=\"message st-{s}\" data-id=\"{id}\"><td>{}</td><td><a href=\"/messages/{id}\">#{id}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"st-{s}\">{s}</td><td>{dests}</td>",
            time(m.received_at, tz),
            esc(&m.source),
            esc(&m.message_type),
            esc(m.control_id.as_deref().unwrap_or("")),
            esc(m.patient_id.as_deref().unwrap_or("")),
            id = m.id,
            s = m.status,
        );
        if let Some((c, back)) = actions {
            let _ = write!(body, "<td>{}</td>", action_forms(c, m.id, back));
        }
        body.push_str("</tr>");
    }
    body.push_str("</tbody></table>");
    body
}

/// Retry and discard forms for one message; `back` is the page (path and
/// query) they return to.
fn action_forms(c: &Caller, id: i64, back: &str) -> String {
    if c.role < Role::Operator {
        return String::new();
    }
    format!(
        "<form method=\"post\" action=\"/messages/{id}/retry\" class=\"inline\">{csrf}{back}<button class=\"retry\">Retry</button></form> \
         <form method=\"post\" action=\"/messages/{id}/discard\" class=\"inline\" data-confirm=\"Discard this message's undelivered deliveries?\">{csrf}{back}<input name=\"reason\" placeholder=\"reason\" required size=\"14\"><button class=\"discard\">Discard</button></form>",
        csrf = csrf_field(c),
        back = back_field(back),
    )
}

fn back_field(back: &str) -> String {
    format!(
        "<input type=\"hidden\" name=\"back\" value=\"{}\">",
        esc(back)
    )
}

async fn message_list(
    state: &Shared,
    p: &FilterParams,
) -> Result<(MessageFilter, MessagePage), Response> {
    let filter = p
        .filter(&site_tz(state))
        .map_err(|e| problem(StatusCode::BAD_REQUEST, None, &e))?;
    let (before, limit) = p
        .paging()
        .map_err(|e| problem(StatusCode::BAD_REQUEST, None, &e))?;
    let page_ = state
        .journal
        .list_messages(filter.clone(), before, limit)
        .await
        .map_err(journal_error)?;
    Ok((filter, page_))
}

pub async fn logs(
    State(state): State<Shared>,
    Extension(caller): Extension<Caller>,
    Query(p): Query<FilterParams>,
) -> Response {
    let (_, page_) = match message_list(&state, &p).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let tz = site_tz(&state);
    let mut body = filter_form("/logs", &p, &state);
    // The live stream gets the same filters as the list below it.
    let stream = match query_string(&p, None) {
        q if q.is_empty() => "/logs/stream".to_string(),
        q => format!("/logs/stream?{q}"),
    };
    let _ = write!(
        body,
        "<h2>Live <span id=\"live-state\" class=\"live\"></span></h2>\
         <table id=\"live-log\" data-stream=\"{}\"><thead><tr><th>Time ({})</th><th>Event</th><th>Endpoint</th><th>Type</th><th>Control id</th><th>Duration</th><th>Message</th></tr></thead><tbody></tbody></table>\
         <h2>Messages</h2>",
        esc(&stream),
        esc(&state.config().site.time_zone),
    );
    body.push_str(&message_table(&page_, &tz, None));
    if let Some(b) = page_.next_before {
        let _ = write!(
            body,
            "<p class=\"pager\"><a id=\"older\" href=\"/logs?{}\">Older messages →</a></p>",
            esc(&query_string(&p, Some(b)))
        );
    }
    html(StatusCode::OK, page("Logs", Some(&caller), &body))
}

/// How often a live log checks that its session (or token) still holds.
const SESSION_RECHECK: Duration = Duration::from_secs(1);

/// Server-Sent Events: every journal event after the client's last one
/// that matches the filters, with its time written in the site's time zone.
/// The stream ends when the session is logged out or expires, or the token
/// is revoked (checked every [`SESSION_RECHECK`]).
pub async fn log_stream(
    State(state): State<Shared>,
    Extension(caller): Extension<Caller>,
    Query(p): Query<FilterParams>,
    headers: HeaderMap,
) -> Response {
    let tz = site_tz(&state);
    let filter = match p.filter(&tz) {
        Ok(f) => f,
        Err(e) => return bad_request(e),
    };
    let start = match headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i64>().ok())
    {
        Some(id) => id,
        None => match state.journal.last_event_id().await {
            Ok(id) => id,
            Err(e) => return journal_error(e),
        },
    };
    struct Live {
        state: Shared,
        caller: Caller,
        filter: MessageFilter,
        tz: jiff::tz::TimeZone,
        after: i64,
        pending: std::collections::VecDeque<Event>,
        checked: std::time::Instant,
    }
    let live = Live {
        state,
        caller,
        filter,
        tz,
        after: start,
        pending: std::collections::VecDeque::new(),
        checked: std::time::Instant::now(),
    };
    let stream = futures_util::stream::unfold(live, |mut live| async move {
        loop {
            if live.checked.elapsed() >= SESSION_RECHECK {
                if !still_valid(&live.state, &live.caller).await {
                    return None;
                }
                live.checked = std::time::Instant::now();
            }
            if let Some(ev) = live.pending.pop_front() {
                return Some((Ok::<Event, std::convert::Infallible>(ev), live));
            }
            if live.state.shutdown.is_cancelled() {
                return None;
            }
            match live.state.journal.events_after(live.after, 200).await {
                Ok(events) if !events.is_empty() => {
                    live.after = events.last().map_or(live.after, |e| e.id);
                    for e in events.iter().filter(|e| e.matches(&live.filter)) {
                        let mut data =
                            serde_json::to_value(json::Live::from(e)).unwrap_or_default();
                        data["time"] = time(e.at, &live.tz).into();
                        live.pending.push_back(
                            Event::default()
                                .event("log")
                                .id(e.id.to_string())
                                .data(data.to_string()),
                        );
                    }
                    if !live.pending.is_empty() {
                        continue;
                    }
                }
                Ok(_) => {}
                Err(_) => return None,
            }
            tokio::select! {
                _ = live.state.shutdown.cancelled() => return None,
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
        }
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

// ---- message viewer ----

pub async fn message(
    State(state): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<i64>,
) -> Response {
    let j = &state.journal;
    let m = match j.message(id).await {
        Ok(Some(m)) => m,
        Ok(None) => {
            return problem(
                StatusCode::NOT_FOUND,
                Some(&caller),
                "There is no such message.",
            )
        }
        Err(e) => return journal_error(e),
    };
    let (outbox, events, discards) =
        match tokio::try_join!(j.outbox_of(id), j.events_of(id), j.discards_of(id)) {
            Ok(x) => x,
            Err(e) => return journal_error(e),
        };
    if let Err(e) = j
        .audit(
            caller.name(),
            "message.view",
            Some(&format!("message {id}")),
            Some("page"),
        )
        .await
    {
        return journal_error(e);
    }
    let tz = site_tz(&state);
    let mut body = format!(
        "<table class=\"facts\"><tr><th>Received</th><td>{}</td></tr><tr><th>Source</th><td>{}</td></tr><tr><th>Type</th><td>{}</td></tr>\
         <tr><th>Control id</th><td>{}</td></tr><tr><th>Patient id</th><td>{}</td></tr><tr><th>Content type</th><td>{}</td></tr><tr><th>Size</th><td>{} bytes</td></tr></table>",
        time(m.received_at, &tz),
        esc(&m.source),
        esc(&m.message_type),
        esc(m.control_id.as_deref().unwrap_or("")),
        esc(m.patient_id.as_deref().unwrap_or("")),
        esc(&m.content_type),
        m.payload.len(),
    );
    body.push_str(&action_forms(&caller, id, &format!("/messages/{id}")));
    body.push_str("<h2>Deliveries</h2><table id=\"deliveries\"><thead><tr><th>Destination</th><th>Transform</th><th>State</th><th>Attempts</th><th>Last error</th><th>Discarded</th></tr></thead><tbody>");
    for o in &outbox {
        let d = discards.get(&o.id);
        let state_name = match (o.state, d.is_some()) {
            (crate::journal::OutboxState::Dead, true) => "discarded",
            (crate::journal::OutboxState::Dead, false) => "dead",
            (crate::journal::OutboxState::Delivered, _) => "delivered",
            (crate::journal::OutboxState::Leased, _) => "in-flight",
            (crate::journal::OutboxState::Queued, _) if o.attempts > 0 => "failing",
            (crate::journal::OutboxState::Queued, _) => "queued",
        };
        let _ = write!(
            body,
            "<tr class=\"delivery st-{s}\"><td>{}</td><td>{}</td><td class=\"st-{s}\">{s}</td><td>{}</td><td class=\"error\">{}</td><td>{}</td></tr>",
            esc(&o.destination),
            esc(&o.transform),
            o.attempts,
            esc(o.last_error.as_deref().unwrap_or("")),
            d.map(|(at, by, why)| format!("{} by {}: {}", time(*at, &tz), esc(by), esc(why)))
                .unwrap_or_default(),
            s = state_name,
        );
    }
    body.push_str("</tbody></table><h2>History</h2><table id=\"history\"><thead><tr><th>Time</th><th>Event</th><th>Destination</th><th>Outcome</th><th>Duration</th><th>Response or error</th><th>By</th></tr></thead><tbody>");
    for e in &events {
        let dest = e
            .outbox_id
            .and_then(|oid| outbox.iter().find(|o| o.id == oid))
            .map(|o| o.destination.as_str())
            .unwrap_or("");
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"st-{o}\">{o}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            time(e.at, &tz),
            esc(&e.kind),
            esc(dest),
            e.duration_ms.map(|d| format!("{d} ms")).unwrap_or_default(),
            esc(e.detail.as_deref().unwrap_or("")),
            esc(e.actor.as_deref().unwrap_or("")),
            o = esc(e.outcome.as_deref().unwrap_or("")),
        );
    }
    body.push_str("</tbody></table><h2>Payload</h2>");
    body.push_str(&payload(&m.content_type, &m.message_type, &m.payload));
    body.push_str("<h2>Acknowledgement sent</h2>");
    match &m.ack {
        Some(ack) => {
            let _ = write!(
                body,
                "<pre class=\"ack\">{}</pre>",
                esc(&printable(&String::from_utf8_lossy(ack)))
            );
        }
        None => body.push_str("<p>None (this source does not acknowledge).</p>"),
    }
    let _ = write!(
        body,
        "<h2>Raw</h2><pre class=\"raw\">{}</pre>",
        esc(&printable(&String::from_utf8_lossy(&m.payload)))
    );
    html(
        StatusCode::OK,
        page(&format!("Message #{id}"), Some(&caller), &body),
    )
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub struct ActionForm {
    pub csrf: String,
    pub reason: String,
    /// The page the form was on (see [`safe_back`]).
    pub back: String,
}

pub async fn retry_one(
    State(state): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<i64>,
    Form(f): Form<ActionForm>,
) -> Response {
    match control::messages::retry_one(&state.ops, &caller.actor(), id).await {
        Ok(_) => back(&f.back, "/errors", None),
        Err(e) => message_refused(&caller, &e),
    }
}

pub async fn discard_one(
    State(state): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<i64>,
    Form(f): Form<ActionForm>,
) -> Response {
    match control::messages::discard(&state.ops, &caller.actor(), id, &f.reason).await {
        Ok(_) => back(&f.back, "/errors", None),
        Err(e) => message_refused(&caller, &e),
    }
}

fn message_refused(caller: &Caller, e: &Refusal) -> Response {
    match e {
        Refusal::NotFound(_) => problem(
            StatusCode::NOT_FOUND,
            Some(caller),
            "There is no such message.",
        ),
        e => refused(Some(caller), e),
    }
}

/// A 303 back to the page a form came from, named by its hidden `back`
/// field when that is a safe path on this site (see [`safe_back`]), else
/// to `fallback`; `notice` is added to its query.
fn back(given: &str, fallback: &str, notice: Option<&str>) -> Response {
    let mut to = safe_back(given).unwrap_or(fallback).to_string();
    if let Some(n) = notice {
        to.push(if to.contains('?') { '&' } else { '?' });
        to.push_str(n);
    }
    Redirect::to(&to).into_response()
}

/// What the errors page says after "retry all matching".
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub struct RetryNotice {
    pub retried: Option<String>,
    pub truncated: Option<String>,
}

// ---- errors ----

pub async fn errors(
    State(state): State<Shared>,
    Extension(caller): Extension<Caller>,
    Query(mut p): Query<FilterParams>,
    Query(notice): Query<RetryNotice>,
) -> Response {
    if p.status.as_deref().is_none_or(str::is_empty) {
        p.status = Some("errors".into());
    }
    let (_, page_) = match message_list(&state, &p).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let tz = site_tz(&state);
    let mut body = String::new();
    if let Some(n) = notice
        .retried
        .as_deref()
        .and_then(|n| n.parse::<u64>().ok())
    {
        let _ = write!(
            body,
            "<p id=\"retried\" class=\"notice\">{n} deliver{} queued again.{}</p>",
            if n == 1 { "y" } else { "ies" },
            if notice.truncated.is_some() {
                format!(" More than {BULK_LIMIT} messages matched: only the newest {BULK_LIMIT} were retried; retry again for the rest.")
            } else {
                String::new()
            }
        );
    }
    body.push_str(&filter_form("/errors", &p, &state));
    let here = match query_string(&p, None) {
        q if q.is_empty() => "/errors".to_string(),
        q => format!("/errors?{q}"),
    };
    if caller.role >= Role::Operator && !page_.messages.is_empty() {
        let mut hidden = csrf_field(&caller);
        hidden.push_str(&back_field(&here));
        for (k, v) in [
            ("endpoint", &p.endpoint),
            ("status", &p.status),
            ("message_type", &p.message_type),
            ("control_id", &p.control_id),
            ("patient_id", &p.patient_id),
            ("from", &p.from),
            ("to", &p.to),
        ] {
            if let Some(v) = v {
                let _ = write!(
                    hidden,
                    "<input type=\"hidden\" name=\"{k}\" value=\"{}\">",
                    esc(v)
                );
            }
        }
        let _ = write!(
            body,
            "<form method=\"post\" action=\"/errors/retry\" data-confirm=\"Retry every message matching this filter?\">{hidden}<button id=\"retry-all\">Retry all matching</button></form>"
        );
    }
    if page_.messages.is_empty() {
        body.push_str("<p id=\"no-errors\">No failed or dead messages match.</p>");
    } else {
        body.push_str(&message_table(&page_, &tz, Some((&caller, &here))));
    }
    if let Some(b) = page_.next_before {
        let _ = write!(
            body,
            "<p class=\"pager\"><a href=\"/errors?{}\">Older →</a></p>",
            esc(&query_string(&p, Some(b)))
        );
    }
    html(StatusCode::OK, page("Errors", Some(&caller), &body))
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub struct RetryAllForm {
    #[serde(flatten)]
    pub filter: FilterParams,
    pub back: String,
}

pub async fn retry_matching(
    State(state): State<Shared>,
    Extension(caller): Extension<Caller>,
    Form(form): Form<RetryAllForm>,
) -> Response {
    let filter = match form.filter.filter(&site_tz(&state)) {
        Ok(f) => f,
        Err(e) => return problem(StatusCode::BAD_REQUEST, Some(&caller), &e),
    };
    match control::messages::retry_matching(&state.ops, &caller.actor(), filter).await {
        Ok(BulkOutcome { rows, truncated }) => {
            // Without a back page, the errors page keeps the filter.
            let fallback = match query_string(&form.filter, None) {
                q if q.is_empty() => "/errors".to_string(),
                q => format!("/errors?{q}"),
            };
            let notice = format!(
                "retried={rows}{}",
                if truncated { "&truncated=1" } else { "" }
            );
            back(&form.back, &fallback, Some(&notice))
        }
        Err(e) => refused(Some(&caller), &e),
    }
}

// ---- statistics ----

pub async fn stats(
    State(state): State<Shared>,
    Extension(caller): Extension<Caller>,
    Query(p): Query<StatsParams>,
) -> Response {
    let (chosen, _, buckets) = match window(p.window.as_deref()) {
        Ok(w) => w,
        Err(e) => return problem(StatusCode::BAD_REQUEST, Some(&caller), &e),
    };
    let names: Vec<String> = state
        .config()
        .endpoints
        .iter()
        .map(|e| e.name.clone())
        .collect();
    let now = state.journal.now_ms();
    let mut body = String::from("<p>Window: ");
    for w in ["1h", "24h", "7d"] {
        if w == chosen {
            let _ = write!(body, "<strong>{w}</strong> ");
        } else {
            let _ = write!(body, "<a href=\"/stats?window={w}\">{w}</a> ");
        }
    }
    body.push_str("</p>");
    let mut tables = Vec::new();
    for w in ["1h", "24h", "7d"] {
        let Ok((_, span, b)) = window(Some(w)) else {
            continue;
        };
        match state
            .journal
            .endpoint_stats(
                names.clone(),
                now - span,
                if w == chosen { buckets } else { b },
            )
            .await
        {
            Ok(s) => tables.push((w, s)),
            Err(e) => return journal_error(e),
        }
    }
    body.push_str("<table id=\"stats\"><thead><tr><th>Endpoint</th><th>Window</th><th>Received</th><th>Delivered</th><th>Failed attempts</th><th>Success rate</th><th>Avg time</th><th>p95 time</th></tr></thead><tbody>");
    for name in &names {
        for (w, s) in &tables {
            let Some(s) = s.iter().find(|s| &s.name == name) else {
                continue;
            };
            let _ = write!(
                body,
                "<tr><td>{}</td><td>{w}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(name),
                s.received,
                s.delivered,
                s.failed,
                s.success_rate.map(|r| format!("{:.1} %", r * 100.0)).unwrap_or_else(|| "—".into()),
                s.avg_ms.map(|a| format!("{a:.0} ms")).unwrap_or_else(|| "—".into()),
                s.p95_ms.map(|a| format!("{a} ms")).unwrap_or_else(|| "—".into()),
            );
        }
    }
    body.push_str("</tbody></table><h2>Volume</h2>");
    if let Some((_, s)) = tables.iter().find(|(w, _)| *w == chosen) {
        for e in s {
            let _ = write!(
                body,
                "<figure><figcaption>{} — messages per {} over {chosen}</figcaption>{}</figure>",
                esc(&e.name),
                match chosen {
                    "1h" => "5 minutes",
                    "24h" => "hour",
                    _ => "6 hours",
                },
                bars(&e.buckets, 360, 60, &format!("{} volume", e.name))
            );
        }
    }
    html(StatusCode::OK, page("Statistics", Some(&caller), &body))
}

// ---- settings, users, audit ----

async fn users_page(
    state: &Shared,
    caller: &Caller,
    status: StatusCode,
    error: Option<&str>,
) -> Response {
    users_page_with(state, caller, status, error, None).await
}

/// The users page: each user with role, lock and actions; API tokens; the
/// forms to add either. `new_token` is shown once, right after creation.
async fn users_page_with(
    state: &Shared,
    caller: &Caller,
    status: StatusCode,
    error: Option<&str>,
    new_token: Option<&str>,
) -> Response {
    let (users, tokens) =
        match tokio::try_join!(state.journal.admin_users(), state.journal.admin_tokens()) {
            Ok(x) => x,
            Err(e) => return journal_error(e),
        };
    let tz = site_tz(state);
    let csrf = csrf_field(caller);
    let mut body = String::new();
    if let Some(e) = error {
        let _ = write!(body, "<p class=\"error\" id=\"users-error\">{}</p>", esc(e));
    }
    if let Some(t) = new_token {
        let _ = write!(
            body,
            "<p class=\"notice\">New API token (shown only now; send it as <code>Authorization: Bearer …</code>):</p><pre id=\"new-token\">{}</pre>",
            esc(t)
        );
    }
    body.push_str("<table id=\"users\"><thead><tr><th>Name</th><th>Role</th><th>Created</th><th>Locked until</th><th>Actions</th></tr></thead><tbody>");
    let now = state.journal.now_ms();
    for u in &users {
        let n = esc(&query_value(&u.name));
        let mut roles = String::new();
        for r in Role::NAMES {
            let sel = if *r == u.role { " selected" } else { "" };
            let _ = write!(roles, "<option{sel}>{r}</option>");
        }
        let locked = u.locked_until > now;
        let _ = write!(
            body,
            "<tr class=\"user\" data-name=\"{name}\"><td>{name}</td><td>{}</td><td>{}</td><td>{}</td><td>\
             <form method=\"post\" action=\"/users/{n}/role\" class=\"inline\">{csrf}<select name=\"role\">{roles}</select><button>Change role</button></form> \
             <form method=\"post\" action=\"/users/{n}/password\" class=\"inline\">{csrf}<input type=\"password\" name=\"password\" placeholder=\"new password\" required autocomplete=\"new-password\" size=\"14\"><input type=\"password\" name=\"confirm\" placeholder=\"again\" required autocomplete=\"new-password\" size=\"10\"><button>Reset password</button></form> \
             {}<form method=\"post\" action=\"/users/{n}/delete\" class=\"inline\" data-confirm=\"Delete this user, their sessions and API tokens?\">{csrf}<button class=\"discard\">Delete</button></form></td></tr>",
            esc(&u.role),
            time(u.created_at, &tz),
            if locked { time(u.locked_until, &tz) } else { String::new() },
            if locked {
                format!("<form method=\"post\" action=\"/users/{n}/unlock\" class=\"inline\">{csrf}<button>Unlock</button></form> ")
            } else {
                String::new()
            },
            name = esc(&u.name),
        );
    }
    let mut roles = String::new();
    for r in Role::NAMES {
        let _ = write!(roles, "<option>{r}</option>");
    }
    let _ = write!(
        body,
        "</tbody></table><h2>Add a user</h2><form method=\"post\" action=\"/users\" class=\"card\">{csrf}\
         <label>User name <input name=\"name\" required></label><label>Role <select name=\"role\">{roles}</select></label>\
         <label>Password <input type=\"password\" name=\"password\" required autocomplete=\"new-password\"></label>\
         <label>Password again <input type=\"password\" name=\"confirm\" required autocomplete=\"new-password\"></label><button>Add user</button></form>",
    );
    body.push_str("<h2>API tokens</h2><table id=\"tokens\"><thead><tr><th>Id</th><th>Label</th><th>Owner</th><th>Role</th><th>Created</th><th>Expires</th><th></th></tr></thead><tbody>");
    for t in &tokens {
        let expired = t.expires_at.is_some_and(|e| e <= now);
        let _ = write!(
            body,
            "<tr class=\"token\"><td>{id}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}{}</td><td><form method=\"post\" action=\"/tokens/{id}/revoke\" class=\"inline\" data-confirm=\"Revoke this token?\">{csrf}<button class=\"discard\">Revoke</button></form></td></tr>",
            esc(&t.label),
            esc(&t.owner),
            esc(&t.role),
            time(t.created_at, &tz),
            t.expires_at.map_or_else(|| "never".to_string(), |e| time(e, &tz)),
            if expired { " (expired)" } else { "" },
            id = t.id,
        );
    }
    let mut token_roles = String::new();
    for r in ["viewer", "operator", "admin"] {
        let _ = write!(token_roles, "<option>{r}</option>");
    }
    let _ = write!(
        body,
        "</tbody></table><form method=\"post\" action=\"/tokens\" class=\"card\">{csrf}\
         <label>Label <input name=\"label\" required placeholder=\"hub\"></label><label>Role <select name=\"role\">{token_roles}</select></label>\
         <label>Expires after (days, empty: never) <input name=\"expires_in_days\" inputmode=\"numeric\" size=\"5\"></label><button>Create token</button></form>",
    );
    html(status, page("Users", Some(caller), &body))
}

pub async fn users(State(state): State<Shared>, Extension(caller): Extension<Caller>) -> Response {
    if let Err(r) = caller.require(Role::Admin) {
        return r;
    }
    users_page(&state, &caller, StatusCode::OK, None).await
}

pub async fn create_user(
    State(state): State<Shared>,
    Extension(caller): Extension<Caller>,
    Form(c): Form<Credentials>,
) -> Response {
    let user = NewUser {
        name: c.name.clone(),
        role: c.role.clone(),
        password: c.password.clone(),
        confirm: Some(c.confirm.clone()),
    };
    let done = control::users::add(&state.ops, &caller.actor(), &user)
        .await
        .map(|_| ());
    match done {
        Err(Refusal::Conflict(_)) => {
            let why = format!("A user named {} exists already.", c.name.trim());
            users_page(&state, &caller, StatusCode::CONFLICT, Some(&why)).await
        }
        done => user_change(&state, &caller, done).await,
    }
}

/// Answers a change to one user like the users page does.
async fn user_change(state: &Shared, caller: &Caller, done: Result<(), Refusal>) -> Response {
    match done {
        Ok(()) => Redirect::to("/users").into_response(),
        Err(Refusal::Invalid { field, message }) => {
            let why = user_sentence(field, &message);
            users_page(state, caller, StatusCode::UNPROCESSABLE_ENTITY, Some(&why)).await
        }
        Err(e @ Refusal::NotFound(_)) => {
            users_page(state, caller, StatusCode::NOT_FOUND, Some(&e.to_string())).await
        }
        Err(e @ Refusal::Conflict(_)) => {
            users_page(state, caller, StatusCode::CONFLICT, Some(&e.to_string())).await
        }
        Err(e) => refused(Some(caller), &e),
    }
}

pub async fn set_user_role(
    State(state): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Form(c): Form<Credentials>,
) -> Response {
    let done = control::users::set_role(&state.ops, &caller.actor(), &name, &c.role).await;
    user_change(&state, &caller, done).await
}

pub async fn reset_password(
    State(state): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Form(c): Form<Credentials>,
) -> Response {
    let done = control::users::set_password(
        &state.ops,
        &caller.actor(),
        &name,
        &c.password,
        Some(&c.confirm),
    )
    .await;
    user_change(&state, &caller, done).await
}

pub async fn unlock_user(
    State(state): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Response {
    let done = control::users::unlock(&state.ops, &caller.actor(), &name).await;
    user_change(&state, &caller, done).await
}

pub async fn delete_user(
    State(state): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Response {
    let done = control::users::remove(&state.ops, &caller.actor(), &name).await;
    user_change(&state, &caller, done).await
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub struct TokenForm {
    pub label: String,
    pub role: String,
    pub expires_in_days: String,
}

pub async fn create_token(
    State(state): State<Shared>,
    Extension(caller): Extension<Caller>,
    Form(f): Form<TokenForm>,
) -> Response {
    if let Err(r) = caller.require(Role::Admin) {
        return r;
    }
    let days = match f.expires_in_days.trim() {
        "" => None,
        d => match d.parse::<u32>() {
            Ok(n) => Some(n),
            Err(_) => {
                let why = format!("Expires after: `{d}` is not a number of days.");
                return users_page(
                    &state,
                    &caller,
                    StatusCode::UNPROCESSABLE_ENTITY,
                    Some(&why),
                )
                .await;
            }
        },
    };
    let request = TokenRequest {
        label: f.label,
        role: Some(f.role),
        expires_in_days: days,
    };
    match control::users::create_token(&state.ops, &caller.actor(), &request).await {
        Ok(t) => users_page_with(&state, &caller, StatusCode::CREATED, None, Some(&t.token)).await,
        Err(e @ Refusal::Invalid { .. }) => {
            users_page(
                &state,
                &caller,
                StatusCode::UNPROCESSABLE_ENTITY,
                Some(&e.to_string()),
            )
            .await
        }
        Err(e) => refused(Some(&caller), &e),
    }
}

pub async fn revoke_token(
    State(state): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<i64>,
) -> Response {
    match control::users::revoke_token(&state.ops, &caller.actor(), id).await {
        Ok(()) => Redirect::to("/users").into_response(),
        Err(Refusal::NotFound(_)) => {
            users_page(
                &state,
                &caller,
                StatusCode::NOT_FOUND,
                Some("There is no such token."),
            )
            .await
        }
        Err(e) => refused(Some(&caller), &e),
    }
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub struct AuditQuery {
    pub before: Option<String>,
}

pub async fn audit(
    State(state): State<Shared>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<AuditQuery>,
) -> Response {
    if let Err(r) = caller.require(Role::Admin) {
        return r;
    }
    let before = match q.before.as_deref().filter(|b| !b.is_empty()) {
        None => None,
        Some(b) => match b.parse::<i64>() {
            Ok(b) => Some(b),
            Err(_) => return bad_request("before: not an audit entry id"),
        },
    };
    let rows = match state.journal.audit_log(before, 100).await {
        Ok(r) => r,
        Err(e) => return journal_error(e),
    };
    let tz = site_tz(&state);
    let mut body = String::from("<table id=\"audit\"><thead><tr><th>Time</th><th>Who</th><th>What</th><th>On</th><th>Detail</th></tr></thead><tbody>");
    for r in &rows {
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            time(r.at, &tz),
            esc(&r.actor),
            esc(&r.action),
            esc(r.target.as_deref().unwrap_or("")),
            esc(r.detail.as_deref().unwrap_or("")),
        );
    }
    body.push_str("</tbody></table>");
    if rows.len() == 100 {
        if let Some(last) = rows.last() {
            let _ = write!(
                body,
                "<p class=\"pager\"><a href=\"/audit?before={}\">Older →</a></p>",
                last.id
            );
        }
    }
    html(StatusCode::OK, page("Audit log", Some(&caller), &body))
}
