//! Page responses over HTTP: headers that the browser needs to run the app.

mod common;

use common::TestServer;
use reqwest::header::{CONTENT_SECURITY_POLICY, CONTENT_TYPE};

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
    let password = domain::Password::new("correct horse battery");
    server
        .store
        .create_user("ada@example.com", &password, domain::Role::Viewer)
        .await
        .unwrap();
    let signed_in = server
        .request(reqwest::Method::POST, "/rpc/sign_in")
        .header("accept", "application/json")
        .form(&[("email", "ada@example.com"), ("password", "correct horse battery")])
        .send()
        .await
        .unwrap();
    assert!(signed_in.status().is_success(), "{}", signed_in.status());
    let cookie = signed_in.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
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
