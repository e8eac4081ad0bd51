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

/// The status page groups gateways by factory: it must know every factory (it
/// once asked for the first 100 only, hiding the gateways of the others), and
/// it leaves out the sensor lists it does not show.
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
    let answer = server
        .request(reqwest::Method::POST, "/rpc/fleet_view")
        .header("accept", "application/json")
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), reqwest::StatusCode::OK);
    let data: Value = answer.json().await.unwrap();
    let factories = data["factories"].as_array().unwrap();
    assert_eq!(factories.len(), 102);
    assert!(factories.iter().any(|f| f[0] == last["id"] && f[1] == "Zulu plant"));
    let gateways = data["gateways"].as_array().unwrap();
    let zulu = gateways
        .iter()
        .find(|g| g["gateway_id"] == "GW-Z")
        .expect("the gateway is listed");
    assert_eq!(zulu["factory_id"], last["id"]);
    assert_eq!(zulu["sensors"], json!([]));
}

/// Administrators see the server instances sharing the fleet on the status page;
/// viewers do not.
#[tokio::test]
async fn the_status_page_lists_the_instances_for_administrators() {
    let server = TestServer::start().await;
    let fleet_view = |cookie: String| {
        let request = server
            .request(reqwest::Method::POST, "/rpc/fleet_view")
            .header("accept", "application/json")
            .header("cookie", cookie);
        async move { request.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let admin = signed_in_as(&server, "root@example.com", domain::Role::Admin).await;
    let data = fleet_view(admin.clone()).await;
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
    assert_eq!(fleet_view(viewer).await["instances"], json!([]));
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
