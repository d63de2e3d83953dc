//! The connection check's request: the server's CapabilityStatement, asked
//! with the endpoint's own client and authentication.

use super::{error_chain, FhirSink};

/// How much of the answer is kept.
const KEEP: usize = 64 * 1024;

impl FhirSink {
    /// `GET [base]/metadata`: the HTTP status and (the start of) the body.
    pub async fn metadata(&self) -> Result<(u16, String), String> {
        let header = self
            .auth
            .header(&self.http)
            .await
            .map_err(|e| format!("authentication: {e}"))?;
        let mut request = self
            .http
            .get(format!("{}/metadata", self.url))
            .header("Accept", "application/fhir+json");
        if let Some((name, value)) = &header {
            request = request.header(name.as_str(), value.as_str());
        }
        let response = request.send().await.map_err(|e| error_chain(&e))?;
        let status = response.status().as_u16();
        let mut body = response.text().await.map_err(|e| error_chain(&e))?;
        if body.len() > KEEP {
            let mut cut = KEEP;
            while !body.is_char_boundary(cut) {
                cut -= 1;
            }
            body.truncate(cut);
        }
        Ok((status, body))
    }
}
