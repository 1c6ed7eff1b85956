//! Alerts as OCSF Detection Finding (2004) Create: the rule as the
//! `finding_info.analytic`, the events that raised it as `related_events`, and
//! for a Sigma match the login the event belongs to as `actor.session`.

use serde_json::{Value, json};
use watchtower_model::Alert;

use super::{
    DETECTION_FINDING, Header, Id, Record, endpoint, event_uid, login_session, ms, non_empty, object,
    severity, to_json,
};

const CREATE: Id = super::id(1, "Create");
/// `status_id` of a finding.
const NEW: Id = super::id(1, "New");
/// `analytic.type_id`.
const RULE: Id = super::id(1, "Rule");

/// One alert as an OCSF Detection Finding.
#[must_use]
pub fn alert(alert: &Alert) -> Value {
    let mut r = Record::new(DETECTION_FINDING, CREATE);
    r.severity = severity(&alert.severity);
    r.status(NEW);
    let sigma = alert.sigma.as_ref();
    let analytic = match sigma {
        Some(s) => object([
            ("name", json!(s.title)),
            ("uid", json!(s.rule_id.as_deref().and_then(non_empty))),
            ("type_id", json!(RULE.id)),
            ("type", json!(RULE.name)),
            ("category", json!("sigma")),
            ("desc", json!(non_empty(&s.file))),
        ]),
        None => json!({
            "name": alert.rule,
            "uid": alert.rule,
            "type_id": RULE.id,
            "type": RULE.name,
        }),
    };
    let matched = sigma.and_then(|s| s.event.as_ref());
    let related: Vec<Value> = matched
        .and_then(|stored| stored.event.as_ref())
        .map(|event| json!({ "uid": event_uid(event) }))
        .into_iter()
        .collect();
    let title = sigma.map_or(alert.rule.as_str(), |s| s.title.as_str());
    r.set(
        "finding_info",
        object([
            ("uid", json!(format!("alert/{}", alert.id))),
            ("title", json!(title)),
            ("desc", json!(non_empty(&alert.summary))),
            ("created_time", json!(ms(alert.time_unix_ns))),
            ("analytic", analytic),
            ("types", json!([alert.rule])),
            ("related_events", json!((!related.is_empty()).then_some(related))),
        ]),
    );
    r.set("count", json!(alert.count.max(1)));
    let user = alert.user.as_deref().and_then(non_empty);
    let remote = alert.remote_address.as_deref().and_then(non_empty);
    let chain = sigma.map_or(&[][..], |s| s.session_chain.as_slice());
    if let Some(login) = chain.last() {
        r.actor("session", login_session(login));
        r.actor("user", json!({ "name": login.user }));
    } else if let Some(user) = user {
        r.actor("user", json!({ "name": user }));
    }
    if user.is_some() || remote.is_some() {
        r.set(
            "evidences",
            json!([object([
                ("user", json!(user.map(|name| json!({ "name": name })))),
                ("src_endpoint", json!(remote.map(endpoint))),
            ])]),
        );
    }
    r.note("rule", json!(alert.rule));
    r.note("seqs", json!((!alert.seqs.is_empty()).then_some(&alert.seqs)));
    if let Some(s) = sigma {
        r.note("sigma_file", json!(non_empty(&s.file)));
        r.note(
            "session_chain",
            json!(
                (!s.session_chain.is_empty()).then(|| s
                    .session_chain
                    .iter()
                    .map(to_json)
                    .collect::<Vec<_>>())
            ),
        );
    }
    r.finish(&Header {
        uid: Some(format!("alert/{}", alert.id)),
        host_id: &alert.host_id,
        boot_id: None,
        time_unix_ns: alert.time_unix_ns,
        logged_unix_ns: None,
        sequence: None,
        event_code: "alert",
        labels: Vec::new(),
        message: non_empty(&alert.summary).map(str::to_owned),
    })
}
