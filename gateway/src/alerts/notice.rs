//! What one notice says, in the shape each channel sends.

use super::state::Step;
use serde::Serialize;

/// One alert firing, repeated or recovered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Notice {
    /// Unique per notice: a receiver deduplicates redelivered ones by it.
    pub id: String,
    pub rule: String,
    /// The rule's `when`.
    pub alert: &'static str,
    pub subject: Option<String>,
    /// `fired`, `repeated` or `recovered`.
    pub state: &'static str,
    /// Unix ms of this notice.
    pub at: i64,
    /// Unix ms since when the condition held.
    pub since: Option<i64>,
    pub summary: String,
    /// The site and device of `[hub]`, so one inbox can serve many boxes.
    pub site: String,
    pub device: String,
}

impl Notice {
    pub fn new(step: Step, rule: &str, alert: &'static str, subject: Option<String>) -> Self {
        Notice {
            id: uuid::Uuid::new_v4().to_string(),
            rule: rule.to_string(),
            alert,
            subject,
            state: step.as_str(),
            at: 0,
            since: None,
            summary: String::new(),
            site: String::new(),
            device: String::new(),
        }
    }

    /// `lis-down` or `lis-down: lis-out`, as the audit log's target.
    pub fn target(&self) -> String {
        match &self.subject {
            Some(s) => format!("{}: {s}", self.rule),
            None => self.rule.clone(),
        }
    }

    pub fn recovered(&self) -> bool {
        self.state == Step::Recovered.as_str()
    }

    /// The e-mail subject line.
    pub fn title(&self) -> String {
        let what = match self.state {
            "recovered" => "RECOVERED",
            "repeated" => "STILL FIRING",
            _ => "FIRING",
        };
        format!(
            "[Ecko {}/{}] {what}: {}",
            self.site,
            self.device,
            self.target()
        )
    }

    /// The e-mail body.
    pub fn text(&self) -> String {
        let time = |ms: i64| {
            jiff::Timestamp::from_millisecond(ms)
                .map(|t| t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string())
                .unwrap_or_else(|_| ms.to_string())
        };
        let mut out = format!(
            "{}\n\nalert: {} ({})\nstate: {}\nat: {}\n",
            self.summary,
            self.rule,
            self.alert,
            self.state,
            time(self.at)
        );
        if let Some(s) = &self.subject {
            out.push_str(&format!("subject: {s}\n"));
        }
        if let Some(since) = self.since {
            out.push_str(&format!("since: {}\n", time(since)));
        }
        out.push_str(&format!(
            "gateway: {} / {}\nid: {}\n",
            self.site, self.device, self.id
        ));
        out
    }
}
