//! The OpenAPI document served at `/api/openapi.json`: utoipa's, from the handlers'
//! annotations, plus what its attributes cannot say, taken from the rules the server
//! enforces (`domain`'s limits, patterns equivalent to its checks, the time-zone list),
//! so that a client generated from it, or schemathesis, knows what the server accepts.

use domain::inventory::{
    EMAIL_MAX, FIRMWARE_MAX, GATEWAY_ID_MAX, LOCATION_MAX, MODEL_MAX, NAME_MAX, PASSWORD_MAX, TIMEZONE_MAX,
    TLS_PIN_INPUT_MAX, URL_MAX,
};
use serde_json::{json, Value};
use std::sync::OnceLock;
use utoipa::OpenApi;

/// Built once: it never changes while the server runs.
pub fn document() -> &'static Value {
    static DOCUMENT: OnceLock<Value> = OnceLock::new();
    DOCUMENT.get_or_init(|| {
        let mut document = serde_json::to_value(super::ApiDoc::openapi()).expect("the document is JSON");
        state_input_rules(&mut document);
        state_list_orders(&mut document);
        state_serial_limits(&mut document);
        state_patch_nulls(&mut document);
        state_alarm_rules(&mut document);
        describe_event_stream(&mut document);
        document
    })
}

/// Text the server trims and requires: something other than spaces, and no NUL
/// (PostgreSQL cannot store it).
const REQUIRED_TEXT: &str = r"^[^\u0000]*[^\s\u0000][^\u0000]*$";
const OPTIONAL_TEXT: &str = r"^[^\u0000]*$";
/// `domain::validate::is_valid_email`, with the spaces the server trims.
const EMAIL: &str = r"^\s*[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*@([A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?\.)+[A-Za-z]{2,}\s*$";
/// `domain::validate::gateway_url_problem`: ws:// or wss://, a host (or bracketed IPv6),
/// a port from 1 to 65535, a path; no credentials, query, fragment or inner spaces.
/// `domain::validate::certificate_pin`, or blank (no pin).
const TLS_PIN: &str = r"^\s*(([sS][hH][aA]256:)?([0-9A-Fa-f]{64}|[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){31}))?\s*$";
const GATEWAY_URL: &str = r"^\s*[wW][sS][sS]?://([A-Za-z0-9._-]+|\[[A-Za-z0-9._:-]+\])(:(0*([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])))?(/[^\s?#]*)?\s*$";

fn state_input_rules(document: &mut Value) {
    let text = |max: usize, required: bool| {
        let pattern = if required { REQUIRED_TEXT } else { OPTIONAL_TEXT };
        json!({ "maxLength": max, "pattern": pattern })
    };
    let zones: Vec<&str> = chrono_tz::TZ_VARIANTS.iter().map(|zone| zone.name()).collect();
    let timezone = json!({ "maxLength": TIMEZONE_MAX, "enum": zones });
    let url = json!({ "maxLength": URL_MAX, "pattern": GATEWAY_URL });
    let email = json!({ "maxLength": EMAIL_MAX, "pattern": EMAIL });
    let pin = json!({ "maxLength": TLS_PIN_INPUT_MAX, "pattern": TLS_PIN });
    let password = json!({ "maxLength": PASSWORD_MAX });
    let mut rules = vec![
        ("FactoryInput", "name", text(NAME_MAX, true)),
        ("FactoryInput", "location", text(LOCATION_MAX, false)),
        ("FactoryInput", "timezone", timezone.clone()),
        ("FactoryPatch", "name", text(NAME_MAX, true)),
        ("FactoryPatch", "location", text(LOCATION_MAX, false)),
        ("FactoryPatch", "timezone", timezone),
    ];
    for schema in ["GatewayInput", "GatewayPatch"] {
        rules.extend([
            (schema, "gateway_id", text(GATEWAY_ID_MAX, true)),
            (schema, "name", text(NAME_MAX, true)),
            (schema, "url", url.clone()),
            (schema, "email", email.clone()),
            (schema, "password", password.clone()),
            (schema, "model", text(MODEL_MAX, false)),
            (schema, "firmware_version", text(FIRMWARE_MAX, false)),
            (schema, "tls_pin", pin.clone()),
        ]);
    }
    let rpm = json!({ "exclusiveMinimum": 0, "maximum": domain::machines::RPM_MAX });
    let kinds = json!({ "enum": domain::machines::MACHINE_KINDS });
    let serial = json!({ "minimum": 1, "maximum": domain::machines::SERIAL_MAX });
    for schema in ["MachineInput", "MachinePatch"] {
        rules.extend([
            (schema, "name", text(NAME_MAX, true)),
            (schema, "kind", kinds.clone()),
            (schema, "rpm", rpm.clone()),
            (schema, "class", text(domain::machines::CLASS_MAX, false)),
            (schema, "criticality", text(domain::machines::CRITICALITY_MAX, false)),
            (schema, "area", text(domain::machines::AREA_MAX, false)),
        ]);
    }
    rules.extend([
        ("PointInput", "name", text(NAME_MAX, true)),
        ("PointInput", "serial", serial),
    ]);
    for (schema, field, rule) in rules {
        let property = &mut document["components"]["schemas"][schema]["properties"][field];
        assert!(property.is_object(), "the document has no {schema}.{field}");
        for (key, value) in rule.as_object().expect("a rule is an object") {
            property[key] = value.clone();
        }
    }
}

/// In a partial update `null` leaves a field as it is (or clears it, where the field
/// says so): every property of a patch takes it.
fn state_patch_nulls(document: &mut Value) {
    for schema in ["FactoryPatch", "GatewayPatch", "MachinePatch"] {
        let properties = document["components"]["schemas"][schema]["properties"]
            .as_object_mut()
            .expect("a patch has properties");
        for property in properties.values_mut() {
            match property.get("type").cloned() {
                Some(Value::String(kind)) => property["type"] = json!([kind, "null"]),
                Some(Value::Array(mut kinds)) if !kinds.contains(&json!("null")) => {
                    kinds.push(json!("null"));
                    property["type"] = json!(kinds);
                }
                _ => {}
            }
            if let Some(values) = property.get_mut("enum").and_then(Value::as_array_mut) {
                if !values.contains(&Value::Null) {
                    values.push(Value::Null);
                }
            }
        }
    }
}

/// An http(s) URL with a host, as `domain::alarms::is_http_url` takes it (trimmed).
const WEBHOOK_URL: &str = r"^\s*[hH][tT][tT][pP][sS]?://[^\s/?#]+([/?#]\S*)?\s*$";
/// One address of [`EMAIL`] without its anchors and spaces.
const EMAIL_ADDRESS: &str = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*@([A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?\.)+[A-Za-z]{2,}";
const ALARM_STATES: &str = "(active|acknowledged|cleared|closed)";
/// `domain::validate::parse_uuid`: the hyphenated form only.
const UUID: &str = "[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}";

/// The alarm inputs' limits, and the alarm list's filters. What no schema can say (a
/// threshold's levels and value, one scope at most, `danger` not below `alert`) the
/// server answers with 400 naming the field.
fn state_alarm_rules(document: &mut Value) {
    use domain::alarms::{CONSECUTIVE_MAX, DELAY_MAX_SECONDS, LEVEL_MAX, NOTE_MAX, SECRET_MAX, URL_MAX as HOOK_MAX};
    let schemas = &mut document["components"]["schemas"];
    let name = json!({ "type": "string", "maxLength": NAME_MAX, "pattern": REQUIRED_TEXT });
    let serial = json!({ "type": "integer", "minimum": 1, "maximum": domain::machines::SERIAL_MAX });
    for schema in ["AlarmRuleInput", "AlarmRulePatch"] {
        let properties = &mut schemas[schema]["properties"];
        let nullable = schema == "AlarmRulePatch";
        let with_null = |mut rule: Value, kind: &str| {
            rule["type"] = if nullable { json!([kind, "null"]) } else { json!(kind) };
            rule
        };
        properties["name"] = json!({ "type": "string", "maxLength": NAME_MAX, "pattern": OPTIONAL_TEXT });
        properties["delay_seconds"] = json!({ "type": "integer", "minimum": 0, "maximum": DELAY_MAX_SECONDS });
        properties["consecutive"] = json!({ "type": "integer", "minimum": 1, "maximum": CONSECUTIVE_MAX });
        properties["hysteresis"] = json!({ "type": "number", "minimum": 0, "exclusiveMaximum": 100 });
        properties["serial"] = with_null(serial.clone(), "integer");
        for level in ["alert", "danger"] {
            properties[level] = with_null(json!({ "minimum": -LEVEL_MAX, "maximum": LEVEL_MAX }), "number");
        }
    }
    let to = format!(r"^\s*{EMAIL_ADDRESS}(\s*,\s*{EMAIL_ADDRESS})*\s*$");
    let channel = &mut schemas["ChannelInput"]["properties"];
    channel["name"] = name;
    channel["url"] = json!({ "type": "string", "maxLength": HOOK_MAX, "pattern": WEBHOOK_URL });
    channel["to"] = json!({ "type": "string", "maxLength": HOOK_MAX, "pattern": to });
    channel["secret"] = json!({ "type": "string", "minLength": 1, "maxLength": SECRET_MAX, "writeOnly": true });
    channel["severities"] = json!({ "type": "array", "minItems": 1,
        "items": { "type": "string", "enum": ["warning", "critical"] } });
    schemas["AcknowledgeInput"]["properties"]["note"] =
        json!({ "type": ["string", "null"], "maxLength": NOTE_MAX, "pattern": OPTIONAL_TEXT });
    // No body acknowledges without a note.
    document["paths"]["/api/alarms/{id}/acknowledge"]["post"]["requestBody"]["required"] = json!(false);
    let parameters = document["paths"]["/api/alarms"]["get"]["parameters"]
        .as_array_mut()
        .expect("the alarm list has parameters");
    // `domain::alarms::AlarmQuery`: values are trimmed, and a blank one is absent.
    let one_of = |values: &str| json!({ "type": "string", "pattern": format!(r"^\s*({values})?\s*$") });
    let sorts = domain::alarms::AlarmSort::ALL.map(|sort| sort.as_str()).join("|");
    for parameter in parameters {
        match parameter["name"].as_str() {
            Some("state") => {
                let pattern = format!(r"^\s*({ALARM_STATES}\s*(,\s*{ALARM_STATES}\s*)*)?$");
                parameter["schema"] = json!({ "type": "string", "pattern": pattern });
            }
            Some("severity") => parameter["schema"] = one_of("warning|critical"),
            Some("sort") => parameter["schema"] = one_of(&sorts),
            Some("factory_id" | "machine_id" | "gateway_id") => parameter["schema"] = one_of(UUID),
            Some("serial") => {
                parameter["schema"] = json!({ "anyOf": [serial.clone(), { "type": "string", "pattern": r"^\s*$" }] })
            }
            _ => continue,
        }
    }
}

/// A sensor serial in a path is a whole number from 1 (kept below 2^53, exact in
/// JavaScript; utoipa's attribute cannot hold such a literal).
fn state_serial_limits(document: &mut Value) {
    let paths = document["paths"].as_object_mut().expect("the document has paths");
    for (_, item) in paths.iter_mut().filter(|(path, _)| path.contains("{serial}")) {
        for (_, operation) in item.as_object_mut().expect("a path item is an object") {
            for parameter in operation["parameters"].as_array_mut().into_iter().flatten() {
                if parameter["name"] == "serial" {
                    parameter["schema"]["minimum"] = json!(1);
                    parameter["schema"]["maximum"] = json!(domain::machines::SERIAL_MAX);
                }
            }
        }
    }
}

/// The gateway list's `sort`, `order` and `state` take only the values the server knows,
/// or nothing (`order=` is read as no order given, as every empty query value is).
fn state_list_orders(document: &mut Value) {
    let mut sorts: Vec<&str> = domain::GatewaySort::ALL.iter().map(|sort| sort.as_str()).collect();
    sorts.push("");
    let states: Vec<&str> = domain::live::ConnectionState::ALL
        .iter()
        .map(|state| state.as_str())
        .chain([""])
        .collect();
    let parameters = document["paths"]["/api/gateways"]["get"]["parameters"]
        .as_array_mut()
        .expect("the gateway list has parameters");
    for parameter in parameters {
        match parameter["name"].as_str() {
            Some("sort") => parameter["schema"]["enum"] = json!(sorts),
            Some("order") => parameter["schema"]["enum"] = json!(["asc", "desc", ""]),
            Some("state") => parameter["schema"] = json!({ "type": "string", "enum": states }),
            _ => continue,
        }
    }
}

/// An event stream's schema describes each event (OpenAPI 3.2, and how schemathesis
/// reads it): `event`, `id`, and `data` holding a [`LiveEvent`](domain::live) as JSON,
/// or with `coalesce=true` a [`LiveBatch`](domain::live).
fn describe_event_stream(document: &mut Value) {
    // Event ids stay below 2^53 (exact in JavaScript); the server refuses larger ones.
    let parameters = document["paths"]["/api/events"]["get"]["parameters"]
        .as_array_mut()
        .expect("the event stream has parameters");
    for parameter in parameters.iter_mut().filter(|p| p["name"] == "last_event_id") {
        parameter["schema"]["maximum"] = json!(domain::validate::MAX_SAFE_INTEGER);
    }
    let content = &mut document["paths"]["/api/events"]["get"]["responses"]["200"]["content"]["text/event-stream"];
    assert!(content.is_object(), "the document has no event stream");
    content["schema"] = json!({
        "type": "object",
        "required": ["data"],
        "properties": {
            "event": { "type": "string", "enum": ["snapshot", "gateway", "removed", "reading", "alarm", "batch"] },
            "id": { "type": "string" },
            "retry": { "type": "integer" },
            "data": {
                "type": "string",
                "contentMediaType": "application/json",
                "contentSchema": { "oneOf": [
                    { "$ref": "#/components/schemas/LiveEvent" },
                    { "$ref": "#/components/schemas/LiveBatch" }
                ] }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(pattern: &str, text: &str) -> bool {
        regex::Regex::new(pattern).unwrap().is_match(text)
    }

    /// The patterns say what the server's checks say, on both sides of the line.
    #[test]
    fn the_patterns_agree_with_the_server_checks() {
        for url in [
            "ws://192.168.1.100:5000",
            "wss://gw.plant.example/ws",
            " ws://[fe80::1]:1 ",
            "WS://h",
            "ws://h:65535",
        ] {
            assert!(matches(GATEWAY_URL, url), "{url}");
            assert!(domain::validate::gateway_url_problem(url.trim()).is_none(), "{url}");
        }
        for url in [
            "http://h",
            "ws://",
            "ws://u:p@h",
            "ws://h?x=1",
            "ws://h#f",
            "ws://h:0",
            "ws://h:65536",
            "ws://h x",
        ] {
            assert!(!matches(GATEWAY_URL, url), "{url}");
            assert!(domain::validate::gateway_url_problem(url.trim()).is_some(), "{url}");
        }
        for email in ["admin@gateway.local", "a.b+c@x-y.example", " a@b.cd "] {
            assert!(
                matches(EMAIL, email) && domain::validate::is_valid_email(email.trim()),
                "{email}"
            );
        }
        for email in ["a@localhost", ".a@b.cd", "a..b@c.de", "a@-b.cd", "a@b.c1", "a b@c.de"] {
            assert!(
                !matches(EMAIL, email) && !domain::validate::is_valid_email(email),
                "{email}"
            );
        }
        let pin = "AB:cd:".repeat(15) + "ab:cd";
        for good in [pin.clone(), format!("sha256:{pin}"), "0".repeat(64), String::new()] {
            assert!(matches(TLS_PIN, &good), "{good}");
            assert!(
                good.is_empty() || domain::validate::certificate_pin(&good).is_some(),
                "{good}"
            );
        }
        for bad in ["0".repeat(63), format!("{pin}:00"), "a:b".repeat(32), "zz".repeat(32)] {
            assert!(
                !matches(TLS_PIN, &bad) && domain::validate::certificate_pin(&bad).is_none(),
                "{bad}"
            );
        }
        assert!(matches(REQUIRED_TEXT, " x ") && !matches(REQUIRED_TEXT, "  ") && !matches(REQUIRED_TEXT, "a\0"));
        for url in ["http://h", " https://hooks.example.com/x?y=1 ", "HTTP://10.0.0.1:8080/"] {
            assert!(
                matches(WEBHOOK_URL, url) && domain::alarms::is_http_url(url.trim()),
                "{url}"
            );
        }
        for url in ["ftp://h", "http://", "https:// h", "ws://h", "http:/h"] {
            assert!(
                !(matches(WEBHOOK_URL, url) && domain::alarms::is_http_url(url.trim())),
                "{url}"
            );
            assert!(!matches(WEBHOOK_URL, url), "{url}");
        }
    }

    #[test]
    fn the_document_carries_the_rules() {
        let document = document();
        let name = &document["components"]["schemas"]["FactoryInput"]["properties"]["name"];
        assert_eq!(name["maxLength"], NAME_MAX);
        let zones = document["components"]["schemas"]["FactoryPatch"]["properties"]["timezone"]["enum"]
            .as_array()
            .unwrap();
        assert!(zones.iter().any(|z| z == "Europe/Berlin") && zones.len() > 400);
        let parameters = document["paths"]["/api/gateways"]["get"]["parameters"]
            .as_array()
            .unwrap();
        let sort = parameters.iter().find(|p| p["name"] == "sort").unwrap();
        // Every sort the server knows, and nothing (`sort=` is no sort given).
        assert_eq!(
            sort["schema"]["enum"].as_array().unwrap().len(),
            domain::GatewaySort::ALL.len() + 1
        );
        let state = parameters.iter().find(|p| p["name"] == "state").unwrap();
        assert!(state["schema"]["enum"].as_array().unwrap().contains(&json!("backoff")));
    }

    /// A `$ref` to a schema the document lacks makes clients (and schemathesis) skip what
    /// it describes.
    #[test]
    fn every_reference_resolves() {
        fn references<'a>(value: &'a Value, found: &mut Vec<&'a str>) {
            match value {
                Value::Object(map) => {
                    if let Some(Value::String(target)) = map.get("$ref") {
                        found.push(target);
                    }
                    map.values().for_each(|v| references(v, found));
                }
                Value::Array(items) => items.iter().for_each(|v| references(v, found)),
                _ => {}
            }
        }
        let document = document();
        let mut found = Vec::new();
        references(document, &mut found);
        assert!(!found.is_empty());
        for target in found {
            let pointer = target.strip_prefix('#').expect("a local reference");
            assert!(document.pointer(pointer).is_some(), "{target} does not resolve");
        }
    }

    /// Each filter of `GET /api/alarms` takes exactly what its pattern allows.
    #[test]
    fn the_alarm_list_parameters_agree_with_the_server() {
        use domain::alarms::AlarmQuery;
        let parameters = document()["paths"]["/api/alarms"]["get"]["parameters"]
            .as_array()
            .unwrap();
        let pattern = |name: &str| {
            let parameter = parameters.iter().find(|p| p["name"] == name).unwrap();
            parameter["schema"]["pattern"].as_str().unwrap().to_owned()
        };
        let id = "0b6f1c2e-9d3a-4f5b-8c7d-1e2f3a4b5c6d";
        let cases: [(&str, &[&str]); 4] = [
            (
                "state",
                &[
                    "",
                    " ",
                    "active",
                    " active , closed ",
                    "active,,closed",
                    "open",
                    "Active",
                ],
            ),
            ("severity", &["", "warning", " critical ", "info", "warning,critical"]),
            ("sort", &["", "newest", " severity ", "name", "Newest"]),
            (
                "gateway_id",
                &[
                    "",
                    id,
                    " 0B6F1C2E-9D3A-4F5B-8C7D-1E2F3A4B5C6D ",
                    "0b6f1c2e9d3a4f5b8c7d1e2f3a4b5c6d",
                    "x",
                ],
            ),
        ];
        for (name, values) in cases {
            let pattern = pattern(name);
            for &value in values {
                let query = match name {
                    "state" => AlarmQuery {
                        state: Some(value),
                        ..Default::default()
                    },
                    "severity" => AlarmQuery {
                        severity: Some(value),
                        ..Default::default()
                    },
                    "sort" => AlarmQuery {
                        sort: Some(value),
                        ..Default::default()
                    },
                    _ => AlarmQuery {
                        gateway_id: Some(value),
                        ..Default::default()
                    },
                };
                assert_eq!(matches(&pattern, value), query.parse().is_ok(), "{name}={value:?}");
            }
        }
    }
}
