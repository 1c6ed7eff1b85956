//! Alert delivery: each alert is posted as JSON to the configured webhook, with a
//! Slack-compatible `text` (so a Slack or Mattermost incoming webhook shows it as
//! is) and the whole alert under `alert` for other receivers, or (`webhook_format
//! = "ocsf"`) as one OCSF Detection Finding for a SIEM's HTTP collector. Failed deliveries
//! are retried with backoff, then given up; every outcome is counted and logged
//! (the alert itself is kept in the store either way).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Uri, header};
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject as _;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use watchtower_model::Alert;

use crate::metrics::Metrics;

/// What the webhook's body is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WebhookFormat {
    /// Slack-compatible `text`, `username`, and the alert under `alert`.
    #[default]
    Slack,
    /// The alert as one OCSF Detection Finding (class 2004).
    Ocsf,
}

/// The JSON body sent for an alert in `format`.
#[must_use]
pub fn body(alert: &Alert, format: WebhookFormat) -> serde_json::Value {
    match format {
        WebhookFormat::Slack => payload(alert),
        WebhookFormat::Ocsf => watchtower_ocsf::alert(alert),
    }
}

/// The Slack-compatible JSON body sent for an alert.
#[must_use]
pub fn payload(alert: &Alert) -> serde_json::Value {
    let icon = if alert.severity == "critical" {
        ":rotating_light:"
    } else {
        ":warning:"
    };
    // Slack reads `<...>` as links and mentions (`<!channel>`): a user name or
    // an address in a summary is text, so its control characters are escaped.
    let text = format!(
        "[{}] {} on {}: {}",
        alert.severity, alert.rule, alert.host_id, alert.summary
    );
    serde_json::json!({
        "text": format!("{icon} {}", slack_escape(&text)),
        "username": "watchtower",
        "alert": alert,
    })
}

/// Text as Slack's `text` field must carry it: `&`, `<` and `>` escaped.
#[must_use]
pub fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A webhook URL as it may be logged: scheme, host and port only (a Slack
/// webhook's path is its secret).
#[must_use]
pub fn shown(uri: &Uri) -> String {
    format!(
        "{}://{}/…",
        uri.scheme_str().unwrap_or("?"),
        uri.authority().map_or("?", http::uri::Authority::as_str)
    )
}

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("bad webhook URL {0:?}: {1}")]
    Url(String, String),
    #[error("cannot connect to {0}: {1}")]
    Connect(String, std::io::Error),
    #[error("TLS with {0}: {1}")]
    Tls(String, std::io::Error),
    #[error("HTTP: {0}")]
    Http(#[from] hyper::Error),
    #[error("the receiver answered {0}")]
    Status(http::StatusCode),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

pub struct Webhook {
    uri: Uri,
    /// The URL as logged (see [`shown`]).
    url: String,
    tls: Option<tokio_rustls::TlsConnector>,
    timeout: Duration,
    format: WebhookFormat,
}

impl Webhook {
    /// An https webhook trusts the system's CA bundle.
    pub fn new(url: &str, timeout: Duration) -> Result<Webhook, WebhookError> {
        let uri: Uri = url.parse().map_err(|e: http::uri::InvalidUri| {
            WebhookError::Url("(not shown: it does not parse)".into(), e.to_string())
        })?;
        let bad = |why: &str| WebhookError::Url(shown(&uri), why.to_owned());
        if uri.host().is_none() {
            return Err(bad("no host"));
        }
        let tls = match uri.scheme_str() {
            Some("http") => None,
            Some("https") => {
                let mut roots = rustls::RootCertStore::empty();
                let bundle = "/etc/ssl/certs/ca-certificates.crt";
                let certs = rustls_pki_types::CertificateDer::pem_file_iter(bundle)
                    .map_err(|e| bad(&format!("cannot read {bundle}: {e}")))?;
                for cert in certs.flatten() {
                    let _ = roots.add(cert);
                }
                let config = rustls::ClientConfig::builder()
                    .with_root_certificates(roots)
                    .with_no_client_auth();
                Some(tokio_rustls::TlsConnector::from(Arc::new(config)))
            }
            _ => return Err(bad("only http:// and https:// are supported")),
        };
        Ok(Webhook {
            url: shown(&uri),
            uri,
            tls,
            timeout,
            format: WebhookFormat::default(),
        })
    }

    /// The same webhook sending bodies in `format`.
    #[must_use]
    pub fn with_format(mut self, format: WebhookFormat) -> Webhook {
        self.format = format;
        self
    }

    /// The URL as it may be logged.
    #[must_use]
    pub fn shown(&self) -> &str {
        &self.url
    }

    /// POST one alert; Ok when the receiver answered 2xx.
    pub async fn send(&self, alert: &Alert) -> Result<(), WebhookError> {
        let body = serde_json::to_vec(&body(alert, self.format)).expect("an alert serializes");
        match tokio::time::timeout(self.timeout, self.post(body)).await {
            Ok(result) => result,
            Err(_) => Err(WebhookError::Timeout(self.timeout)),
        }
    }

    async fn post(&self, body: Vec<u8>) -> Result<(), WebhookError> {
        let host = self.uri.host().expect("checked at new").trim_matches(['[', ']']);
        let port = self
            .uri
            .port_u16()
            .unwrap_or(if self.tls.is_some() { 443 } else { 80 });
        let tcp = tokio::net::TcpStream::connect((host, port))
            .await
            .map_err(|e| WebhookError::Connect(format!("{host}:{port}"), e))?;
        match &self.tls {
            None => self.exchange(tcp, body).await,
            Some(connector) => {
                let name = rustls_pki_types::ServerName::try_from(host.to_owned())
                    .map_err(|e| WebhookError::Url(self.url.clone(), e.to_string()))?;
                let stream = connector
                    .connect(name, tcp)
                    .await
                    .map_err(|e| WebhookError::Tls(host.to_owned(), e))?;
                self.exchange(stream, body).await
            }
        }
    }

    async fn exchange<S>(&self, stream: S, body: Vec<u8>) -> Result<(), WebhookError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        let driver = tokio::spawn(connection);
        let path = self.uri.path_and_query().map_or("/", |p| p.as_str());
        let authority = self.uri.authority().map_or("", |a| a.as_str());
        let request = Request::post(path)
            .header(header::HOST, authority)
            .header(header::CONTENT_TYPE, "application/json")
            .header(
                header::USER_AGENT,
                format!("watchtower-server/{}", watchtower_proto::VERSION),
            )
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| WebhookError::Url(self.url.clone(), e.to_string()))?;
        let response = sender.send_request(request).await?;
        driver.abort();
        if response.status().is_success() {
            Ok(())
        } else {
            Err(WebhookError::Status(response.status()))
        }
    }
}

/// Deliver queued alerts until the queue closes: up to `attempts` tries each,
/// backing off 1 s, 2 s, 4 s ... (at most 30 s) between them.
pub fn spawn(
    webhook: Webhook,
    mut queue: mpsc::Receiver<Alert>,
    attempts: u32,
    metrics: Arc<Metrics>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(alert) = queue.recv().await {
            let mut backoff = Duration::from_secs(1);
            for attempt in 1..=attempts {
                match webhook.send(&alert).await {
                    Ok(()) => {
                        metrics.webhook("delivered");
                        tracing::info!(id = alert.id, rule = %alert.rule, url = %webhook.url, "alert delivered to the webhook");
                        break;
                    }
                    Err(e) if attempt < attempts => {
                        metrics.webhook("retried");
                        tracing::warn!(id = alert.id, attempt, error = %e, "alert webhook failed; retrying in {backoff:?}");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(30));
                    }
                    Err(e) => {
                        metrics.webhook("failed");
                        tracing::error!(id = alert.id, attempts, error = %e, "alert webhook gave up (the alert is kept in the store)");
                    }
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_payload_is_slack_compatible_and_carries_the_alert() {
        let alert = Alert {
            id: 3,
            rule: "failed_logins".into(),
            severity: "warning".into(),
            host_id: "web-1".into(),
            summary: "5 failed logins from 10.0.0.9".into(),
            count: 5,
            ..Alert::default()
        };
        let body = payload(&alert);
        assert_eq!(
            body["text"],
            ":warning: [warning] failed_logins on web-1: 5 failed logins from 10.0.0.9"
        );
        assert_eq!(body["alert"]["count"], 5);
        assert_eq!(body["alert"]["rule"], "failed_logins");
        assert_eq!(super::body(&alert, WebhookFormat::Slack), body);
        // For a SIEM: one OCSF Detection Finding.
        let finding = super::body(&alert, WebhookFormat::Ocsf);
        assert_eq!(finding["class_uid"], 2004);
        assert_eq!(finding["finding_info"]["uid"], "alert/3");
        assert_eq!(finding["finding_info"]["desc"], "5 failed logins from 10.0.0.9");
        assert_eq!(finding["count"], 5);
        let config: crate::config::ServerConfig =
            toml::from_str("[alerts]\nwebhook_format = \"ocsf\"").unwrap();
        assert_eq!(config.alerts.webhook_format, WebhookFormat::Ocsf);
    }

    #[test]
    fn bad_urls_are_refused_clearly() {
        let error = Webhook::new("ftp://x/y", Duration::from_secs(1))
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("only http:// and https://"), "{error}");
        assert!(Webhook::new("http://127.0.0.1:9/hook", Duration::from_secs(1)).is_ok());
    }

    #[test]
    fn the_secret_path_is_never_shown_and_slack_markup_in_a_summary_is_text() {
        let hook = Webhook::new(
            "https://hooks.slack.com/services/T000/B000/SECRET",
            Duration::from_secs(1),
        )
        .unwrap();
        assert_eq!(hook.shown(), "https://hooks.slack.com/…");
        let error = Webhook::new("gopher://h/services/SECRET", Duration::from_secs(1))
            .err()
            .unwrap()
            .to_string();
        assert!(!error.contains("SECRET"), "{error}");
        let alert = Alert {
            rule: "root_login".into(),
            severity: "critical".into(),
            host_id: "web-1".into(),
            summary: "<!channel> & <https://evil.example|click> logged in".into(),
            ..Alert::default()
        };
        assert_eq!(
            payload(&alert)["text"],
            ":rotating_light: [critical] root_login on web-1: &lt;!channel&gt; &amp; \
             &lt;https://evil.example|click&gt; logged in"
        );
    }
}
