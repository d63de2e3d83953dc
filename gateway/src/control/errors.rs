//! Failed deliveries grouped by cause, for the errors page: "hub refuses
//! connections: 8 messages since 10:42", each group retried or discarded in
//! one audited action.
//!
//! A cause is the delivery's last error with what differs between messages
//! of the same fault taken out (numbers other than an HTTP status, quoted
//! values, ids), per destination and per state (dead, or failing and
//! retried by itself). Its first line is said in plain words where the
//! fault is a known kind (refused connection, timeout, name resolution,
//! TLS, HTTP status classes, a message that cannot be mapped); the error as
//! recorded stays beside it for whoever needs the detail. A group's key is
//! derived from those three, so a retry from a page shown a minute ago
//! applies to the deliveries failing that way now.

use super::{Actor, Operations, Refusal, Role};
use crate::endpoints;
use crate::journal::{BulkOutcome, FailedDelivery, Selection, BULK_LIMIT};
use sha2::{Digest, Sha256};

/// One group of failed deliveries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorGroup {
    /// Names the group in a retry or discard.
    pub key: String,
    pub destination: String,
    /// Dead (needs a person), or failing (retried by itself).
    pub dead: bool,
    /// The cause in plain words.
    pub cause: String,
    /// The error as recorded, of the newest delivery of the group.
    pub detail: String,
    pub messages: usize,
    /// Attempts made for the group's deliveries in all.
    pub attempts: u64,
    pub first_at: i64,
    pub last_at: i64,
    pub outbox_ids: Vec<i64>,
}

/// Every group of failed deliveries now, most messages first. Needs viewer.
pub async fn groups(ops: &Operations, actor: &Actor) -> Result<Vec<ErrorGroup>, Refusal> {
    actor.require(Role::Viewer)?;
    let config = ops.config();
    let destinations: Vec<String> = config
        .endpoints
        .iter()
        .filter(|e| endpoints::of(&e.kind).role(&e.kind) == endpoints::Role::Destination)
        .map(|e| e.name.clone())
        .collect();
    let rows = ops
        .journal()
        .failed_deliveries(destinations, BULK_LIMIT)
        .await?;
    Ok(group(rows))
}

/// Groups `rows` by destination, state and cause.
pub fn group(rows: Vec<FailedDelivery>) -> Vec<ErrorGroup> {
    let mut out: Vec<ErrorGroup> = Vec::new();
    for row in rows {
        let shape = shape(&row.error);
        let key = key(&row.destination, row.dead, &shape);
        match out.iter_mut().find(|g| g.key == key) {
            Some(g) => {
                g.messages += 1;
                g.attempts += u64::from(row.attempts);
                g.first_at = g.first_at.min(row.at);
                if row.at >= g.last_at {
                    g.last_at = row.at;
                    g.detail = row.error.clone();
                }
                g.outbox_ids.push(row.outbox_id);
            }
            None => out.push(ErrorGroup {
                key,
                cause: plain(&row.destination, &row.error),
                destination: row.destination,
                dead: row.dead,
                detail: row.error,
                messages: 1,
                attempts: u64::from(row.attempts),
                first_at: row.at,
                last_at: row.at,
                outbox_ids: vec![row.outbox_id],
            }),
        }
    }
    out.sort_by(|a, b| b.messages.cmp(&a.messages).then(a.key.cmp(&b.key)));
    out
}

fn key(destination: &str, dead: bool, shape: &str) -> String {
    let hash = Sha256::digest(format!("{destination}\n{dead}\n{shape}").as_bytes());
    hash[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// The error with what differs between messages of one fault taken out:
/// digit runs (but an HTTP status after `HTTP` or `status`) become `#`,
/// quoted and backquoted values `…`.
pub fn shape(error: &str) -> String {
    let mut out = String::with_capacity(error.len());
    let mut chars = error.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '"' || c == '`' || c == '\'' {
            // A quoted value: its content varies, its place does not.
            let mut closed = false;
            for d in chars.by_ref() {
                if d == c {
                    closed = true;
                    break;
                }
            }
            out.push(c);
            out.push('…');
            if closed {
                out.push(c);
            }
            continue;
        }
        if c.is_ascii_digit() {
            let mut run = String::from(c);
            while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                run.push(*d);
                chars.next();
            }
            let status = run.len() == 3
                && ["HTTP ", "status ", "HTTP/1.1 "]
                    .iter()
                    .any(|p| out.ends_with(p));
            out.push_str(if status { &run } else { "#" });
            continue;
        }
        out.push(c);
    }
    out.chars().take(300).collect()
}

/// The cause in plain words, for the known kinds of fault.
pub fn plain(destination: &str, error: &str) -> String {
    let e = error.to_ascii_lowercase();
    let status = http_status(&e);
    if e.contains("connection refused") {
        format!("{destination} refuses connections (nothing listening there)")
    } else if e.contains("timed out") || e.contains("timeout") || e.contains("did not answer") {
        format!("{destination} did not answer in time")
    } else if e.contains("dns") || e.contains("lookup") || e.contains("name or service not known") {
        format!("{destination}'s address cannot be resolved")
    } else if e.contains("certificate") || e.contains("tls") || e.contains("handshake") {
        format!("the secure connection to {destination} fails (certificate or TLS)")
    } else if let Some(s) = status {
        match s {
            401 | 403 => format!("{destination} refuses the gateway's credentials (HTTP {s})"),
            400..=499 => format!("{destination} rejects the message (HTTP {s})"),
            _ => format!("{destination} fails on its side (HTTP {s})"),
        }
    } else if e.contains("cannot read the message")
        || e.contains("no fhir map")
        || e.contains("holds nothing to map")
        || e.contains("not an order")
    {
        format!("the message cannot be turned into what {destination} takes")
    } else if e.contains("connection reset") || e.contains("broken pipe") || e.contains("closed") {
        format!("{destination} dropped the connection")
    } else {
        let first = error.split([':', '\n']).next().unwrap_or(error).trim();
        let first = if first.is_empty() {
            "no error recorded"
        } else {
            first
        };
        format!("{destination}: {first}")
    }
}

fn http_status(e: &str) -> Option<u16> {
    for p in ["http ", "status "] {
        if let Some(i) = e.find(p) {
            let digits: String = e[i + p.len()..].chars().take(3).collect();
            if let Ok(n) = digits.parse::<u16>() {
                if (400..600).contains(&n) {
                    return Some(n);
                }
            }
        }
    }
    None
}

async fn find_group(ops: &Operations, actor: &Actor, key: &str) -> Result<ErrorGroup, Refusal> {
    groups(ops, actor)
        .await?
        .into_iter()
        .find(|g| g.key == key)
        .ok_or_else(|| Refusal::NotFound("no deliveries fail that way now".into()))
}

/// Retries every delivery of group `key` now. Needs operator; audited as
/// `message.retry` naming the cause.
pub async fn retry_group(
    ops: &Operations,
    actor: &Actor,
    key: &str,
) -> Result<BulkOutcome, Refusal> {
    actor.require(Role::Operator)?;
    let g = find_group(ops, actor, key).await?;
    Ok(ops
        .journal()
        .admin_retry(
            Selection::Deliveries {
                outbox_ids: g.outbox_ids,
                cause: format!("{} ({})", g.cause, g.destination),
            },
            &actor.name,
        )
        .await?)
}

/// Discards every delivery of group `key` for `reason`. Needs operator;
/// audited as `message.discard`.
pub async fn discard_group(
    ops: &Operations,
    actor: &Actor,
    key: &str,
    reason: &str,
) -> Result<usize, Refusal> {
    actor.require(Role::Operator)?;
    let reason = super::messages::check_reason(reason)?;
    let g = find_group(ops, actor, key).await?;
    Ok(ops
        .journal()
        .admin_discard(
            Selection::Deliveries {
                outbox_ids: g.outbox_ids,
                cause: format!("{} ({})", g.cause, g.destination),
            },
            &reason,
            &actor.name,
        )
        .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: i64, dest: &str, dead: bool, error: &str, at: i64) -> FailedDelivery {
        FailedDelivery {
            outbox_id: id,
            message_id: id,
            destination: dest.into(),
            dead,
            attempts: 3,
            error: error.into(),
            at,
        }
    }

    #[test]
    fn errors_differing_only_in_numbers_and_quoted_values_are_one_cause() {
        assert_eq!(
            shape("HTTP 422: entry[3] `Observation/17` code required after 1520 ms"),
            shape("HTTP 422: entry[12] `Observation/9` code required after 31 ms")
        );
        assert_ne!(shape("HTTP 422: invalid"), shape("HTTP 500: invalid"));
        assert_ne!(
            shape("connection refused"),
            shape("connection reset by peer")
        );
    }

    #[test]
    fn groups_are_per_destination_and_state_with_counts_and_the_newest_detail() {
        let groups = group(vec![
            row(
                1,
                "hub",
                false,
                "error sending request: connection refused (os error 111)",
                10,
            ),
            row(
                2,
                "hub",
                false,
                "error sending request: connection refused (os error 111)",
                30,
            ),
            row(
                3,
                "hub",
                true,
                "HTTP 422: Observation.code required at entry[1]",
                20,
            ),
            row(
                4,
                "lis",
                false,
                "error sending request: connection refused (os error 111)",
                5,
            ),
            row(
                5,
                "hub",
                true,
                "HTTP 422: Observation.code required at entry[4]",
                25,
            ),
            row(
                6,
                "hub",
                false,
                "error sending request: connection refused (os error 111)",
                20,
            ),
        ]);
        assert_eq!(groups.len(), 3);
        let g = &groups[0];
        assert_eq!(
            (g.destination.as_str(), g.dead, g.messages),
            ("hub", false, 3)
        );
        assert_eq!(g.cause, "hub refuses connections (nothing listening there)");
        assert_eq!((g.first_at, g.last_at, g.attempts), (10, 30, 9));
        assert_eq!(g.outbox_ids, [1, 2, 6]);
        let dead = groups.iter().find(|g| g.dead).unwrap();
        assert_eq!(dead.messages, 2);
        assert_eq!(dead.cause, "hub rejects the message (HTTP 422)");
        assert!(
            dead.detail.contains("entry[4]"),
            "the newest error: {}",
            dead.detail
        );
        assert!(groups.iter().any(|g| g.destination == "lis"));
    }

    #[test]
    fn known_faults_are_said_in_plain_words() {
        for (error, said) in [
            ("operation timed out", "did not answer in time"),
            ("dns error: failed to lookup address", "cannot be resolved"),
            (
                "invalid peer certificate: UnknownIssuer",
                "certificate or TLS",
            ),
            ("HTTP 401: unauthorized", "credentials (HTTP 401)"),
            ("HTTP 503: busy", "fails on its side (HTTP 503)"),
            ("cannot read the message: no MSH", "cannot be turned into"),
            ("the PACS answered C000", "hub: the PACS answered C000"),
        ] {
            let p = plain("hub", error);
            assert!(p.contains(said), "{error} → {p}");
        }
    }
}
