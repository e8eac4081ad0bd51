//! Page responses over HTTP: headers that the browser needs to run the app.

use crate::common::TestServer;
use reqwest::header::{CONTENT_SECURITY_POLICY, CONTENT_TYPE};
use serde_json::{json, Value};

/// A session cookie of a freshly created viewer.
async fn signed_in(server: &TestServer) -> String {
    signed_in_as(server, "ada@example.com", domain::Role::Viewer).await
}

async fn signed_in_as(server: &TestServer, email: &str, role: domain::Role) -> String {
    let password = domain::UserPassword::new("correct horse battery");
    server.store.create_user(email, &password, role).await.unwrap();
    let answer = server
        .request(reqwest::Method::POST, "/rpc/sign_in")
        .header("accept", "application/json")
        .form(&[("email", email), ("password", "correct horse battery")])
        .send()
        .await
        .unwrap();
    assert!(answer.status().is_success(), "{}", answer.status());
    answer.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned()
}

/// Every page carries its own CSP (with the script nonce), however many site
/// files are fetched at the same time. leptos_axum's static-file handler used
/// to take the headers of a page rendered beside it, leaving the page with the
/// API's `default-src 'none'`, which blocks the app's scripts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_keep_their_csp_while_site_files_are_served() {
    let server = TestServer::start().await;
    let get = |path: &'static str| {
        let request = server.request(reqwest::Method::GET, path);
        async move { request.send().await.expect("request") }
    };
    for _ in 0..30 {
        let page = get("/login");
        let files = futures_util::future::join_all((0..6).map(|_| get("/pkg/factory-monitor.js")));
        let (page, files) = tokio::join!(page, files);
        let csp = page.headers()[CONTENT_SECURITY_POLICY].to_str().unwrap().to_owned();
        assert!(csp.contains("'nonce-"), "the page lost its CSP: {csp}");
        for file in files {
            assert_eq!(file.status(), reqwest::StatusCode::OK, "site files are served");
            assert!(file.headers()[CONTENT_TYPE].to_str().unwrap().contains("javascript"));
        }
    }
    // Signed in, an unknown path is the app's 404 page (signed out, it is /login).
    let cookie = signed_in(&server).await;
    let missing = server
        .request(reqwest::Method::GET, "/no-such-page")
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), reqwest::StatusCode::NOT_FOUND);
    assert!(missing.headers()[CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap()
        .contains("'nonce-"));
    assert!(missing.text().await.unwrap().contains("Page not found"));
}

/// The status page lists every factory with its counts (it once asked for the first
/// 100 only, hiding the others), and rows without the sensor lists it does not show.
#[tokio::test]
async fn the_status_page_data_covers_every_factory() {
    let server = TestServer::start().await;
    for n in 0..101 {
        server.create_factory(&format!("Plant {n:03}")).await;
    }
    let last = server.create_factory("Zulu plant").await;
    let gateway = server
        .call(
            reqwest::Method::POST,
            "/api/gateways",
            Some(
                json!({"factory_id": last["id"], "gateway_id": "GW-Z", "name": "Zulu gateway",
                "url": "ws://127.0.0.1:9", "email": "a@b.example", "password": "pw"}),
            ),
        )
        .await;
    assert_eq!(gateway.status, reqwest::StatusCode::CREATED);
    let cookie = signed_in(&server).await;
    let data = status_view(&server, &cookie, None).await;
    let factories = data["factories"].as_array().unwrap();
    assert_eq!(factories.len(), 102);
    assert!(factories.iter().any(|f| f[0] == last["id"] && f[1] == "Zulu plant"));
    // A fleet this small opens every factory (at most 20) until the viewer chooses.
    assert_eq!(data["open"].as_array().unwrap().len(), 20);
    let zulu = status_view(&server, &cookie, Some(last["id"].as_str().unwrap())).await;
    assert_eq!(zulu["open"], json!([last["id"]]));
    let rows = &zulu["rows"][0];
    assert_eq!(rows["total"], 1);
    let record = &rows["gateways"][0];
    assert_eq!(record["gateway_id"], "GW-Z");
    assert_eq!(record["factory_id"], last["id"]);
    assert_eq!(record["sensors"], json!([]));
    assert_eq!(zulu["summary"]["total"], 1);
}

/// The status page's server function, as the page calls it.
async fn status_view(server: &TestServer, cookie: &str, open: Option<&str>) -> Value {
    let form: Vec<(&str, &str)> = open.map(|o| vec![("open", o)]).unwrap_or_default();
    let answer = server
        .request(reqwest::Method::POST, "/rpc/status_view")
        .header("accept", "application/json")
        .header("cookie", cookie)
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), reqwest::StatusCode::OK);
    answer.json().await.unwrap()
}

/// With 10,000 gateways the status page shows the counts, what needs attention (at
/// most 100 rows, saying how many more) and one line per factory: never every
/// gateway. Its size is a budget: 150 KB compressed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_stays_small_with_ten_thousand_gateways() {
    let _heavy = crate::common::HEAVY.lock().await;
    const FACTORIES: usize = 100;
    const ENABLED: usize = 150;
    const DISABLED: i32 = 10_000 - ENABLED as i32;
    let store = crate::common::fresh_store().await;
    let organization: uuid::Uuid =
        sqlx::query_scalar("SELECT id FROM organizations WHERE deleted_at IS NULL ORDER BY created_at LIMIT 1")
            .fetch_one(store.pool())
            .await
            .unwrap();
    let factories: Vec<uuid::Uuid> = sqlx::query_scalar(
        "INSERT INTO factories (organization_id, name) SELECT $1, 'Plant ' || lpad(n::text, 3, '0')
         FROM generate_series(1, $2) AS n RETURNING id",
    )
    .bind(organization)
    .bind(FACTORIES as i32)
    .fetch_all(store.pool())
    .await
    .unwrap();
    // Enabled ones (to a closed port: they retry, so they need attention)...
    for n in 0..ENABLED {
        let input: domain::GatewayInput = serde_json::from_value(crate::common::gateway_body(
            &factories[n % FACTORIES].to_string(),
            &format!("GW-ON-{n:05}"),
            &format!("Retrying {n:05}"),
        ))
        .unwrap();
        store.create_gateway(input.validate().unwrap()).await.unwrap();
    }
    // ...and the rest disabled, written at once (never connected, so their
    // ciphertext, borrowed from another row, is never opened).
    sqlx::query(
        "INSERT INTO gateways (factory_id, gateway_id, name, url, email, password_encrypted, enabled)
         SELECT ($1::uuid[])[1 + n % array_length($1::uuid[], 1)], 'GW-OFF-' || n, 'Parked ' || n,
                'ws://127.0.0.1:9', 'a@b.example', (SELECT password_encrypted FROM gateways LIMIT 1), false
         FROM generate_series(1, $2) AS n",
    )
    .bind(&factories)
    .bind(DISABLED)
    .execute(store.pool())
    .await
    .unwrap();
    let server = TestServer::start_with(store, crate::common::test_orchestrator_config()).await;
    let cookie = signed_in(&server).await;
    let data = status_view(&server, &cookie, None).await;
    assert_eq!(data["summary"]["total"], 10_000);
    assert_eq!(data["summary"]["states"]["disabled"], DISABLED);
    assert_eq!(
        data["attention_total"], ENABLED,
        "every enabled gateway is retrying or connecting"
    );
    assert_eq!(data["attention"].as_array().unwrap().len(), 100);
    assert_eq!(data["open"], json!([]), "a large fleet opens no factory by itself");
    assert_eq!(data["summary"]["factories"].as_array().unwrap().len(), FACTORIES);

    let page = |path: String, gzip: bool| {
        let mut request = server.request(reqwest::Method::GET, &path).header("cookie", &cookie);
        if gzip {
            request = request.header("accept-encoding", "gzip");
        }
        async move {
            let answer = request.send().await.unwrap();
            assert_eq!(answer.status(), reqwest::StatusCode::OK);
            answer.bytes().await.unwrap()
        }
    };
    let html = String::from_utf8(page("/".into(), false).await.to_vec()).unwrap();
    assert_eq!(
        html.matches("<tr data-gateway=").count(),
        100,
        "the attention list only"
    );
    assert_eq!(html.matches("data-factory=").count(), FACTORIES, "one card per factory");
    assert!(
        html.contains("Showing 100 of 150"),
        "it says how many more need attention"
    );
    let compressed = page("/".into(), true).await.len();
    assert!(
        compressed <= 150 * 1024,
        "the page is {compressed} bytes compressed, over its 150 KB budget"
    );

    // A factory expanded from the URL shows its rows (100 of them here), and only its.
    let opened = String::from_utf8(page(format!("/?open={}", factories[0]), false).await.to_vec()).unwrap();
    let table = opened
        .split("aria-label=\"Gateways of Plant 001\"")
        .nth(1)
        .expect("the factory's table");
    let rows = table
        .split("</table>")
        .next()
        .unwrap()
        .matches("<tr data-gateway=")
        .count();
    assert_eq!(rows, 100, "Plant 001 holds 100 gateways");
}

/// Administrators see the server instances sharing the fleet on the status page;
/// viewers do not.
#[tokio::test]
async fn the_status_page_lists_the_instances_for_administrators() {
    let server = TestServer::start().await;
    let admin = signed_in_as(&server, "root@example.com", domain::Role::Admin).await;
    let data = status_view(&server, &admin, None).await;
    let instances = data["instances"].as_array().unwrap();
    assert_eq!(instances.len(), 1, "{data}");
    assert_eq!(instances[0]["address"], "");
    assert!(instances[0]["id"].is_string() && instances[0]["gateways"] == 0);
    let page = server
        .request(reqwest::Method::GET, "/")
        .header("cookie", admin)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("id=\"instances-title\""), "the section is rendered");
    let viewer = signed_in(&server).await;
    assert_eq!(status_view(&server, &viewer, None).await["instances"], json!([]));
}

/// Pages and API answers may show what only a signed-in user may see: browsers and
/// proxies must not store them. Site files may be cached.
#[tokio::test]
async fn pages_and_api_answers_are_not_stored_site_files_may_be() {
    let server = TestServer::start().await;
    let api = server.call(reqwest::Method::GET, "/api/factories", None).await;
    assert_eq!(api.headers["cache-control"], "no-store");
    let cookie = signed_in(&server).await;
    let page = server
        .request(reqwest::Method::GET, "/")
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(page.headers()["cache-control"], "no-store");
    let file = server
        .request(reqwest::Method::GET, "/pkg/factory-monitor.js")
        .send()
        .await
        .unwrap();
    if file.status().is_success() {
        assert!(file.headers().get("cache-control").is_none_or(|v| v != "no-store"));
    }
}

/// A refused plain form post comes back with its message and the fields as typed, bound
/// to the posting browser by a cookie; a crafted link with the same parameters shows
/// neither the message nor the values (finding 6 and 8 of the security review).
#[tokio::test]
async fn only_the_browser_that_posted_a_refused_form_sees_its_message_and_values() {
    let server = TestServer::start().await;
    let cookie = signed_in_as(&server, "root@example.com", domain::Role::Admin).await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let refused = http
        .post(format!("{}/rpc/create_factory", server.base))
        .header("accept", "text/html")
        .header("origin", &server.base)
        .header("cookie", &cookie)
        .form(&[
            ("name", "Typed plant"),
            ("location", "Hall 9"),
            ("timezone", "Mars/Olympus_Mons"),
        ])
        .send()
        .await
        .unwrap();
    assert!(refused.status().is_redirection(), "{}", refused.status());
    let location = refused.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with("/factories?error="), "{location}");
    let binding = refused
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("fm_refused_form="))
        .expect("the refusal sets its cookie")
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let page = |path: String, cookies: String| {
        let request = http.get(format!("{}{path}", server.base)).header("cookie", cookies);
        async move { request.send().await.unwrap().text().await.unwrap() }
    };
    let answered = page(location.clone(), format!("{cookie}; {binding}")).await;
    assert!(answered.contains("must be an IANA time zone"), "the message is shown");
    assert!(answered.contains("value=\"Typed plant\""), "the form is filled in");
    let crafted = page(location.clone(), cookie.clone()).await;
    assert!(!crafted.contains("must be an IANA time zone"), "no cookie: no message");
    assert!(!crafted.contains("value=\"Typed plant\""), "no cookie: no values");
    let forged = page(
        "/factories?error=Your%20account%20is%20locked%3A%20call%20555&form.nonce=guess&form.name=Evil".into(),
        format!("{cookie}; fm_refused_form=other"),
    )
    .await;
    assert!(!forged.contains("Your account is locked") && !forged.contains("value=\"Evil\""));
}

/// Pages, JSON and site files go compressed as the client accepts (brotli before gzip),
/// as they are when it accepts nothing; event streams never (each event must leave at once).
#[tokio::test]
async fn answers_are_compressed_as_the_client_accepts() {
    let server = TestServer::start().await;
    let cookie = signed_in(&server).await;
    let encoding = |path: &'static str, accept: &'static str| {
        let request = server
            .request(reqwest::Method::GET, path)
            .header("cookie", cookie.clone())
            .header("accept-encoding", accept);
        async move {
            let answer = request.send().await.unwrap();
            assert!(answer.status().is_success(), "{path}: {}", answer.status());
            let encoding = answer
                .headers()
                .get("content-encoding")
                .map(|v| v.to_str().unwrap().to_owned());
            (encoding, answer.bytes().await.unwrap().len())
        }
    };
    for path in ["/", "/api/factories?limit=100", "/pkg/factory-monitor.wasm"] {
        let (plain, plain_size) = encoding(path, "identity").await;
        assert_eq!(plain, None, "{path}");
        let (br, br_size) = encoding(path, "gzip, deflate, br").await;
        assert_eq!(br.as_deref(), Some("br"), "{path}");
        let (gzip, _) = encoding(path, "gzip").await;
        assert_eq!(gzip.as_deref(), Some("gzip"), "{path}");
        if path.ends_with(".wasm") {
            assert!(br_size * 2 < plain_size, "{path}: {br_size} of {plain_size} bytes");
        }
    }
    let events = server
        .request(reqwest::Method::GET, "/api/events")
        .bearer_auth(&server.admin)
        .header("accept-encoding", "gzip, br")
        .send()
        .await
        .unwrap();
    assert_eq!(events.status(), reqwest::StatusCode::OK);
    assert!(
        events.headers().get("content-encoding").is_none(),
        "event streams go as they are"
    );
}
