//! Reading one `[[route]]` and checking the routes against the endpoints:
//! every name a route gives must exist and point the right way.

use super::*;

impl Loader<'_> {
    pub(super) fn route(&mut self, item: &Value<'_>) -> Option<Route> {
        let file: RouteFile = self.de(item, "[[route]]")?;
        let table = item.get_ref().as_table();
        let at = |key: &str| {
            table
                .and_then(|t| t.get(key))
                .map_or(item.span().start, |v| v.span().start)
        };
        let mut patterns = Vec::new();
        for p in &file.message_types {
            match MessageTypePattern::parse(p) {
                Ok(p) => patterns.push(p),
                Err(e) => {
                    self.error_at(at("message_types"), format!("route `{}`: {e}", file.name));
                    return None;
                }
            }
        }
        if patterns.is_empty() {
            patterns.push(MessageTypePattern::any());
        }
        let mut transform = file.transform.unwrap_or_else(|| "none".into());
        if !ecko_fhir::NAMES.contains(&transform.as_str()) {
            self.error_at(
                at("transform"),
                format!(
                    "route `{}`: unknown transform `{transform}`, expected one of {}",
                    file.name,
                    ecko_fhir::NAMES.join(", ")
                ),
            );
            return None;
        }
        match (transform.as_str(), &file.template) {
            ("template", None) => {
                self.error_at(
                    at("transform"),
                    format!(
                        "route `{}`: transform \"template\" needs `template = \"<file>\"`",
                        file.name
                    ),
                );
                return None;
            }
            ("template", Some(path)) => {
                let path = resolve(path);
                if let Err(e) = ecko_fhir::template::check_file(&path) {
                    self.error_at(at("template"), format!("route `{}`: {e}", file.name));
                    return None;
                }
                transform = format!("{}{}", ecko_fhir::template::PREFIX, path.display());
            }
            (_, Some(_)) => {
                self.error_at(
                    at("template"),
                    format!(
                        "route `{}`: `template` is only read with transform = \"template\"",
                        file.name
                    ),
                );
                return None;
            }
            (_, None) => {}
        }
        Some(Route {
            name: file.name,
            from: file.from,
            message_types: patterns,
            transform,
            to: file.to,
            application_ack: file.application_ack,
            line: self.line_of(item.span().start),
            from_at: at("from"),
            to_at: at("to"),
            application_ack_at: at("application_ack"),
        })
    }

    pub(super) fn check_routes(
        &mut self,
        routes: &[Route],
        names_at: &[usize],
        endpoints: &[Endpoint],
        broken: &[String],
    ) {
        let mut names = HashMap::new();
        for (r, &at) in routes.iter().zip(names_at) {
            if let Some(first) = names.insert(r.name.as_str(), r.line) {
                self.error_at(
                    at,
                    format!(
                        "duplicate route name `{}` (first defined on line {first})",
                        r.name
                    ),
                );
            }
            if r.from.is_empty() || r.to.is_empty() {
                self.error_at(
                    r.from_at,
                    format!(
                        "route `{}` needs at least one `from` and one `to` endpoint",
                        r.name
                    ),
                );
            }
            for from in r.from.iter().filter(|n| !broken.contains(n)) {
                match endpoints.iter().find(|e| &e.name == from) {
                    None => self.error_at(
                        r.from_at,
                        format!("route `{}`: `from` names unknown endpoint `{from}`", r.name),
                    ),
                    Some(e) if !e.direction.receives() => self.error_at(
                        r.from_at,
                        format!(
                            "route `{}`: endpoint `{from}` is {} and cannot be a route's source",
                            r.name, e.direction
                        ),
                    ),
                    Some(_) => {}
                }
            }
            if let Some(reply) = &r.application_ack {
                self.check_application_ack(r, reply, endpoints, broken);
            }
            for to in r.to.iter().filter(|n| !broken.contains(n)) {
                match endpoints.iter().find(|e| &e.name == to) {
                    None => self.error_at(
                        r.to_at,
                        format!("route `{}`: `to` names unknown endpoint `{to}`", r.name),
                    ),
                    Some(e) if !e.direction.sends() => self.error_at(
                        r.to_at,
                        format!(
                            "route `{}`: endpoint `{to}` is {} and cannot be a route's destination",
                            r.name, e.direction
                        ),
                    ),
                    // Files and documents are no transaction: a FHIR
                    // destination would refuse every message.
                    Some(e)
                        if matches!(e.kind, EndpointKind::Fhir(_))
                            && NOT_FOR_FHIR.contains(&r.transform.as_str()) =>
                    {
                        self.error_at(
                            r.to_at,
                            format!(
                                "route `{}`: transform `{}` makes no FHIR transaction, so the fhir endpoint `{to}` cannot take it (route it to a file, sftp or rest endpoint)",
                                r.name, r.transform
                            ),
                        )
                    }
                    Some(_) => {}
                }
            }
        }
    }
}

/// The transforms whose output a `fhir` destination cannot send.
const NOT_FOR_FHIR: &[&str] = &[
    ecko_fhir::charges::CSV,
    ecko_fhir::charges::JSON,
    ecko_fhir::abdm::NAME,
];

impl Loader<'_> {
    /// A DICOM SCP's `worklist` names a `worklist` endpoint.
    pub(super) fn check_worklists(
        &mut self,
        endpoints: &[Endpoint],
        names_at: &[usize],
        broken: &[String],
    ) {
        for (e, &at) in endpoints.iter().zip(names_at) {
            let EndpointKind::Dicom(d) = &e.kind else {
                continue;
            };
            let Some(w) = d.worklist.as_deref() else {
                continue;
            };
            if broken.iter().any(|b| b == w) {
                continue;
            }
            match endpoints.iter().find(|x| x.name == w) {
                None => self.error_at(
                    at,
                    format!("endpoint `{}`: `worklist` names unknown endpoint `{w}`", e.name),
                ),
                Some(x) if !matches!(x.kind, EndpointKind::Worklist(_)) => self.error_at(
                    at,
                    format!(
                        "endpoint `{}`: `worklist` must name a `worklist` endpoint; `{w}` is a `{}` endpoint",
                        e.name,
                        x.kind.type_name()
                    ),
                ),
                Some(_) => {}
            }
        }
    }
}

impl Loader<'_> {
    /// A route's `application_ack` names an enabled-or-not MLLP sender, and
    /// the route has one destination whose outcome the acknowledgement
    /// reports.
    fn check_application_ack(
        &mut self,
        r: &Route,
        reply: &str,
        endpoints: &[Endpoint],
        broken: &[String],
    ) {
        let at = r.application_ack_at;
        if r.to.len() != 1 {
            self.error_at(
                at,
                format!(
                    "route `{}`: `application_ack` reports one destination's outcome; the route has {} in `to`",
                    r.name,
                    r.to.len()
                ),
            );
        }
        if broken.iter().any(|b| b == reply) {
            return;
        }
        match endpoints.iter().find(|e| e.name == reply) {
            None => self.error_at(
                at,
                format!(
                    "route `{}`: `application_ack` names unknown endpoint `{reply}`",
                    r.name
                ),
            ),
            Some(e) if !matches!(&e.kind, EndpointKind::Mllp(m) if m.connect.is_some()) => self
                .error_at(
                    at,
                    format!(
                        "route `{}`: `application_ack` must name an MLLP sender (an mllp endpoint with `connect`); `{reply}` is not one",
                        r.name
                    ),
                ),
            Some(_) => {}
        }
    }
}
