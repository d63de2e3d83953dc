//! Settings of the `dicom` endpoint type: a store SCP (`listen`) that takes
//! objects from modalities, or a store SCU (`connect`) that forwards them
//! to a PACS.

use super::model::{listener_problems, ListenerLimits};
use super::units::{Size, Span};
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DicomConfig {
    /// `host:port` the SCP listens on.
    pub listen: Option<String>,
    /// `host:port` of the PACS an SCU forwards to.
    pub connect: Option<String>,
    /// Our AE title: the called title an SCP answers to, the calling title
    /// an SCU presents.
    #[serde(default = "default_ae_title")]
    pub ae_title: String,
    /// SCU: the PACS's AE title.
    #[serde(default = "default_peer_ae_title")]
    pub peer_ae_title: String,
    /// SCP: accept whatever AE title the modality calls (many are set up
    /// with the PACS's title).
    #[serde(default)]
    pub accept_any_called_ae: bool,
    /// SCP: calling AE titles accepted; empty: any.
    #[serde(default)]
    pub allowed_calling_ae: Vec<String>,
    /// SCP: storage SOP classes accepted beyond the built-in list.
    #[serde(default)]
    pub extra_sop_classes: Vec<String>,
    /// SCP: sender addresses or networks served; empty: every address.
    #[serde(default)]
    pub allow: Vec<String>,
    /// SCP: associations served at once (in all, and per address).
    #[serde(default = "default_max_associations")]
    pub max_associations: usize,
    #[serde(default = "default_per_address")]
    pub max_associations_per_address: usize,
    /// The largest PDU we receive (what the memory of one association is
    /// bounded by, about twice this).
    #[serde(default = "default_max_pdu")]
    pub max_pdu: Size,
    /// ARTIM: the association request must arrive within this after the
    /// connection opens, and a release must be answered within it.
    #[serde(default = "default_association_timeout")]
    pub association_timeout: Span,
    /// A PDU that has started must be complete within this; an SCU waits
    /// this long for each response.
    #[serde(default = "default_dimse_timeout")]
    pub dimse_timeout: Span,
    /// SCP: an association on which nothing completes for this long is
    /// aborted.
    #[serde(default = "default_idle")]
    pub idle_timeout: Span,
    /// SCP: bytes per second a sender must keep up while it sends; 0: none.
    #[serde(default = "default_min_rate")]
    pub min_data_rate: u64,
    #[serde(default = "default_rate_window")]
    pub rate_window: Span,
    /// SCP: the largest object taken; larger ones are answered A700.
    #[serde(default = "default_max_object")]
    pub max_object_size: Size,
    /// SCP: where objects are stored; default `dicom/<endpoint>` beside the
    /// journal.
    pub store: Option<PathBuf>,
    /// SCU: how long to connect.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: Span,
    /// SCP: the `worklist` endpoint Modality Worklist C-FIND is answered
    /// from; none: C-FIND is not served.
    pub worklist: Option<String>,
    /// SCP: the most matches one C-FIND returns (a universal query on a
    /// busy worklist stops there).
    #[serde(default = "default_max_worklist_matches")]
    pub max_worklist_matches: usize,
    /// SCP: once a study has received no object for this long, an
    /// ImagingStudy of everything stored of it is journalled (message type
    /// `ImagingStudy`) for routes to the FHIR upstream; again with
    /// everything when more objects arrive later. Absent or 0: off.
    pub study_idle: Option<Span>,
    /// SCP: the FHIR reference of the Endpoint the announced studies can be
    /// fetched from (e.g. `Endpoint/pacs-wado`, the DICOMweb base they are
    /// forwarded to), put into each ImagingStudy's `endpoint`.
    pub study_endpoint: Option<String>,
    /// SCP: also accept Modality Performed Procedure Step (N-CREATE,
    /// N-SET), each journalled as a message of type `MPPS`.
    #[serde(default)]
    pub mpps: bool,
}

fn default_ae_title() -> String {
    "ECKO".into()
}
fn default_peer_ae_title() -> String {
    "ANY-SCP".into()
}
fn default_max_associations() -> usize {
    16
}
fn default_per_address() -> usize {
    8
}
fn default_max_pdu() -> Size {
    Size(64 * 1024)
}
fn default_association_timeout() -> Span {
    Span(Duration::from_secs(30))
}
fn default_dimse_timeout() -> Span {
    Span(Duration::from_secs(60))
}
fn default_idle() -> Span {
    Span(Duration::from_secs(300))
}
fn default_min_rate() -> u64 {
    1024
}
fn default_rate_window() -> Span {
    Span(Duration::from_secs(30))
}
fn default_max_object() -> Size {
    Size(4 << 30)
}
fn default_connect_timeout() -> Span {
    Span(Duration::from_secs(10))
}
fn default_max_worklist_matches() -> usize {
    500
}

/// PS3.8 9.3.2: 1024 bytes is the smallest maximum a node may announce; the
/// upper bound keeps one association's buffers small on a 512 MB board.
const MIN_PDU: u64 = 4096;
const MAX_PDU: u64 = 4 << 20;

/// `Endpoint/<id>` (an id is 1 to 64 of `A-Za-z0-9-.`), optionally after
/// an `http(s)://` base.
fn study_endpoint_ok(r: &str) -> bool {
    let local = match r.split_once("://") {
        Some((scheme, rest)) if scheme == "http" || scheme == "https" => {
            rest.rsplit_once("/Endpoint/").map(|(_, id)| id)
        }
        Some(_) => None,
        None => r.strip_prefix("Endpoint/"),
    };
    local.is_some_and(|id| {
        (1..=64).contains(&id.len())
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    })
}

/// AE titles are 1 to 16 characters of the default repertoire, no
/// backslash, not only spaces (PS3.5 6.2).
fn ae_title_problem(key: &'static str, t: &str) -> Option<(&'static str, String)> {
    let ok = !t.trim().is_empty()
        && t.len() <= 16
        && t.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b'\\');
    (!ok).then(|| {
        (
            key,
            format!("`{t}` is not an AE title (1 to 16 printable ASCII characters, no backslash)"),
        )
    })
}

impl DicomConfig {
    pub fn is_listener(&self) -> bool {
        self.listen.is_some()
    }

    /// How long a study must be idle before it is announced; `None`: never.
    pub fn study_idle(&self) -> Option<Duration> {
        self.study_idle.map(|s| s.0).filter(|d| !d.is_zero())
    }

    pub(crate) fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        match (&self.listen, &self.connect) {
            (None, None) => out.push((
                "listen",
                "a dicom endpoint needs `listen` (store SCP) or `connect` (forward to a PACS)"
                    .into(),
            )),
            (Some(_), Some(_)) => {
                out.push(("connect", "give `listen` or `connect`, not both".into()))
            }
            _ => {}
        }
        out.extend(ae_title_problem("ae_title", &self.ae_title));
        out.extend(ae_title_problem("peer_ae_title", &self.peer_ae_title));
        for t in &self.allowed_calling_ae {
            out.extend(ae_title_problem("allowed_calling_ae", t));
        }
        for c in &self.extra_sop_classes {
            if !ecko_protocol::dicom::uids::is_valid_uid(c) {
                out.push(("extra_sop_classes", format!("`{c}` is not a UID")));
            }
        }
        if let Some(e) = &self.study_endpoint {
            if !study_endpoint_ok(e) {
                out.push((
                    "study_endpoint",
                    format!("`{e}` is not a reference to an Endpoint (`Endpoint/<id>` or an absolute URL ending so)"),
                ));
            }
        }
        if !self.is_listener() {
            for (key, set) in [
                ("study_idle", self.study_idle.is_some()),
                ("study_endpoint", self.study_endpoint.is_some()),
                ("mpps", self.mpps),
            ] {
                if set {
                    out.push((
                        key,
                        format!("`{key}` is a setting of a store SCP (`listen`)"),
                    ));
                }
            }
        }
        if !(MIN_PDU..=MAX_PDU).contains(&self.max_pdu.0) {
            out.push((
                "max_pdu",
                format!("`max_pdu` must be between {MIN_PDU} bytes and 4 MiB"),
            ));
        }
        for (key, span) in [
            ("association_timeout", self.association_timeout),
            ("dimse_timeout", self.dimse_timeout),
            ("connect_timeout", self.connect_timeout),
        ] {
            if span.0.is_zero() {
                out.push((key, format!("`{key}` must be above zero")));
            }
        }
        if self.worklist.is_some() && !self.is_listener() {
            out.push((
                "worklist",
                "`worklist` is served by a store SCP (`listen`), not by a forward".into(),
            ));
        }
        if self.max_worklist_matches == 0 {
            out.push((
                "max_worklist_matches",
                "`max_worklist_matches` must be at least 1".into(),
            ));
        }
        if self.is_listener() {
            out.extend(
                listener_problems(&ListenerLimits {
                    max_connections: self.max_associations,
                    max_connections_per_address: self.max_associations_per_address,
                    allow: &self.allow,
                    min_data_rate: self.min_data_rate,
                    rate_window: self.rate_window,
                    frame_timeout: ("dimse_timeout", self.dimse_timeout),
                    idle_timeout: self.idle_timeout,
                })
                .into_iter()
                .map(|(k, m)| match k {
                    "max_connections" => (
                        "max_associations",
                        m.replace("max_connections", "max_associations"),
                    ),
                    "max_connections_per_address" => (
                        "max_associations_per_address",
                        m.replace(
                            "max_connections_per_address",
                            "max_associations_per_address",
                        ),
                    ),
                    _ => (k, m),
                }),
            );
        }
        out
    }

    /// How the SCP admits associations.
    pub fn admission(&self) -> crate::net::AdmissionRules {
        crate::net::AdmissionRules {
            allow: crate::net::Allowlist::parse(&self.allow).unwrap_or_default(),
            max_connections: self.max_associations,
            max_per_address: self.max_associations_per_address,
        }
    }

    /// How fast a sender must send: a unit is one PDU.
    pub fn pace(&self) -> crate::net::PaceLimits {
        crate::net::PaceLimits {
            idle: self.idle_timeout.0,
            frame_deadline: self.dimse_timeout.0,
            min_rate: self.min_data_rate,
            rate_window: self.rate_window.0,
        }
    }

    pub fn max_pdu_bytes(&self) -> u32 {
        u32::try_from(self.max_pdu.0.clamp(MIN_PDU, MAX_PDU)).unwrap_or(64 * 1024)
    }

    /// Where the SCP of `endpoint` stores objects, for a journal at
    /// `journal`.
    pub fn store_dir(&self, endpoint: &str, journal: &std::path::Path) -> PathBuf {
        match &self.store {
            Some(p) => super::resolve(p),
            None => journal
                .parent()
                .unwrap_or_else(|| std::path::Path::new("."))
                .join("dicom")
                .join(endpoint),
        }
    }
}

/// Settings of the `worklist` endpoint type: a destination whose delivery
/// keeps the orders routed to it as scheduled procedure steps, answered to
/// modalities by the DICOM SCPs that name it in their `worklist`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorklistConfig {
    /// The modality of a step whose order names none (`CT`, `MR`, ...).
    #[serde(default)]
    pub modality: String,
    /// The scheduled station AE title of a step whose order names none;
    /// empty: offered to every station.
    #[serde(default)]
    pub station_ae: String,
    /// How long after its scheduled start a step stays on the worklist.
    #[serde(default = "default_keep_for")]
    pub keep_for: Span,
}

fn default_keep_for() -> Span {
    Span(Duration::from_secs(7 * 24 * 3600))
}

impl WorklistConfig {
    /// What the worklist named `name` fills in where an order is silent.
    pub fn defaults(&self, name: &str) -> ecko_fhir::worklist::WorklistDefaults {
        ecko_fhir::worklist::WorklistDefaults {
            worklist: name.to_string(),
            modality: self.modality.clone(),
            station_ae: self.station_ae.clone(),
        }
    }

    pub(crate) fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        let m = &self.modality;
        if m.len() > 16
            || !m
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        {
            out.push((
                "modality",
                format!("`{m}` is not a modality code (capitals and digits, e.g. \"CT\")"),
            ));
        }
        if !self.station_ae.is_empty() {
            out.extend(ae_title_problem("station_ae", &self.station_ae));
        }
        if self.keep_for.0.is_zero() {
            out.push(("keep_for", "`keep_for` must be above zero".into()));
        }
        out
    }
}

/// Settings of the `dicomweb` endpoint type: stored objects sent to a
/// DICOMweb server by STOW-RS.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DicomWebConfig {
    /// The STOW-RS URL: the server's `…/studies` resource.
    pub url: String,
    /// How the gateway proves who it is: as for `fhir` (none, API key
    /// header, OAuth 2.0 client credentials, client certificate).
    #[serde(default)]
    pub auth: super::FhirAuth,
    /// PEM CAs trusted for the server, instead of the system's store.
    pub ca_file: Option<PathBuf>,
    /// PEM of the server's own certificate: only that one is accepted.
    pub pinned_cert: Option<PathBuf>,
    /// Objects of one lane sent in one request.
    #[serde(default = "default_stow_batch")]
    pub max_batch: usize,
    /// A request stops taking objects once it holds this many bytes (one
    /// object is always sent, however large: it is streamed from its file).
    #[serde(default = "default_stow_request")]
    pub max_request_size: Size,
}

fn default_stow_batch() -> usize {
    16
}
fn default_stow_request() -> Size {
    Size(64 << 20)
}

impl DicomWebConfig {
    pub(crate) fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        let url = self.url.trim();
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            out.push(("url", format!("`{url}` is not an http(s) URL")));
        }
        if self.max_batch == 0 {
            out.push(("max_batch", "`max_batch` must be at least 1".into()));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn errors(keys: &str) -> String {
        let text = format!(
            "[journal]\npath = \"j.db\"\n[[endpoint]]\nname = \"d\"\ntype = \"dicom\"\n{keys}\n"
        );
        match Config::parse(&text, "t.toml", |_| None) {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_dicomweb_endpoint_needs_an_http_url() {
        let text = "[journal]\npath = \"j.db\"\n[[endpoint]]\nname = \"w\"\ntype = \"dicomweb\"\nurl = \"pacs:8042\"\n";
        let e = Config::parse(text, "t.toml", |_| None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not an http(s) URL"), "{e}");
        let ok = text.replace("pacs:8042", "https://pacs.example/dicom-web/studies");
        assert!(Config::parse(&ok, "t.toml", |_| None).is_ok());
    }

    #[test]
    fn a_dicom_endpoint_needs_exactly_one_of_listen_and_connect() {
        assert!(errors("ae_title = \"X\"").contains("needs `listen`"));
        assert!(errors("listen = \"127.0.0.1:0\"\nconnect = \"p:1\"").contains("not both"));
        assert_eq!(errors("listen = \"127.0.0.1:0\""), "");
        assert_eq!(errors("connect = \"pacs:104\""), "");
    }

    #[test]
    fn ae_titles_pdu_sizes_and_sop_class_uids_are_checked_at_their_keys() {
        let e = errors("listen = \"127.0.0.1:0\"\nae_title = \"MUCH-TOO-LONG-A-TITLE\"");
        assert!(
            e.contains("t.toml:7") && e.contains("not an AE title"),
            "{e}"
        );
        let e = errors("listen = \"127.0.0.1:0\"\nallowed_calling_ae = [\"CT\\\\1\"]");
        assert!(e.contains("not an AE title"), "{e}");
        let e = errors("listen = \"127.0.0.1:0\"\nmax_pdu = \"100 MiB\"");
        assert!(e.contains("`max_pdu` must be between"), "{e}");
        let e = errors("listen = \"127.0.0.1:0\"\nextra_sop_classes = [\"1.2.x\"]");
        assert!(e.contains("not a UID"), "{e}");
        let e = errors("listen = \"127.0.0.1:0\"\nstudy_endpoint = \"pacs\"");
        assert!(
            e.contains("`study_endpoint`") || e.contains("not a reference to an Endpoint"),
            "{e}"
        );
        assert_eq!(
            errors("listen = \"127.0.0.1:0\"\nstudy_idle = \"5m\"\nstudy_endpoint = \"Endpoint/pacs-wado\""),
            ""
        );
        let e = errors("connect = \"pacs:104\"\nstudy_idle = \"5m\"");
        assert!(e.contains("setting of a store SCP"), "{e}");
        let e = errors("listen = \"127.0.0.1:0\"\nmax_associations = 0");
        assert!(e.contains("`max_associations` must be at least 1"), "{e}");
    }
}
