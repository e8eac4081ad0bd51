//! The REST API, black box: the real server over HTTP against a fresh database.
//! Where we differ from the predecessor on purpose, the test name or a comment says so.

use crate::common::{gateway_body, id, TestServer, CORS_ORIGIN};
use reqwest::header::{ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN, CONTENT_TYPE};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const GET: Method = Method::GET;
const POST: Method = Method::POST;
const PUT: Method = Method::PUT;
const PATCH: Method = Method::PATCH;
const DELETE: Method = Method::DELETE;

#[tokio::test]
async fn health_needs_no_token_and_reports_version_uptime_and_database() {
    let s = TestServer::start().await;
    let r = s.send(s.request(GET, "/api/health")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["status"], "ok");
    assert_eq!(r.body["database"], "ok");
    assert_eq!(r.body["version"], env!("CARGO_PKG_VERSION"));
    assert!(r.body["uptime"].as_f64().unwrap() >= 0.0);
    let head = s.send(s.request(Method::HEAD, "/api/health")).await;
    assert_eq!(head.status, StatusCode::OK);
}

#[tokio::test]
async fn health_is_degraded_503_when_the_database_is_down() {
    let s = TestServer::start().await;
    s.store.pool().close().await;
    let r = s.send(s.request(GET, "/api/health")).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.body["status"], "degraded");
}

#[tokio::test]
async fn tokens_401_without_or_with_a_bad_token_and_403_for_a_viewer_writing() {
    let s = TestServer::start().await;
    let none = s.send(s.request(GET, "/api/factories")).await;
    assert_eq!((none.status, none.code()), (StatusCode::UNAUTHORIZED, "UNAUTHORIZED"));
    let bad = s.call_as("fm_not-a-real-token", GET, "/api/factories", None).await;
    assert_eq!(bad.status, StatusCode::UNAUTHORIZED);
    let basic = s
        .send(s.request(GET, "/api/factories").header("authorization", "Basic YTpi"))
        .await;
    assert_eq!(basic.status, StatusCode::UNAUTHORIZED);

    let viewer = s.viewer.clone();
    assert_eq!(
        s.call_as(&viewer, GET, "/api/factories", None).await.status,
        StatusCode::OK
    );
    let write = s
        .call_as(&viewer, POST, "/api/factories", Some(json!({"name": "X"})))
        .await;
    assert_eq!((write.status, write.code()), (StatusCode::FORBIDDEN, "FORBIDDEN"));

    let (token, secret) = s
        .store
        .create_api_token("short-lived", domain::Role::Admin)
        .await
        .unwrap();
    s.store.revoke_api_token(token.id).await.unwrap();
    assert_eq!(
        s.call_as(&secret, GET, "/api/factories", None).await.status,
        StatusCode::UNAUTHORIZED
    );
}

/// Predecessor: none. A token revoked by another process (`factory-monitor token
/// revoke`) stops working as soon as PostgreSQL's notification arrives, although
/// its last check is cached.
#[tokio::test]
async fn a_token_revoked_by_another_process_stops_working_at_once() {
    let s = TestServer::start().await;
    let other_process = store::Store::new(
        s.store.pool().clone(),
        store::KeyRing::new(store::EncryptionKey::generate().0, vec![]),
    );
    let (token, secret) = other_process
        .create_api_token("script", domain::Role::Admin)
        .await
        .unwrap();
    while !s.store.changes().is_listening() {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(
        s.call_as(&secret, GET, "/api/factories", None).await.status,
        StatusCode::OK
    );
    other_process.revoke_api_token(token.id).await.unwrap();
    let started = std::time::Instant::now();
    let mut status = StatusCode::OK;
    // Well under the cache's 10 s lifetime.
    while status == StatusCode::OK && started.elapsed() < std::time::Duration::from_secs(3) {
        status = s.call_as(&secret, GET, "/api/factories", None).await.status;
    }
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn organizations_are_listed_so_clients_can_learn_the_id() {
    let s = TestServer::start().await;
    let r = s.call(GET, "/api/organizations", None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["pagination"]["total"], 1);
    let org = r.body["data"][0]["id"].as_str().unwrap().to_owned();
    let f = s
        .call(
            POST,
            "/api/factories",
            Some(json!({"organization_id": org, "name": "Named org"})),
        )
        .await;
    assert_eq!(f.status, StatusCode::CREATED);
    assert_eq!(f.body["organization_id"], org.as_str());
}

#[tokio::test]
async fn factory_create_applies_defaults_and_hides_deleted_at() {
    let s = TestServer::start().await;
    let r = s
        .call(POST, "/api/factories", Some(json!({"name": "Springfield Plant"})))
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.body["timezone"], "UTC");
    assert_eq!(r.body["metadata"], json!({}));
    assert_eq!(r.body["location"], Value::Null);
    assert!(r.body.get("deleted_at").is_none());
    let empty_location = s
        .call(POST, "/api/factories", Some(json!({"name": "B", "location": ""})))
        .await;
    assert_eq!(
        empty_location.body["location"],
        Value::Null,
        "empty optional strings are stored as null"
    );
}

#[tokio::test]
async fn factory_validation_errors_name_each_field() {
    let s = TestServer::start().await;
    // Predecessor: unknown keys were silently stripped (201). We refuse them by name.
    let extra = s
        .call(POST, "/api/factories", Some(json!({"name": "X", "extra": 1})))
        .await;
    assert_eq!(
        (extra.status, extra.code()),
        (StatusCode::BAD_REQUEST, "VALIDATION_ERROR")
    );
    assert_eq!(extra.body["error"]["details"][0]["field"], "extra");

    let r = s
        .call(
            POST,
            "/api/factories",
            Some(json!({"timezone": "Mars/Base", "metadata": []})),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.fields(), ["name", "timezone", "metadata"]);

    let long = s
        .call(POST, "/api/factories", Some(json!({"name": "n".repeat(256)})))
        .await;
    assert_eq!(long.status, StatusCode::BAD_REQUEST);
    let long_location = s
        .call(
            POST,
            "/api/factories",
            Some(json!({"name": "n", "location": "l".repeat(501)})),
        )
        .await;
    assert_eq!(long_location.status, StatusCode::BAD_REQUEST);
    let empty_zone = s
        .call(POST, "/api/factories", Some(json!({"name": "n", "timezone": ""})))
        .await;
    assert_eq!(
        empty_zone.status,
        StatusCode::BAD_REQUEST,
        "predecessor accepted an empty timezone"
    );
    let wrong_type = s.call(POST, "/api/factories", Some(json!({"name": 5}))).await;
    assert_eq!(wrong_type.status, StatusCode::BAD_REQUEST);
    assert_eq!(wrong_type.body["error"]["details"][0]["field"], "name");
    assert_eq!(wrong_type.body["error"]["details"][0]["instancePath"], "/name");
}

#[tokio::test]
async fn unknown_or_invalid_organization() {
    let s = TestServer::start().await;
    // Predecessor: 500 with SQLSTATE 23503.
    let unknown = s
        .call(
            POST,
            "/api/factories",
            Some(json!({"organization_id": uuid::Uuid::new_v4(), "name": "X"})),
        )
        .await;
    assert_eq!(
        (unknown.status, unknown.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "UNKNOWN_ORGANIZATION")
    );
    let invalid = s
        .call(
            POST,
            "/api/factories",
            Some(json!({"organization_id": "nope", "name": "X"})),
        )
        .await;
    assert_eq!(invalid.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn factory_list_order_and_pagination() {
    let s = TestServer::start().await;
    for name in ["Springfield Plant", "Detroit Assembly", "Austin Facility"] {
        s.create_factory(name).await;
    }
    let r = s.call(GET, "/api/factories", None).await;
    let names: Vec<&str> = r.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Austin Facility", "Detroit Assembly", "Springfield Plant"]);
    assert_eq!(
        r.body["pagination"],
        json!({"total": 3, "limit": 20, "offset": 0, "hasNext": false, "hasPrev": false})
    );

    let page = s.call(GET, "/api/factories?limit=2&offset=1", None).await;
    assert_eq!(page.body["data"].as_array().unwrap().len(), 2);
    assert_eq!(page.body["pagination"]["hasNext"], false);
    assert_eq!(page.body["pagination"]["hasPrev"], true);
    let first = s.call(GET, "/api/factories?limit=1", None).await;
    assert_eq!(first.body["pagination"]["hasNext"], true);
    let past = s.call(GET, "/api/factories?offset=50", None).await;
    assert_eq!(past.body["data"], json!([]));
    assert_eq!(past.body["pagination"]["total"], 3);
    let trailing = s.call(GET, "/api/factories/", None).await;
    assert_eq!(trailing.status, StatusCode::OK);
    let unknown_key = s.call(GET, "/api/factories?color=red", None).await;
    assert_eq!(unknown_key.status, StatusCode::OK, "unknown query keys are ignored");

    // Predecessor: limit=2.5 passed validation and failed in PostgreSQL with a 500.
    for query in [
        "limit=0",
        "limit=101",
        "limit=abc",
        "limit=2.5",
        "limit=",
        "offset=-1",
        "offset=1.5",
    ] {
        let bad = s.call(GET, &format!("/api/factories?{query}"), None).await;
        assert_eq!(
            (bad.status, bad.code()),
            (StatusCode::BAD_REQUEST, "VALIDATION_ERROR"),
            "{query}"
        );
    }
}

#[tokio::test]
async fn factory_get_update_patch_delete() {
    let s = TestServer::start().await;
    let f = s.create_factory("Detroit").await;
    let path = format!("/api/factories/{}", id(&f));
    assert_eq!(s.call(GET, &path, None).await.body, f);

    let put = s.call(PUT, &path, Some(json!({"location": "Hall 2"}))).await;
    assert_eq!(put.status, StatusCode::OK);
    assert_eq!(put.body["location"], "Hall 2");
    assert_eq!(put.body["name"], "Detroit");
    let patch = s
        .call(
            PATCH,
            &path,
            Some(json!({"location": null, "name": "Detroit Assembly"})),
        )
        .await;
    assert_eq!(patch.status, StatusCode::OK, "PATCH means the same as PUT");
    assert_eq!(patch.body["location"], Value::Null);
    let empty = s.call(PUT, &path, Some(json!({}))).await;
    assert_eq!(empty.status, StatusCode::OK);
    assert_eq!(empty.body["name"], "Detroit Assembly");
    // Predecessor: organization_id on PUT was silently ignored. It cannot change, so it is refused.
    let org = s
        .call(PUT, &path, Some(json!({"organization_id": uuid::Uuid::new_v4()})))
        .await;
    assert_eq!(org.status, StatusCode::BAD_REQUEST);

    assert_eq!(s.call(DELETE, &path, None).await.status, StatusCode::NO_CONTENT);
    let again = s.call(DELETE, &path, None).await;
    assert_eq!(
        (again.status, again.code()),
        (StatusCode::NOT_FOUND, "FACTORY_NOT_FOUND")
    );
    assert_eq!(s.call(GET, &path, None).await.code(), "FACTORY_NOT_FOUND");
    assert_eq!(
        s.call(PUT, &path, Some(json!({"name": "x"}))).await.code(),
        "FACTORY_NOT_FOUND"
    );
    let missing = s
        .call(GET, &format!("/api/factories/{}", uuid::Uuid::new_v4()), None)
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn invalid_uuid_in_path_or_query_is_400() {
    let s = TestServer::start().await;
    for path in [
        "/api/factories/not-a-uuid",
        "/api/gateways/123",
        "/api/gateways?factory_id=nope",
        "/api/gateways?factory_id=",
        // Only the canonical hyphenated form, as the predecessor's schema had it.
        "/api/factories/67e5504410b1426f9247bb680e5fe0c8",
        "/api/gateways?factory_id=%7B67e55044-10b1-426f-9247-bb680e5fe0c8%7D",
        "/api/gateways/urn:uuid:67e55044-10b1-426f-9247-bb680e5fe0c8",
    ] {
        let r = s.call(GET, path, None).await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::BAD_REQUEST, "VALIDATION_ERROR"),
            "{path}"
        );
    }
}

#[tokio::test]
async fn gateway_create_never_returns_the_password() {
    let s = TestServer::start().await;
    let f = s.create_factory("Austin").await;
    let g = s.create_gateway(&id(&f), "GW-AUS-001", "Lab Gateway").await;
    for key in ["password", "password_encrypted", "deleted_at"] {
        assert!(g.get(key).is_none(), "{key} leaked");
    }
    assert!(!g.to_string().contains("admin123"));
    assert_eq!(g["metadata"]["zone"], "North Wing");
    assert_eq!(g["last_seen_at"], Value::Null);
    let listed = s.call(GET, "/api/gateways", None).await;
    assert!(!listed.text.contains("admin123") && !listed.text.contains("password"));
}

#[tokio::test]
async fn gateway_id_conflicts_are_409_and_reusable_after_delete() {
    let s = TestServer::start().await;
    let f = s.create_factory("F").await;
    let g = s.create_gateway(&id(&f), "GW-1", "One").await;
    // Predecessor: 500 with SQLSTATE 23505.
    let dup = s
        .call(POST, "/api/gateways", Some(gateway_body(&id(&f), "GW-1", "Two")))
        .await;
    assert_eq!((dup.status, dup.code()), (StatusCode::CONFLICT, "GATEWAY_ID_TAKEN"));
    assert!(!dup.text.contains("23505") && !dup.text.contains("duplicate key"));
    s.call(DELETE, &format!("/api/gateways/{}", id(&g)), None).await;
    s.create_gateway(&id(&f), "GW-1", "Three").await;
}

#[tokio::test]
async fn gateway_under_unknown_or_deleted_factory_is_422() {
    let s = TestServer::start().await;
    let unknown = s
        .call(
            POST,
            "/api/gateways",
            Some(gateway_body(&uuid::Uuid::new_v4().to_string(), "GW-1", "A")),
        )
        .await;
    assert_eq!(
        (unknown.status, unknown.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "UNKNOWN_FACTORY")
    );
    // Predecessor: creating under a soft-deleted factory succeeded.
    let f = s.create_factory("Gone").await;
    s.call(DELETE, &format!("/api/factories/{}", id(&f)), None).await;
    let deleted = s
        .call(POST, "/api/gateways", Some(gateway_body(&id(&f), "GW-1", "A")))
        .await;
    assert_eq!(deleted.status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn gateway_validation() {
    let s = TestServer::start().await;
    let f = id(&s.create_factory("F").await);
    let cases = [
        ("url", json!("http://192.168.1.1:5000")),
        ("url", json!("ws://")),
        ("url", json!("not a url")),
        ("email", json!("user@localhost")),
        ("email", json!("a@b.c")),
        ("password", json!("")),
        ("model", json!("m".repeat(101))),
        ("firmware_version", json!("f".repeat(51))),
        ("gateway_id", json!("")),
    ];
    for (field, value) in cases {
        let mut body = gateway_body(&f, "GW-V", "V");
        body[field] = value.clone();
        let r = s.call(POST, "/api/gateways", Some(body)).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{field}={value}");
        assert_eq!(r.body["error"]["details"][0]["field"], field, "{field}={value}");
        assert!(!r.text.contains("admin123"), "the password is never echoed");
    }
    let mut body = gateway_body(&f, "GW-V", "V");
    body.as_object_mut().unwrap().remove("password");
    let r = s.call(POST, "/api/gateways", Some(body)).await;
    assert_eq!(r.body["error"]["details"][0]["field"], "password");
    let mut ok = gateway_body(&f, "GW-OK", "OK");
    ok["email"] = json!("admin@gateway.local");
    ok["url"] = json!("wss://localhost:9");
    assert_eq!(
        s.call(POST, "/api/gateways", Some(ok)).await.status,
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn gateway_list_filters_by_factory_and_paginates() {
    let s = TestServer::start().await;
    let a = id(&s.create_factory("A").await);
    let b = id(&s.create_factory("B").await);
    s.create_gateway(&a, "GW-1", "South").await;
    s.create_gateway(&b, "GW-2", "Assembly Line Gateway").await;
    s.create_gateway(&a, "GW-3", "North").await;
    let all = s.call(GET, "/api/gateways", None).await;
    assert_eq!(all.body["data"][0]["name"], "Assembly Line Gateway");
    let filtered = s
        .call(GET, &format!("/api/gateways?factory_id={a}&limit=1&offset=1"), None)
        .await;
    assert_eq!(filtered.body["pagination"]["total"], 2);
    assert_eq!(filtered.body["data"][0]["name"], "South");
    let none = s
        .call(GET, &format!("/api/gateways?factory_id={}", uuid::Uuid::new_v4()), None)
        .await;
    assert_eq!(none.body["pagination"]["total"], 0);
}

#[tokio::test]
async fn gateway_update_is_atomic_moves_and_clears() {
    let s = TestServer::start().await;
    let a = id(&s.create_factory("A").await);
    let b = id(&s.create_factory("B").await);
    let g1 = s.create_gateway(&a, "GW-1", "One").await;
    let g2 = s.create_gateway(&a, "GW-2", "Two").await;
    let g2_id: uuid::Uuid = id(&g2).parse().unwrap();
    let path = format!("/api/gateways/{g2_id}");

    // Predecessor: the password was saved even though the rest failed (500).
    let r = s
        .call(
            PUT,
            &path,
            Some(json!({"password": "changed", "gateway_id": g1["gateway_id"]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(
        s.store.gateway_credentials(g2_id).await.unwrap().password.expose(),
        "admin123"
    );

    let r = s.call(PUT, &path, Some(json!({"password": ""}))).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);

    let r = s
        .call(PATCH, &path, Some(json!({"password": "n3w", "name": "Two bis"})))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(!r.text.contains("n3w"));
    assert_eq!(
        s.store.gateway_credentials(g2_id).await.unwrap().password.expose(),
        "n3w"
    );

    let r = s.call(PUT, &path, Some(json!({"name": "Kept password"}))).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        s.store.gateway_credentials(g2_id).await.unwrap().password.expose(),
        "n3w"
    );

    // The stored password follows the URL only on the same host: another host must be given
    // it again (a stolen token could otherwise send it anywhere).
    let elsewhere = s
        .call(PATCH, &path, Some(json!({"url": "ws://collector.evil.example:5000"})))
        .await;
    assert_eq!(elsewhere.status, StatusCode::BAD_REQUEST, "{}", elsewhere.text);
    assert_eq!(elsewhere.fields(), ["password"]);
    let before = s.call(GET, &path, None).await;
    assert_eq!(before.body["url"], "ws://127.0.0.1:9", "nothing changed");
    let new_port = s.call(PATCH, &path, Some(json!({"url": "ws://127.0.0.1:5001"}))).await;
    assert_eq!(new_port.status, StatusCode::OK, "{}", new_port.text);
    let with_password = s
        .call(
            PATCH,
            &path,
            Some(json!({"url": "ws://gateway.plant.example:5000", "password": "n3w"})),
        )
        .await;
    assert_eq!(with_password.status, StatusCode::OK, "{}", with_password.text);

    // Predecessor: factory_id was silently ignored on PUT.
    let moved = s.call(PUT, &path, Some(json!({"factory_id": b}))).await;
    assert_eq!(moved.body["factory_id"], b.as_str());
    let bad_move = s
        .call(PUT, &path, Some(json!({"factory_id": uuid::Uuid::new_v4()})))
        .await;
    assert_eq!(bad_move.code(), "UNKNOWN_FACTORY");

    // Predecessor: null was rejected and "" stored as "".
    let cleared = s
        .call(PUT, &path, Some(json!({"model": null, "firmware_version": ""})))
        .await;
    assert_eq!(cleared.body["model"], Value::Null);
    assert_eq!(cleared.body["firmware_version"], Value::Null);

    let missing = s
        .call(PUT, &format!("/api/gateways/{}", uuid::Uuid::new_v4()), Some(json!({})))
        .await;
    assert_eq!(missing.code(), "GATEWAY_NOT_FOUND");
}

#[tokio::test]
async fn deleting_a_factory_deletes_its_gateways() {
    let s = TestServer::start().await;
    let f = id(&s.create_factory("F").await);
    let g = s.create_gateway(&f, "GW-1", "One").await;
    assert_eq!(
        s.call(DELETE, &format!("/api/factories/{f}"), None).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        s.call(GET, &format!("/api/gateways/{}", id(&g)), None).await.code(),
        "GATEWAY_NOT_FOUND"
    );
    assert_eq!(s.call(GET, "/api/gateways", None).await.body["pagination"]["total"], 0);
}

#[tokio::test]
async fn bodies_that_are_not_json_objects() {
    let s = TestServer::start().await;
    let send = |ct: Option<&str>, body: Vec<u8>| {
        let mut b = s.request(POST, "/api/factories").bearer_auth(&s.admin).body(body);
        if let Some(ct) = ct {
            b = b.header(CONTENT_TYPE, ct);
        }
        b
    };
    let malformed = s.send(send(Some("application/json"), b"{\"name\": ".to_vec())).await;
    assert_eq!(
        (malformed.status, malformed.code()),
        (StatusCode::BAD_REQUEST, "INVALID_JSON_BODY")
    );
    let xml = s.send(send(Some("application/xml"), b"<name/>".to_vec())).await;
    assert_eq!(
        (xml.status, xml.code()),
        (StatusCode::UNSUPPORTED_MEDIA_TYPE, "UNSUPPORTED_MEDIA_TYPE")
    );
    let text = s.send(send(Some("text/plain"), b"name".to_vec())).await;
    assert_eq!(text.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let array = s.send(send(Some("application/json"), b"[]".to_vec())).await;
    assert_eq!(
        (array.status, array.code()),
        (StatusCode::BAD_REQUEST, "VALIDATION_ERROR")
    );
    let string = s.send(send(Some("application/json"), b"\"x\"".to_vec())).await;
    assert_eq!(string.status, StatusCode::BAD_REQUEST);
    let empty_json = s.send(send(Some("application/json"), Vec::new())).await;
    assert_eq!(
        (empty_json.status, empty_json.code()),
        (StatusCode::BAD_REQUEST, "EMPTY_JSON_BODY")
    );
    let nothing = s.send(send(None, Vec::new())).await;
    assert_eq!(nothing.status, StatusCode::BAD_REQUEST);
    let mut big = br#"{"name":"x","metadata":{"blob":""#.to_vec();
    big.extend(std::iter::repeat_n(b'a', 2 * 1024 * 1024));
    big.extend(br#""}}"#);
    let too_big = s.send(send(Some("application/json"), big)).await;
    assert_eq!(
        (too_big.status, too_big.code()),
        (StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE")
    );
    // Nothing was created by any of these.
    assert_eq!(s.call(GET, "/api/factories", None).await.body["pagination"]["total"], 0);
}

#[tokio::test]
async fn delete_with_json_content_type_and_empty_body_is_accepted() {
    // Predecessor: 400 FST_ERR_CTP_EMPTY_JSON_BODY, so its own UI could not delete.
    let s = TestServer::start().await;
    let f = id(&s.create_factory("F").await);
    let r = s
        .send(
            s.request(DELETE, &format!("/api/factories/{f}"))
                .bearer_auth(&s.admin)
                .header(CONTENT_TYPE, "application/json")
                .header("content-length", "0"),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn sql_and_markup_are_stored_verbatim() {
    let s = TestServer::start().await;
    let name = "Robert'); DROP TABLE factories;-- <script>alert(1)</script>";
    let f = s
        .call(
            POST,
            "/api/factories",
            Some(json!({"name": name, "location": "<img src=x onerror=alert(1)>"})),
        )
        .await;
    assert_eq!(f.status, StatusCode::CREATED);
    assert_eq!(f.body["name"], name);
    assert_eq!(f.headers[CONTENT_TYPE], "application/json");
    let got = s.call(GET, &format!("/api/factories/{}", id(&f.body)), None).await;
    assert_eq!(got.body["name"], name);
    assert_eq!(
        s.call(GET, "/api/factories?search=DROP%20TABLE", None).await.body["pagination"]["total"],
        1
    );
}

/// PostgreSQL cannot store NUL in text or jsonb; that is the client's mistake
/// (400 naming the field), never a 500, and nothing is written.
#[tokio::test]
async fn nul_characters_are_refused_with_the_field_named() {
    let s = TestServer::start().await;
    let factory = s.create_factory("Plant").await;
    let factory_id = id(&factory);
    let refusals = [
        (POST, "/api/factories".to_owned(), json!({"name": "a\0b"}), "name"),
        (
            POST,
            "/api/factories".to_owned(),
            json!({"name": "Plant 2", "metadata": {"note": "x\0"}}),
            "metadata",
        ),
        (
            POST,
            "/api/factories".to_owned(),
            json!({"name": "Plant 2", "metadata": {"k\0": 1}}),
            "metadata",
        ),
        (
            PATCH,
            format!("/api/factories/{factory_id}"),
            json!({"location": "\0"}),
            "location",
        ),
        (
            POST,
            "/api/gateways".to_owned(),
            {
                let mut body = gateway_body(&factory_id, "GW-1", "Gateway\0");
                body["metadata"] = json!({"deep": [{"x": "\0"}]});
                body
            },
            "name",
        ),
    ];
    for (method, path, body, field) in refusals {
        let r = s.call(method.clone(), &path, Some(body)).await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::BAD_REQUEST, "VALIDATION_ERROR"),
            "{method} {path}: {}",
            r.text
        );
        let fields = r.fields();
        assert!(fields.contains(&field), "{method} {path}: {fields:?}");
    }
    for path in ["/api/factories?search=%00", "/api/gateways?search=a%00"] {
        let r = s.call(GET, path, None).await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::BAD_REQUEST, "VALIDATION_ERROR"),
            "{path}"
        );
        assert_eq!(r.body["error"]["details"][0]["field"], "search");
    }
    let list = s.call(GET, "/api/factories", None).await;
    assert_eq!(list.body["pagination"]["total"], 1, "nothing was written");
    assert_eq!(
        s.call(GET, &format!("/api/factories/{factory_id}"), None).await.body["location"],
        Value::Null
    );
}

#[tokio::test]
async fn a_mistyped_password_is_not_echoed_in_the_error() {
    let s = TestServer::start().await;
    let factory = s.create_factory("Plant").await;
    let mut body = gateway_body(&id(&factory), "GW-1", "Gateway");
    body["password"] = json!(987_654_321);
    let r = s.call(POST, "/api/gateways", Some(body)).await;
    assert_eq!((r.status, r.code()), (StatusCode::BAD_REQUEST, "VALIDATION_ERROR"));
    assert_eq!(r.body["error"]["details"][0]["field"], "password");
    assert!(!r.text.contains("987654321"), "{}", r.text);
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_json() {
    let s = TestServer::start().await;
    let r = s.call(GET, "/api/nothing-here?x=1", None).await;
    assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "NOT_FOUND"));
    assert_eq!(r.body["error"]["message"], "Route GET /api/nothing-here?x=1 not found");
    assert_eq!(r.body["error"]["statusCode"], 404);
    let r = s.call(DELETE, "/api/factories", None).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED")
    );
}

#[tokio::test]
async fn security_headers_and_cors() {
    let s = TestServer::start().await;
    let r = s.call(GET, "/api/factories", None).await;
    for (name, value) in [
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "SAMEORIGIN"),
        ("referrer-policy", "no-referrer"),
        ("cross-origin-opener-policy", "same-origin"),
        ("content-security-policy", "default-src 'none'; frame-ancestors 'none'"),
    ] {
        assert_eq!(r.headers[name], value, "{name}");
    }
    // Predecessor: preflight listed GET,HEAD,POST only, so browsers could not PUT or DELETE.
    let preflight = s
        .send(
            s.request(Method::OPTIONS, "/api/factories/x")
                .header("origin", CORS_ORIGIN)
                .header("access-control-request-method", "DELETE"),
        )
        .await;
    assert_eq!(preflight.headers[ACCESS_CONTROL_ALLOW_ORIGIN], CORS_ORIGIN);
    let methods = preflight.headers[ACCESS_CONTROL_ALLOW_METHODS]
        .to_str()
        .unwrap()
        .to_owned();
    for m in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
        assert!(methods.contains(m), "{methods}");
    }
    assert_eq!(preflight.headers["access-control-allow-credentials"], "true");
    let other = s
        .send(s.request(GET, "/api/health").header("origin", "https://evil.example"))
        .await;
    assert!(other.headers.get(ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
}

#[tokio::test]
async fn pages_carry_a_csp_whose_nonce_matches_their_scripts() {
    let s = TestServer::start().await;
    let r = s.send(s.request(GET, "/factories")).await;
    assert_eq!(r.status, StatusCode::OK);
    let csp = r.headers["content-security-policy"].to_str().unwrap().to_owned();
    let nonce = csp
        .split("'nonce-")
        .nth(1)
        .and_then(|rest| rest.split('\'').next())
        .expect("nonce in CSP");
    assert!(
        r.text.contains(&format!("nonce=\"{nonce}\"")),
        "scripts carry the nonce"
    );
    assert!(!csp.contains("'unsafe-inline'; img") || csp.contains("style-src 'self' 'unsafe-inline'"));
    assert!(
        !csp.contains("script-src 'self' 'unsafe-inline'"),
        "no inline scripts without nonce"
    );
}

#[tokio::test]
async fn openapi_document_lists_every_route() {
    let s = TestServer::start().await;
    let r = s.send(s.request(GET, "/api/openapi.json")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body["openapi"].as_str().unwrap().starts_with("3.1"));
    let paths = r.body["paths"].as_object().unwrap();
    for (path, methods) in [
        ("/api/health", &["get"][..]),
        ("/api/organizations", &["get"]),
        ("/api/factories", &["get", "post"]),
        ("/api/factories/{id}", &["get", "put", "patch", "delete"]),
        ("/api/gateways", &["get", "post"]),
        ("/api/gateways/{id}", &["get", "put", "patch", "delete"]),
    ] {
        for m in methods {
            assert!(paths[path][m].is_object(), "{m} {path} missing");
        }
    }
    assert!(r.body["components"]["schemas"]["Gateway"]["properties"]
        .get("password")
        .is_none());
    let required = |schema: &str| -> Vec<String> {
        serde_json::from_value(r.body["components"]["schemas"][schema]["required"].clone()).unwrap_or_default()
    };
    assert_eq!(required("FactoryInput"), ["name"]);
    assert_eq!(
        required("GatewayInput"),
        ["factory_id", "gateway_id", "name", "url", "email", "password"]
    );
}

/// A client that sends half a request head and then nothing holds a socket only until the
/// header-read timeout; the server goes on answering others meanwhile.
#[tokio::test]
async fn a_half_sent_request_head_is_closed_after_the_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = TestServer::start().await;
    let address = s.base.strip_prefix("http://").unwrap().to_owned();
    let mut slow = tokio::net::TcpStream::connect(&address).await.unwrap();
    slow.write_all(b"GET /api/health HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let sent = std::time::Instant::now();
    assert_eq!(
        s.call(GET, "/api/health", None).await.status,
        StatusCode::OK,
        "others are served"
    );
    let mut answer = Vec::new();
    let limit = factory_monitor::web::HEADER_READ_TIMEOUT + std::time::Duration::from_secs(5);
    let read = tokio::time::timeout(limit, slow.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the connection was still open after {:?}", sent.elapsed());
    assert!(
        sent.elapsed() >= factory_monitor::web::HEADER_READ_TIMEOUT - std::time::Duration::from_secs(1),
        "closed after the timeout, not before"
    );
}

/// A kept-alive connection that sends nothing after its answer is closed after the same
/// timeout, and a body that stops half-way is answered 408 after the body timeout; both
/// at once, so the test takes the longer of the two.
#[tokio::test]
async fn idle_connections_and_stalled_bodies_are_given_up() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = TestServer::start().await;
    let address = s.base.strip_prefix("http://").unwrap().to_owned();
    let idle = async {
        let mut idle = tokio::net::TcpStream::connect(&address).await.unwrap();
        idle.write_all(b"GET /api/health HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut first = [0u8; 12];
        idle.read_exact(&mut first).await.unwrap();
        assert_eq!(&first, b"HTTP/1.1 200");
        let answered = std::time::Instant::now();
        let mut rest = Vec::new();
        let limit = factory_monitor::web::HEADER_READ_TIMEOUT + std::time::Duration::from_secs(5);
        let read = tokio::time::timeout(limit, idle.read_to_end(&mut rest)).await;
        assert!(
            read.is_ok(),
            "an idle connection was still open after {:?}",
            answered.elapsed()
        );
    };
    let stalled = async {
        let mut stalled = tokio::net::TcpStream::connect(&address).await.unwrap();
        let token = s.admin.clone();
        let head = format!(
            "POST /api/factories HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"name\":"
        );
        stalled.write_all(head.as_bytes()).await.unwrap();
        let sent = std::time::Instant::now();
        let mut answer = Vec::new();
        let limit = factory_monitor::web::BODY_READ_TIMEOUT + std::time::Duration::from_secs(5);
        let read = tokio::time::timeout(limit, stalled.read_to_end(&mut answer)).await;
        assert!(read.is_ok(), "a stalled body held its request for {:?}", sent.elapsed());
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("REQUEST_TIMEOUT"), "{answer}");
    };
    tokio::join!(idle, stalled);
}

/// Numbers at the edge of f64 in `metadata` come back as they were sent: PostgreSQL keeps
/// their exact decimal, and reading the largest back once overflowed to infinity, so the
/// create answered 500 after storing the row and every read of it failed after (found by
/// schemathesis).
#[tokio::test]
async fn extreme_numbers_in_metadata_round_trip() {
    let s = TestServer::start().await;
    let metadata =
        json!({"max": 1.7976931348623157e308, "min": -1.7976931348623157e308, "tiny": 1.2345678901234567e-300});
    let created = s
        .call(
            POST,
            "/api/factories",
            Some(json!({"name": "Edge plant", "metadata": metadata})),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    assert_eq!(created.body["metadata"], metadata);
    let id = created.body["id"].as_str().unwrap();
    let read = s.call(GET, &format!("/api/factories/{id}"), None).await;
    assert_eq!(read.status, StatusCode::OK, "{}", read.text);
    assert_eq!(read.body["metadata"], metadata);
    assert_eq!(s.call(GET, "/api/factories", None).await.status, StatusCode::OK);
    let mut gateway = gateway_body(id, "GW-EDGE", "Edge gateway");
    gateway["metadata"] = metadata.clone();
    let gateway = s.call(POST, "/api/gateways", Some(gateway)).await;
    assert_eq!(gateway.status, StatusCode::CREATED, "{}", gateway.text);
    let listed = s.call(GET, "/api/gateways", None).await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.text);
    assert_eq!(listed.body["data"][0]["metadata"], metadata);
}

/// The predecessor's client sends its seed's default organization id when it creates a
/// factory; our default organization answers to it (migration 0012).
#[tokio::test]
async fn the_predecessors_default_organization_id_names_ours() {
    let s = TestServer::start().await;
    let organizations = s.call(GET, "/api/organizations", None).await;
    let ours = organizations.body["data"][0]["id"].clone();
    let created = s
        .call(
            POST,
            "/api/factories",
            Some(json!({"name": "Old client plant", "organization_id": "00000000-0000-0000-0000-000000000001"})),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    assert_eq!(created.body["organization_id"], ours);
    let unknown = s
        .call(
            POST,
            "/api/factories",
            Some(json!({"name": "Nowhere", "organization_id": "00000000-0000-0000-0000-000000000002"})),
        )
        .await;
    assert_eq!(unknown.code(), "UNKNOWN_ORGANIZATION");
}

/// Gateway lists sort on the server by any stored column, either way, and filter by live
/// state; unknown values are refused naming the parameter (issue 13).
#[tokio::test]
async fn gateway_lists_sort_by_any_column_and_filter_by_live_state() {
    let s = TestServer::start().await;
    let factory = s.create_factory("Sorted plant").await;
    let factory = factory["id"].as_str().unwrap();
    for (gateway_id, name, enabled) in [
        ("GW-B", "Bravo", true),
        ("GW-C", "Alpha", false),
        ("GW-A", "Charlie", true),
    ] {
        let mut body = gateway_body(factory, gateway_id, name);
        body["enabled"] = json!(enabled);
        assert_eq!(
            s.call(POST, "/api/gateways", Some(body)).await.status,
            StatusCode::CREATED
        );
    }
    let listed = |query: &'static str| {
        let s = &s;
        async move {
            let reply = s.call(GET, &format!("/api/gateways?{query}"), None).await;
            assert_eq!(reply.status, StatusCode::OK, "{query}: {}", reply.text);
            reply.body["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|g| g["gateway_id"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(listed("").await, ["GW-C", "GW-B", "GW-A"], "by name by default");
    assert_eq!(listed("sort=gateway_id").await, ["GW-A", "GW-B", "GW-C"]);
    assert_eq!(listed("sort=gateway_id&order=desc").await, ["GW-C", "GW-B", "GW-A"]);
    assert_eq!(listed("sort=enabled&limit=1").await, ["GW-C"], "false before true");
    assert_eq!(listed("state=disabled").await, ["GW-C"]);
    assert!(listed("state=online").await.is_empty());
    for (query, field) in [
        ("sort=password_encrypted", "sort"),
        ("order=up", "order"),
        ("state=asleep", "state"),
    ] {
        let refused = s.call(GET, &format!("/api/gateways?{query}"), None).await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{query}");
        assert_eq!(refused.fields(), [field], "{query}");
    }
}

/// Admins act on a selection of gateways at once; each gateway on its own, the answer
/// saying which were done and why the others were not (issue 13).
#[tokio::test]
async fn bulk_actions_apply_to_each_gateway_and_report_the_rest() {
    let s = TestServer::start().await;
    let factory = s.create_factory("Bulk plant").await;
    let factory = factory["id"].as_str().unwrap();
    let mut ids = Vec::new();
    for n in 0..3 {
        let created = s
            .call(
                POST,
                "/api/gateways",
                Some(gateway_body(factory, &format!("GW-BULK-{n}"), "Bulk")),
            )
            .await;
        ids.push(created.body["id"].as_str().unwrap().to_owned());
    }
    let missing = uuid::Uuid::new_v4().to_string();
    let body = json!({"action": "disable", "ids": [ids[0], ids[1], missing]});
    let disabled = s.call(POST, "/api/gateways/bulk", Some(body.clone())).await;
    assert_eq!(disabled.status, StatusCode::OK, "{}", disabled.text);
    assert_eq!(disabled.body["done"], json!([ids[0], ids[1]]));
    assert_eq!(disabled.body["failed"][0]["id"], missing);
    assert_eq!(disabled.body["failed"][0]["code"], "GATEWAY_NOT_FOUND");
    for (id, enabled) in [(&ids[0], false), (&ids[1], false), (&ids[2], true)] {
        let gateway = s.call(GET, &format!("/api/gateways/{id}"), None).await;
        assert_eq!(gateway.body["enabled"], enabled, "{id}");
    }
    let state = s.call(GET, &format!("/api/gateways/{}/status", ids[0]), None).await;
    assert_eq!(state.body["state"], "disabled");
    let enabled = s
        .call(
            POST,
            "/api/gateways/bulk",
            Some(json!({"action": "enable", "ids": [ids[0]]})),
        )
        .await;
    assert_eq!(enabled.body["done"], json!([ids[0]]));
    let viewer = s.viewer.clone();
    let refused = s.call_as(&viewer, POST, "/api/gateways/bulk", Some(body)).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let empty = s
        .call(
            POST,
            "/api/gateways/bulk",
            Some(json!({"action": "connect", "ids": []})),
        )
        .await;
    assert_eq!(empty.fields(), ["ids"]);
    let unknown = s
        .call(
            POST,
            "/api/gateways/bulk",
            Some(json!({"action": "reboot", "ids": [ids[2]]})),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST);
}

/// A gateway's uptime and disconnections come from its stored events, as computed by
/// hand: online from each `connected` until the next event, over the part of each
/// window the gateway existed.
#[tokio::test]
async fn gateway_health_is_computed_from_the_stored_events() {
    use chrono::{TimeDelta, Utc};
    let server = TestServer::start().await;
    let factory = server.create_factory("Health plant").await;
    let mut body = gateway_body(&id(&factory), "GW-HEALTH", "Health");
    body["enabled"] = json!(false); // no supervisor adds events of its own
    let gateway = server.call(POST, "/api/gateways", Some(body)).await;
    assert_eq!(gateway.status, StatusCode::CREATED, "{}", gateway.text);
    let gateway: uuid::Uuid = id(&gateway.body).parse().unwrap();
    let now = Utc::now();
    let history = |created: TimeDelta, events: Vec<(TimeDelta, &'static str)>| {
        let pool = server.store.pool().clone();
        async move {
            sqlx::query("UPDATE gateways SET created_at = $2 WHERE id = $1")
                .bind(gateway)
                .bind(now - created)
                .execute(&pool)
                .await
                .unwrap();
            sqlx::query("DELETE FROM gateway_events WHERE gateway_id = $1")
                .bind(gateway)
                .execute(&pool)
                .await
                .unwrap();
            for (ago, kind) in events {
                sqlx::query("INSERT INTO gateway_events (gateway_id, at, kind) VALUES ($1, $2, $3)")
                    .bind(gateway)
                    .bind(now - ago)
                    .bind(kind)
                    .execute(&pool)
                    .await
                    .unwrap();
            }
        }
    };
    let health = || async {
        let reply = server.call(GET, &format!("/api/gateways/{gateway}/health"), None).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
        reply.body
    };
    let close = |value: &Value, expected: f64| {
        let got = value.as_f64().unwrap_or(f64::NAN);
        assert!((got - expected).abs() < 0.01, "{got} is not {expected}");
    };
    let (h, d) = (TimeDelta::hours, TimeDelta::days);

    // Created 40 days ago: up 35→20 days ago, down until 10 days ago, up until 12 hours
    // ago, down for 6 hours, up since.
    history(
        d(40),
        vec![
            (d(35), "connected"),
            (d(20), "disconnected"),
            (d(10), "connected"),
            (h(12), "disconnected"),
            (h(6), "connected"),
        ],
    )
    .await;
    let health_now = health().await;
    close(&health_now["uptime_24h"], 18.0 / 24.0 * 100.0);
    close(&health_now["uptime_7d"], 6.75 / 7.0 * 100.0);
    close(&health_now["uptime_30d"], 19.75 / 30.0 * 100.0);
    assert_eq!(
        (
            &health_now["disconnections_24h"],
            &health_now["disconnections_7d"],
            &health_now["disconnections_30d"]
        ),
        (&json!(1), &json!(1), &json!(2))
    );
    let states: Vec<&str> = health_now["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["online", "offline", "online"]);

    // Created 2 hours ago and online for the last hour: half of its life, whatever the
    // window; before its first event the timeline does not know.
    history(h(2), vec![(h(1), "connected")]).await;
    let young = health().await;
    for window in ["uptime_24h", "uptime_7d", "uptime_30d"] {
        close(&young[window], 50.0);
    }
    let states: Vec<&str> = young["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["unknown", "online"]);

    let missing = server
        .call(GET, &format!("/api/gateways/{}/health", uuid::Uuid::new_v4()), None)
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}
