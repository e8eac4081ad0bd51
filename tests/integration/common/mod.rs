//! Black-box harness: the real server on port 0, a fresh database per test,
//! called over HTTP. Every response is checked against the OpenAPI document.

use factory_monitor::security::CorsOrigins;
use factory_monitor::web::{self, AppState};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::Duration;
use store::{EncryptionKey, KeyRing, Store};

pub const CORS_ORIGIN: &str = "https://ui.plant.example";

/// Held by the tests that load the machine (10,000 gateways) or need it quiet (several
/// server processes), so no two of them share the two cores.
pub static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Short timeouts so fault tests finish in seconds.
pub fn test_orchestrator_config() -> orchestrator::OrchestratorConfig {
    let mut config = orchestrator::OrchestratorConfig {
        start_spread: std::time::Duration::ZERO,
        last_seen_interval: std::time::Duration::from_millis(300),
        ..Default::default()
    };
    config.backoff.initial = std::time::Duration::from_millis(100);
    config.backoff.max = std::time::Duration::from_millis(400);
    config.backoff.auth_failure_delay = std::time::Duration::from_millis(500);
    config.client.ping_interval = Some(std::time::Duration::from_millis(300));
    config.client.dead_after = std::time::Duration::from_millis(1500);
    config.client.command_timeout = std::time::Duration::from_secs(3);
    config
}

/// Alarm work at test speed: evaluated five times a second, retries from 100 ms.
pub fn test_alarm_config() -> factory_monitor::alarms::AlarmConfig {
    factory_monitor::alarms::AlarmConfig {
        evaluate_every: std::time::Duration::from_millis(200),
        deliver_every: std::time::Duration::from_millis(100),
        delivery_timeout: std::time::Duration::from_secs(2),
        retry_first: std::time::Duration::from_millis(100),
        retry_longest: std::time::Duration::from_millis(400),
        ..Default::default()
    }
}

pub struct TestServer {
    pub base: String,
    pub http: reqwest::Client,
    pub admin: String,
    pub viewer: String,
    pub store: Store,
    openapi: Value,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Reply {
    /// The error code of an error body.
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("<no error code>")
    }

    /// The fields named by a validation error's details, in order.
    pub fn fields(&self) -> Vec<&str> {
        self.body["error"]["details"]
            .as_array()
            .map(|details| details.iter().filter_map(|d| d["field"].as_str()).collect())
            .unwrap_or_default()
    }
}

/// The `id` of a resource in a JSON answer.
pub fn id(v: &Value) -> String {
    v["id"].as_str().unwrap().to_owned()
}

/// A URL for a fresh database on the server that DATABASE_URL points to.
fn fresh_database_url() -> String {
    let base =
        std::env::var("DATABASE_URL").expect("DATABASE_URL must point to a PostgreSQL server (make test starts one)");
    let (prefix, _) = base.rsplit_once('/').expect("DATABASE_URL has a database path");
    format!("{prefix}/t_{}", uuid::Uuid::new_v4().simple())
}

pub async fn fresh_store() -> Store {
    store_at(&fresh_database_url()).await
}

/// A migrated store on the database at `url` (created if missing), with a new key.
pub async fn store_at(url: &str) -> Store {
    store_with_key(url, &EncryptionKey::generate().1).await
}

/// A migrated store on the database at `url` with the key `key` (base64): stores of
/// several instances of one fleet share their key.
pub async fn store_with_key(url: &str, key: &str) -> Store {
    let pool = store::connect(url, 8).await.expect("test database");
    let key = EncryptionKey::from_base64(key).expect("a valid key");
    let store = Store::new(pool, KeyRing::new(key, vec![]));
    store.migrate().await.expect("migrations");
    store
}

/// A fresh database's URL and two stores on it sharing one key: two instances.
pub async fn fleet_of_two_stores() -> (Store, Store) {
    let url = fresh_database_url();
    let key = EncryptionKey::generate().1;
    (store_with_key(&url, &key).await, store_with_key(&url, &key).await)
}

/// How long any one API call of a test may take: far above what any takes (a write
/// waits at most the pool's 5 s acquire timeout per query while the database is away).
const ANSWER_DEADLINE: Duration = Duration::from_secs(60);

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(fresh_store().await, test_orchestrator_config()).await
    }

    /// A server on `store` whose orchestrator runs with `config`.
    pub async fn start_with(store: Store, config: orchestrator::OrchestratorConfig) -> Self {
        Self::start_with_alarms(store, config, test_alarm_config()).await
    }

    /// A server whose alarm work runs with `alarms` (e.g. with an SMTP server).
    pub async fn start_with_alarms(
        store: Store,
        config: orchestrator::OrchestratorConfig,
        alarms: factory_monitor::alarms::AlarmConfig,
    ) -> Self {
        // The server's log, for a test run with e.g. TEST_LOG=debug (captured per test).
        if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_env("TEST_LOG") {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_test_writer()
                .try_init();
        }
        let (_, admin) = store.create_api_token("test admin", domain::Role::Admin).await.unwrap();
        let (_, viewer) = store
            .create_api_token("test viewer", domain::Role::Viewer)
            .await
            .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let orchestrator = orchestrator::Orchestrator::start(store.clone(), config).await.unwrap();
        let state = AppState::new(store.clone(), addr, orchestrator).with_alarm_config(alarms);
        let cors = CorsOrigins::List(vec![CORS_ORIGIN.parse().unwrap()]);
        tokio::spawn(async move {
            web::serve(listener, state, &cors, std::future::pending())
                .await
                .unwrap();
        });
        Self {
            base: format!("http://{addr}"),
            http: reqwest::Client::new(),
            admin: admin.to_string(),
            viewer: viewer.to_string(),
            store,
            openapi: factory_monitor::api::document().clone(),
        }
    }

    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, format!("{}{path}", self.base))
    }

    /// Sends a request as admin (when `token` is None, pass Some("") for none).
    pub async fn send(&self, builder: reqwest::RequestBuilder) -> Reply {
        // A request the server never answers fails the test, naming it, instead of
        // hanging the run until CI's limit.
        let request = builder.timeout(ANSWER_DEADLINE).build().expect("a valid request");
        let described = format!("{} {}", request.method(), request.url().path());
        let response = self
            .http
            .execute(request)
            .await
            .unwrap_or_else(|err| panic!("{described}: no answer: {err}"));
        let status = response.status();
        let headers = response.headers().clone();
        let text = response
            .text()
            .await
            .unwrap_or_else(|err| panic!("{described}: body not read: {err}"));
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            body,
            text,
        }
    }

    /// `method path` as admin with an optional JSON body; the answer is checked
    /// against the OpenAPI document.
    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        self.call_as(&self.admin.clone(), method, path, body).await
    }

    pub async fn call_as(&self, token: &str, method: Method, path: &str, body: Option<Value>) -> Reply {
        let mut builder = self.request(method.clone(), path).bearer_auth(token);
        if let Some(body) = body {
            builder = builder.json(&body);
        }
        let reply = self.send(builder).await;
        self.check_documented(&method, path, &reply);
        reply
    }

    pub async fn create_factory(&self, name: &str) -> Value {
        let reply = self
            .call(
                Method::POST,
                "/api/factories",
                Some(json!({"name": name, "timezone": "America/Chicago"})),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
        reply.body
    }

    pub async fn create_gateway(&self, factory_id: &str, gateway_id: &str, name: &str) -> Value {
        let reply = self
            .call(
                Method::POST,
                "/api/gateways",
                Some(gateway_body(factory_id, gateway_id, name)),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
        reply.body
    }

    /// The response's status must be documented for the route, and its JSON body
    /// must match the documented schema.
    fn check_documented(&self, method: &Method, path: &str, reply: &Reply) {
        let path = path.split('?').next().unwrap().trim_end_matches('/');
        let Some((template, item)) = self.openapi["paths"]
            .as_object()
            .unwrap()
            .iter()
            .find(|(template, _)| path_matches(template, path))
        else {
            // Undocumented paths must be 404s.
            assert_eq!(
                reply.status,
                StatusCode::NOT_FOUND,
                "{method} {path} is not in the OpenAPI document"
            );
            return;
        };
        let operation = &item[method.as_str().to_ascii_lowercase()];
        if operation.is_null() {
            assert_eq!(reply.status.as_u16(), 405, "{method} {template} is not documented");
            return;
        }
        let status = reply.status.as_u16().to_string();
        let documented = &operation["responses"][&status];
        assert!(
            !documented.is_null(),
            "{method} {template} answered {status}, which the OpenAPI document does not list"
        );
        if let Some(schema) = documented.pointer("/content/application~1json/schema") {
            if let Err(problem) = self.validate(schema, &reply.body, "$") {
                panic!(
                    "{method} {template} {status}: body does not match the schema: {problem}\n{}",
                    reply.text
                );
            }
        }
    }

    fn resolve<'a>(&'a self, schema: &'a Value) -> &'a Value {
        match schema.get("$ref").and_then(Value::as_str) {
            Some(reference) => {
                let pointer = reference.trim_start_matches('#');
                self.resolve(
                    self.openapi
                        .pointer(pointer)
                        .unwrap_or_else(|| panic!("dangling {reference}")),
                )
            }
            None => schema,
        }
    }

    /// A small JSON Schema check: types (incl. 3.1 type arrays), required
    /// properties, nested objects and arrays, oneOf/allOf, enums.
    fn validate(&self, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
        let schema = self.resolve(schema);
        if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
            for s in all {
                self.validate(s, value, at)?;
            }
        }
        if let Some(any) = schema.get("oneOf").or(schema.get("anyOf")).and_then(Value::as_array) {
            if !any.iter().any(|s| self.validate(s, value, at).is_ok()) {
                return Err(format!("{at}: matches none of oneOf/anyOf"));
            }
        }
        if let Some(options) = schema.get("enum").and_then(Value::as_array) {
            if !options.contains(value) {
                return Err(format!("{at}: {value} not in enum"));
            }
        }
        let types: Vec<&str> = match schema.get("type") {
            Some(Value::String(t)) => vec![t.as_str()],
            Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        if !types.is_empty() {
            let actual = match value {
                Value::Null => "null",
                Value::Bool(_) => "boolean",
                Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
                Value::Number(_) => "number",
                Value::String(_) => "string",
                Value::Array(_) => "array",
                Value::Object(_) => "object",
            };
            let ok = types.contains(&actual) || (actual == "integer" && types.contains(&"number"));
            if !ok {
                return Err(format!("{at}: expected {types:?}, got {actual}"));
            }
        }
        if let (Some(props), Value::Object(map)) = (schema.get("properties").and_then(Value::as_object), value) {
            for required in schema.get("required").and_then(Value::as_array).into_iter().flatten() {
                let key = required.as_str().unwrap();
                if !map.contains_key(key) {
                    return Err(format!("{at}: missing required {key}"));
                }
            }
            for (key, sub) in props {
                if let Some(v) = map.get(key) {
                    self.validate(sub, v, &format!("{at}.{key}"))?;
                }
            }
            for key in map.keys() {
                if !props.contains_key(key) && schema.get("additionalProperties") == Some(&Value::Bool(false)) {
                    return Err(format!("{at}: undocumented property {key}"));
                }
            }
        }
        if let (Some(items), Value::Array(values)) = (schema.get("items"), value) {
            for (i, v) in values.iter().enumerate() {
                self.validate(items, v, &format!("{at}[{i}]"))?;
            }
        }
        Ok(())
    }
}

fn path_matches(template: &str, path: &str) -> bool {
    let t: Vec<_> = template.split('/').collect();
    let p: Vec<_> = path.split('/').collect();
    t.len() == p.len() && t.iter().zip(&p).all(|(a, b)| a.starts_with('{') || a == b)
}

pub fn gateway_body(factory_id: &str, gateway_id: &str, name: &str) -> Value {
    json!({
        "factory_id": factory_id,
        "gateway_id": gateway_id,
        "name": name,
        "url": "ws://127.0.0.1:9",
        "email": "admin@gateway.local",
        "password": "admin123",
        "model": "CTC-GW-100",
        "firmware_version": "v2.1.0",
        "metadata": {"zone": "North Wing", "floor": 1},
    })
}
