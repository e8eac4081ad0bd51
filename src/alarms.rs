//! The alarm work every instance runs beside the web server:
//!
//! - **evaluation**: every [`AlarmConfig::evaluate_every`] the gateway and silence rules
//!   are evaluated ([`Store::evaluate_alarms`]; one instance at a time, by an advisory lock);
//! - **watching**: alarm changes (from any instance) are put on this instance's live
//!   stream, so `/api/events` carries them;
//! - **delivery**: due notifications are claimed from the outbox and sent (webhooks
//!   signed with HMAC-SHA256, e-mail over SMTP), a few at a time, each with a timeout,
//!   so a slow or dead receiver holds up nothing else.

use chrono::{DateTime, Utc};
use domain::alarms::{retry_delay, ChannelKind, DELIVERY_HEADER, SIGNATURE_HEADER};
use hmac::{Hmac, Mac};
use orchestrator::Orchestrator;
use sha2::Sha256;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use store::{AttemptOutcome, ClaimedDelivery, Store};
use uuid::Uuid;

/// How the alarm work runs.
#[derive(Debug, Clone)]
pub struct AlarmConfig {
    /// How often gateway and silence rules are evaluated.
    pub evaluate_every: Duration,
    /// How often the outbox is looked at when it was empty.
    pub deliver_every: Duration,
    /// How long one delivery may take before it counts as failed.
    pub delivery_timeout: Duration,
    /// Notifications sent at once by this instance.
    pub deliveries_at_once: u32,
    /// The first retry's delay; each next one doubles, up to `retry_longest`.
    pub retry_first: Duration,
    pub retry_longest: Duration,
    /// `SMTP_URL` and `SMTP_FROM`: where e-mail goes out, when set.
    pub smtp: Option<SmtpConfig>,
}

#[derive(Clone)]
pub struct SmtpConfig {
    /// e.g. `smtp://mail.plant.example:25` or `smtps://user:password@host` (holds a password: never logged).
    pub url: String,
    pub from: String,
}

impl std::fmt::Debug for SmtpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpConfig")
            .field("from", &self.from)
            .finish_non_exhaustive()
    }
}

impl Default for AlarmConfig {
    fn default() -> Self {
        Self {
            evaluate_every: Duration::from_secs(1),
            deliver_every: Duration::from_millis(500),
            delivery_timeout: Duration::from_secs(10),
            deliveries_at_once: 64,
            retry_first: Duration::from_secs(5),
            retry_longest: Duration::from_secs(3600),
            smtp: None,
        }
    }
}

/// The running alarm work; dropping it stops it.
pub struct AlarmWork {
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for AlarmWork {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl AlarmWork {
    pub fn start(store: Store, orchestrator: Orchestrator, config: AlarmConfig) -> Self {
        let evaluate = tokio::spawn(evaluate(store.clone(), config.evaluate_every));
        let watch = tokio::spawn(watch(store.clone(), orchestrator));
        let deliver = tokio::spawn(deliver(store, config));
        Self {
            tasks: vec![evaluate, watch, deliver],
        }
    }
}

/// Evaluates the gateway and silence rules every `every`, for good.
pub(crate) async fn evaluate(store: Store, every: Duration) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        match store.evaluate_alarms().await {
            Ok(done) if done.raised + done.cleared > 0 => {
                tracing::info!(raised = done.raised, cleared = done.cleared, "alarms evaluated");
            }
            Ok(_) => {}
            Err(err) if err.is_unavailable() => tracing::debug!(%err, "alarm evaluation: database unavailable"),
            Err(err) => tracing::warn!(%err, "alarm evaluation failed"),
        }
    }
}

/// Publishes alarm changes on the live stream. Rows are read a little further back than
/// the newest seen (a transaction commits after its `now()`), and each version once.
async fn watch(store: Store, orchestrator: Orchestrator) {
    const OVERLAP: chrono::TimeDelta = chrono::TimeDelta::seconds(10);
    let mut ticker = tokio::time::interval(Duration::from_millis(500));
    let mut newest: DateTime<Utc> = Utc::now();
    let mut published: HashMap<Uuid, DateTime<Utc>> = HashMap::new();
    loop {
        ticker.tick().await;
        let Ok(changed) = store.alarms_changed_since(newest - OVERLAP).await else {
            continue;
        };
        for alarm in changed {
            newest = newest.max(alarm.updated_at);
            if published.insert(alarm.id, alarm.updated_at) != Some(alarm.updated_at) {
                orchestrator.publish_alarm(alarm);
            }
        }
        published.retain(|_, at| *at > newest - OVERLAP);
    }
}

/// Claims and sends due notifications, for good.
pub(crate) async fn deliver(store: Store, config: AlarmConfig) {
    let http = reqwest::Client::builder()
        .timeout(config.delivery_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("factory-monitor/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("an HTTP client without TLS options to configure");
    // Claimed until a little after the timeout: another instance takes it over only if
    // this one died meanwhile.
    let lease = config.delivery_timeout * 3;
    loop {
        let claimed = match store.claim_deliveries(config.deliveries_at_once, lease).await {
            Ok(claimed) => claimed,
            Err(err) => {
                tracing::debug!(%err, "claiming notifications");
                Vec::new()
            }
        };
        if claimed.is_empty() {
            tokio::time::sleep(config.deliver_every).await;
            continue;
        }
        let sends = claimed.into_iter().map(|delivery| {
            let (http, config) = (&http, &config);
            async move {
                let outcome = send(http, config.smtp.as_ref(), &delivery, config.delivery_timeout).await;
                if !outcome.delivered {
                    tracing::info!(delivery = delivery.id, channel = %delivery.channel_id,
                        error = outcome.error.as_deref().unwrap_or(""), "notification not delivered; will retry");
                }
                let retry_in = retry_delay(delivery.attempts + 1, config.retry_first, config.retry_longest);
                (delivery.id, outcome, retry_in)
            }
        });
        // Recorded together: one transaction per batch, not three statements per send.
        let attempts = futures_util::future::join_all(sends).await;
        if let Err(err) = store.record_delivery_attempts(&attempts).await {
            // Still claimed: they fall due again when the claim ends, and are sent again
            // (at least once).
            tracing::warn!(%err, deliveries = attempts.len(), "recording delivery attempts");
        }
    }
}

/// The body a webhook receives: the stored notification plus its delivery id.
fn webhook_body(delivery: &ClaimedDelivery) -> Vec<u8> {
    let mut payload = delivery.payload.clone();
    if let Some(object) = payload.as_object_mut() {
        object.insert("delivery_id".into(), delivery.id.into());
    }
    serde_json::to_vec(&payload).unwrap_or_default()
}

/// `sha256=<hex>`: HMAC-SHA256 of `body` keyed with the channel's secret.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

async fn send(
    http: &reqwest::Client,
    smtp: Option<&SmtpConfig>,
    delivery: &ClaimedDelivery,
    timeout: Duration,
) -> AttemptOutcome {
    let started = Instant::now();
    let failed = |error: String, status_code: Option<u16>| AttemptOutcome {
        status_code,
        error: Some(error),
        duration: started.elapsed(),
        delivered: false,
    };
    match delivery.kind {
        ChannelKind::Webhook => {
            let Some(url) = delivery.url.as_deref() else {
                return failed("the channel has no URL".into(), None);
            };
            let secret = match &delivery.secret {
                Ok(secret) => secret,
                Err(error) => return failed(error.clone(), None),
            };
            let body = webhook_body(delivery);
            let mut request = http
                .post(url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header(DELIVERY_HEADER, delivery.id.to_string());
            if let Some(secret) = secret {
                request = request.header(SIGNATURE_HEADER, signature(secret.expose(), &body));
            }
            match request.body(body).send().await {
                Ok(response) if response.status().is_success() => AttemptOutcome {
                    status_code: Some(response.status().as_u16()),
                    error: None,
                    duration: started.elapsed(),
                    delivered: true,
                },
                Ok(response) => failed(
                    format!("the receiver answered {}", response.status()),
                    Some(response.status().as_u16()),
                ),
                Err(err) if err.is_timeout() => failed(format!("no answer within {} s", timeout.as_secs()), None),
                Err(err) => failed(format!("could not reach the receiver: {}", without_url(&err)), None),
            }
        }
        ChannelKind::Email => match smtp {
            None => failed("e-mail is not configured (set SMTP_URL and SMTP_FROM)".into(), None),
            Some(smtp) => match tokio::time::timeout(timeout, send_email(smtp, delivery)).await {
                Ok(Ok(())) => AttemptOutcome {
                    status_code: None,
                    error: None,
                    duration: started.elapsed(),
                    delivered: true,
                },
                Ok(Err(error)) => failed(error, None),
                Err(_) => failed(
                    format!("the mail server did not answer within {} s", timeout.as_secs()),
                    None,
                ),
            },
        },
    }
}

/// The error without the URL (a webhook URL may carry a token in its path or query).
fn without_url(err: &reqwest::Error) -> String {
    let mut text = err.to_string();
    if let Some(url) = err.url() {
        text = text.replace(url.as_str(), "<url>");
    }
    text
}

/// The subject and text of an alarm's e-mail.
fn email_text(delivery: &ClaimedDelivery) -> (String, String) {
    let alarm = &delivery.payload["alarm"];
    let message = alarm["message"]
        .as_str()
        .or_else(|| delivery.payload["message"].as_str())
        .unwrap_or("factory-monitor notification");
    let severity = alarm["severity"].as_str().unwrap_or("info");
    let subject = match delivery.event.as_str() {
        "test" => "[factory-monitor] Test notification".to_owned(),
        "cleared" => format!("[factory-monitor] Cleared: {message}"),
        event => format!("[factory-monitor] {} {event}: {message}", severity.to_uppercase()),
    };
    let body = format!(
        "{message}\n\nEvent: {}\nSeverity: {severity}\nAlarm: {}\nRaised at: {}\n",
        delivery.event,
        alarm["id"].as_str().unwrap_or("-"),
        alarm["raised_at"].as_str().unwrap_or("-"),
    );
    (subject, body)
}

async fn send_email(smtp: &SmtpConfig, delivery: &ClaimedDelivery) -> Result<(), String> {
    use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
    let (subject, body) = email_text(delivery);
    let mut message = Message::builder()
        .from(smtp.from.parse().map_err(|e| format!("SMTP_FROM: {e}"))?)
        .subject(subject);
    for to in delivery
        .to
        .as_deref()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
    {
        message = message.to(to.parse().map_err(|e| format!("recipient {to}: {e}"))?);
    }
    let message = message.body(body).map_err(|e| e.to_string())?;
    let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(&smtp.url)
        .map_err(|e| format!("SMTP_URL: {e}"))?
        .build();
    transport.send(message).await.map(|_| ()).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_the_documented_hmac() {
        // RFC 4231 test case 2.
        let sig = signature("Jefe", b"what do ya want for nothing?");
        assert_eq!(
            sig,
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
