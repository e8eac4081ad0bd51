//! Browser sign-in, black box: the real server over HTTP. The session cookie is
//! accepted by the REST API with the same role rule as tokens; sign-in and
//! sign-out go through the web app's server functions, as a browser's would.

use crate::common::TestServer;
use domain::{Role, UserPassword};
use reqwest::header::{COOKIE, LOCATION, ORIGIN, SET_COOKIE};
use reqwest::{redirect, Client, StatusCode};
use serde_json::{json, Value};

const ADMIN_EMAIL: &str = "ada@example.com";
const VIEWER_EMAIL: &str = "vic@example.com";
const PASSWORD: &str = "correct horse battery";

struct Browser {
    base: String,
    http: Client,
}

/// What a request answered: status, the session cookie it set (if any), body.
struct Answer {
    status: StatusCode,
    set_cookie: Option<String>,
    location: Option<String>,
    body: Value,
}

impl Browser {
    fn new(server: &TestServer) -> Self {
        Self {
            base: server.base.clone(),
            // Redirects are checked, not followed.
            http: Client::builder().redirect(redirect::Policy::none()).build().unwrap(),
        }
    }

    async fn answer(response: reqwest::Response) -> Answer {
        let status = response.status();
        let set_cookie = response
            .headers()
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with("fm_session="))
            .map(str::to_owned);
        let location = response
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = response.json().await.unwrap_or(Value::Null);
        Answer {
            status,
            set_cookie,
            location,
            body,
        }
    }

    async fn sign_in(&self, email: &str, password: &str, cookie: Option<&str>) -> Answer {
        let mut request = self.http.post(format!("{}/rpc/sign_in", self.base)).form(&[
            ("email", email),
            ("password", password),
            ("next", "/gateways"),
        ]);
        if let Some(cookie) = cookie {
            request = request.header(COOKIE, cookie);
        }
        Self::answer(request.send().await.unwrap()).await
    }

    /// Signs in and returns the `fm_session=…` pair to send back.
    async fn session(&self, email: &str) -> String {
        let answer = self.sign_in(email, PASSWORD, None).await;
        assert!(
            answer.status.is_success() || answer.status.is_redirection(),
            "sign-in: {}",
            answer.status
        );
        cookie_pair(&answer.set_cookie.expect("sign-in sets the session cookie"))
    }

    async fn get(&self, path: &str, cookie: Option<&str>) -> Answer {
        let mut request = self.http.get(format!("{}{path}", self.base));
        if let Some(cookie) = cookie {
            request = request.header(COOKIE, cookie);
        }
        Self::answer(request.send().await.unwrap()).await
    }

    async fn post_json(&self, path: &str, cookie: &str, origin: Option<&str>, body: Value) -> Answer {
        let mut request = self
            .http
            .post(format!("{}{path}", self.base))
            .header(COOKIE, cookie)
            .json(&body);
        if let Some(origin) = origin {
            request = request.header(ORIGIN, origin);
        }
        Self::answer(request.send().await.unwrap()).await
    }

    async fn post_form(&self, path: &str, cookie: &str, form: &[(&str, &str)]) -> Answer {
        let request = self
            .http
            .post(format!("{}{path}", self.base))
            .header(COOKIE, cookie)
            .header(ORIGIN, &self.base)
            .form(form);
        Self::answer(request.send().await.unwrap()).await
    }
}

fn cookie_pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().to_owned()
}

async fn server_with_users() -> (TestServer, Browser) {
    let server = TestServer::start().await;
    for (email, role) in [(ADMIN_EMAIL, Role::Admin), (VIEWER_EMAIL, Role::Viewer)] {
        server
            .store
            .create_user(email, &UserPassword::new(PASSWORD), role)
            .await
            .unwrap();
    }
    let browser = Browser::new(&server);
    (server, browser)
}

#[tokio::test]
async fn the_session_cookie_is_http_only_same_site_lax_and_not_secure_on_http() {
    let (_server, browser) = server_with_users().await;
    let answer = browser.sign_in(ADMIN_EMAIL, PASSWORD, None).await;
    let cookie = answer.set_cookie.expect("a session cookie");
    let attributes: Vec<String> = cookie.split(';').map(|a| a.trim().to_ascii_lowercase()).collect();
    assert!(attributes.contains(&"httponly".to_owned()), "{cookie}");
    assert!(attributes.contains(&"samesite=lax".to_owned()), "{cookie}");
    assert!(attributes.contains(&"path=/".to_owned()), "{cookie}");
    assert!(
        !attributes.contains(&"secure".to_owned()),
        "COOKIE_SECURE defaults to false: {cookie}"
    );
    assert!(
        attributes.iter().any(|a| a.starts_with("max-age=")),
        "idle expiry: {cookie}"
    );
}

#[tokio::test]
async fn an_admin_session_reads_and_writes_the_api() {
    let (_server, browser) = server_with_users().await;
    let cookie = browser.session(ADMIN_EMAIL).await;
    assert_eq!(
        browser.get("/api/factories", Some(&cookie)).await.status,
        StatusCode::OK
    );
    let created = browser
        .post_json("/api/factories", &cookie, None, json!({"name": "Session Plant"}))
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
}

#[tokio::test]
async fn a_viewer_session_only_reads() {
    let (_server, browser) = server_with_users().await;
    let cookie = browser.session(VIEWER_EMAIL).await;
    assert_eq!(
        browser.get("/api/factories", Some(&cookie)).await.status,
        StatusCode::OK
    );
    let refused = browser
        .post_json("/api/factories", &cookie, None, json!({"name": "Nope"}))
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(refused.body["error"]["code"], "FORBIDDEN");
}

#[tokio::test]
async fn a_viewer_calling_an_admin_server_function_directly_is_refused() {
    let (server, browser) = server_with_users().await;
    let cookie = browser.session(VIEWER_EMAIL).await;
    let refused = browser
        .post_form(
            "/rpc/create_factory",
            &cookie,
            &[("name", "Sneaky"), ("location", ""), ("timezone", "UTC")],
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(refused.body["code"], "FORBIDDEN");
    let users = browser.post_form("/rpc/list_users", &cookie, &[]).await;
    assert_eq!(users.status, StatusCode::FORBIDDEN);
    let factories = server.store.list_factories(Default::default(), None).await.unwrap();
    assert_eq!(factories.pagination.total, 0, "nothing was created");
}

#[tokio::test]
async fn without_or_with_a_bad_cookie_the_api_answers_401() {
    let (_server, browser) = server_with_users().await;
    assert_eq!(
        browser.get("/api/factories", None).await.status,
        StatusCode::UNAUTHORIZED
    );
    let forged = browser.get("/api/factories", Some("fm_session=forged")).await;
    assert_eq!(forged.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_wrong_password_and_an_unknown_user_get_the_same_answer() {
    let (_server, browser) = server_with_users().await;
    let wrong = browser.sign_in(ADMIN_EMAIL, "wrong password", None).await;
    let unknown = browser.sign_in("nobody@example.com", PASSWORD, None).await;
    assert_eq!(wrong.status, unknown.status);
    assert_eq!(wrong.body, unknown.body);
    assert_eq!(wrong.body["message"], domain::auth::SIGN_IN_FAILED);
    assert!(wrong.set_cookie.is_none() && unknown.set_cookie.is_none());
}

#[tokio::test]
async fn repeated_failures_throttle_the_account_even_with_the_right_password() {
    let (_server, browser) = server_with_users().await;
    for _ in 0..5 {
        browser.sign_in(VIEWER_EMAIL, "wrong password", None).await;
    }
    let throttled = browser.sign_in(VIEWER_EMAIL, PASSWORD, None).await;
    assert!(throttled.set_cookie.is_none());
    assert!(
        throttled.body["message"]
            .as_str()
            .unwrap()
            .contains("Too many failed sign-in attempts"),
        "{}",
        throttled.body
    );
    // Another account is not affected.
    assert!(browser.sign_in(ADMIN_EMAIL, PASSWORD, None).await.set_cookie.is_some());
}

/// Attempts are counted before the password is checked, in PostgreSQL: a burst of
/// parallel guesses gets no more checks than the limit, and a second server sharing
/// the database counts the same attempts.
#[tokio::test]
async fn parallel_guesses_get_no_more_checks_than_the_limit_on_any_instance() {
    let (server, browser) = server_with_users().await;
    let guesses = (0..40).map(|n| {
        let browser = &browser;
        async move { browser.sign_in(VIEWER_EMAIL, &format!("guess number {n}"), None).await }
    });
    let answers = futures_util::future::join_all(guesses).await;
    let checked = answers
        .iter()
        .filter(|a| a.body["message"] == domain::auth::SIGN_IN_FAILED)
        .count();
    assert_eq!(checked, 5, "only the first five were checked");
    let other = TestServer::start_with(server.store.clone(), crate::common::test_orchestrator_config()).await;
    let elsewhere = Browser::new(&other).sign_in(VIEWER_EMAIL, PASSWORD, None).await;
    assert!(elsewhere.set_cookie.is_none(), "throttled on the other instance too");
    assert!(elsewhere.body["message"]
        .as_str()
        .unwrap()
        .contains("Too many failed sign-in attempts"));
}

/// An address is limited in failures, not in sign-ins: people behind one proxy can all
/// sign in (the address limit is 20).
#[tokio::test]
async fn successful_sign_ins_from_one_address_are_not_throttled() {
    let (_server, browser) = server_with_users().await;
    for n in 0..21 {
        let answer = browser.sign_in(ADMIN_EMAIL, PASSWORD, None).await;
        assert!(answer.set_cookie.is_some(), "sign-in {n}: {}", answer.body);
    }
}

#[tokio::test]
async fn signing_in_gives_a_new_session_id_and_the_old_one_stops_working() {
    let (_server, browser) = server_with_users().await;
    let first = browser.session(VIEWER_EMAIL).await;
    let again = browser.sign_in(ADMIN_EMAIL, PASSWORD, Some(&first)).await;
    let second = cookie_pair(&again.set_cookie.expect("a new cookie"));
    assert_ne!(first, second);
    assert_eq!(
        browser.get("/api/factories", Some(&first)).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        browser.get("/api/factories", Some(&second)).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn signing_out_ends_the_session_on_the_server() {
    let (_server, browser) = server_with_users().await;
    let cookie = browser.session(ADMIN_EMAIL).await;
    let out = browser.post_form("/rpc/sign_out", &cookie, &[]).await;
    assert!(out.status.is_success() || out.status.is_redirection(), "{}", out.status);
    // Replaying the old cookie does not work: the record is gone.
    assert_eq!(
        browser.get("/api/factories", Some(&cookie)).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn disabling_a_user_ends_their_session_at_once() {
    let (server, browser) = server_with_users().await;
    let cookie = browser.session(VIEWER_EMAIL).await;
    let viewer = server
        .store
        .list_users()
        .await
        .unwrap()
        .into_iter()
        .find(|u| u.email == VIEWER_EMAIL)
        .unwrap();
    server.store.disable_user(None, viewer.id).await.unwrap();
    assert_eq!(
        browser.get("/api/factories", Some(&cookie)).await.status,
        StatusCode::UNAUTHORIZED
    );
    let again = browser.sign_in(VIEWER_EMAIL, PASSWORD, None).await;
    assert!(again.set_cookie.is_none(), "a disabled user cannot sign in");
}

#[tokio::test]
async fn cross_site_posts_carrying_the_cookie_are_refused() {
    let (server, browser) = server_with_users().await;
    let cookie = browser.session(ADMIN_EMAIL).await;
    let refused = browser
        .post_json(
            "/api/factories",
            &cookie,
            Some("https://evil.example"),
            json!({"name": "Forged"}),
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let same_site = browser
        .post_json("/api/factories", &cookie, Some(&server.base), json!({"name": "Mine"}))
        .await;
    assert_eq!(same_site.status, StatusCode::CREATED);
}

#[tokio::test]
async fn pages_send_signed_out_visitors_to_the_sign_in_page() {
    let (_server, browser) = server_with_users().await;
    let away = browser.get("/gateways?factory=x&page=2", None).await;
    assert_eq!(away.status, StatusCode::SEE_OTHER);
    assert_eq!(
        away.location.as_deref(),
        Some("/login?next=%2Fgateways%3Ffactory%3Dx%26page%3D2")
    );
    assert_eq!(browser.get("/login", None).await.status, StatusCode::OK);
    let cookie = browser.session(VIEWER_EMAIL).await;
    assert_eq!(browser.get("/gateways", Some(&cookie)).await.status, StatusCode::OK);
}

#[tokio::test]
async fn the_first_start_creates_one_administrator_and_only_once() {
    let store = crate::common::fresh_store().await;
    let password = factory_monitor::sessions::ensure_initial_admin(&store, None)
        .await
        .unwrap()
        .expect("a password to print");
    assert!(password.len() >= 20, "random and long: {} characters", password.len());
    let admin = store
        .authenticate_user(
            factory_monitor::sessions::INITIAL_ADMIN_EMAIL,
            &UserPassword::new(password),
        )
        .await
        .unwrap()
        .expect("the printed password signs in");
    assert_eq!(admin.role, Role::Admin);
    assert!(
        admin.must_change_password,
        "the printed password is a one-time password"
    );
    let again = factory_monitor::sessions::ensure_initial_admin(&store, Some("ignored-password".into()))
        .await
        .unwrap();
    assert!(again.is_none(), "users exist: nothing is created or printed");
    assert_eq!(store.count_users().await.unwrap(), 1);
}

#[tokio::test]
async fn user_create_reads_the_password_from_stdin() {
    use std::io::Write;
    // A database of its own, whose URL the command line gets too.
    let base = std::env::var("DATABASE_URL").expect("DATABASE_URL (make test starts one)");
    let (prefix, _) = base.rsplit_once('/').unwrap();
    let url = format!("{prefix}/t_{}", uuid::Uuid::new_v4().simple());
    let pool = store::connect(&url, 2).await.unwrap();
    let store = store::Store::new(pool, store::KeyRing::new(store::EncryptionKey::generate().0, vec![]));
    store.migrate().await.unwrap();
    let run = |email: &str, input: &str| {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_factory-monitor"))
            .args(["user", "create", "--email", email, "--role", "viewer"])
            .env("DATABASE_URL", &url)
            .env("DATA_DIR", std::env::temp_dir())
            .env("ENCRYPTION_KEY", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    };
    let created = run("cli@example.com", "a password from stdin\n");
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    assert!(String::from_utf8_lossy(&created.stdout).contains("created viewer user cli@example.com"));
    assert!(store
        .authenticate_user("cli@example.com", &UserPassword::new("a password from stdin"))
        .await
        .unwrap()
        .is_some());
    let short = run("short@example.com", "short\n");
    assert!(!short.status.success());
    assert!(String::from_utf8_lossy(&short.stderr).contains("password: must be at least 8 characters"));
    let common = run("common@example.com", "Password123\n");
    assert!(!common.status.success(), "a common password is refused");
    assert!(
        String::from_utf8_lossy(&common.stderr).contains(domain::auth::COMMON_PASSWORD_MESSAGE),
        "{}",
        String::from_utf8_lossy(&common.stderr)
    );
}

#[tokio::test]
async fn forms_refuse_common_passwords() {
    let (_server, browser) = server_with_users().await;
    let cookie = browser.session(ADMIN_EMAIL).await;
    let refused = browser
        .post_form(
            "/rpc/create_user",
            &cookie,
            &[
                ("email", "new@example.com"),
                ("password", "iloveyou"),
                ("role", "viewer"),
            ],
        )
        .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.body);
    assert_eq!(refused.body["details"][0]["field"], "password");
    assert_eq!(
        refused.body["details"][0]["message"],
        domain::auth::COMMON_PASSWORD_MESSAGE
    );
}

#[tokio::test]
async fn a_user_changes_their_own_password_and_their_other_sessions_end() {
    let (server, browser) = server_with_users().await;
    let here = browser.session(VIEWER_EMAIL).await;
    let elsewhere = browser.session(VIEWER_EMAIL).await;
    let admin = browser.session(ADMIN_EMAIL).await;
    let wrong = browser
        .post_form(
            "/rpc/change_password",
            &here,
            &[
                ("current_password", "not my password"),
                ("new_password", "a brand new secret"),
            ],
        )
        .await;
    assert_eq!(wrong.status, StatusCode::BAD_REQUEST, "{}", wrong.body);
    assert_eq!(wrong.body["details"][0]["field"], "current_password");
    let common = browser
        .post_form(
            "/rpc/change_password",
            &here,
            &[("current_password", PASSWORD), ("new_password", "baseball")],
        )
        .await;
    assert_eq!(common.body["details"][0]["field"], "new_password", "{}", common.body);
    let changed = browser
        .post_form(
            "/rpc/change_password",
            &here,
            &[("current_password", PASSWORD), ("new_password", "a brand new secret")],
        )
        .await;
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.body);
    let renewed = cookie_pair(&changed.set_cookie.expect("a new session id after the change"));
    assert_ne!(renewed, here);
    assert_eq!(
        browser.get("/api/factories", Some(&renewed)).await.status,
        StatusCode::OK
    );
    assert_eq!(
        browser.get("/api/factories", Some(&elsewhere)).await.status,
        StatusCode::UNAUTHORIZED,
        "the other session ended"
    );
    assert_eq!(
        browser.get("/api/factories", Some(&admin)).await.status,
        StatusCode::OK,
        "other users' sessions stay"
    );
    let old = server
        .store
        .authenticate_user(VIEWER_EMAIL, &UserPassword::new(PASSWORD))
        .await
        .unwrap();
    assert!(old.is_none(), "the old password no longer signs in");
    assert!(browser
        .sign_in(VIEWER_EMAIL, "a brand new secret", None)
        .await
        .set_cookie
        .is_some());
}

/// The first administrator's printed password works once: until its owner chooses their
/// own, every page leads to the account page and the API refuses the session.
#[tokio::test]
async fn a_one_time_password_must_be_changed_at_first_sign_in() {
    let server = TestServer::start().await;
    let printed = factory_monitor::sessions::ensure_initial_admin(&server.store, None)
        .await
        .unwrap()
        .expect("a printed password");
    let admin = factory_monitor::sessions::INITIAL_ADMIN_EMAIL;
    let browser = Browser::new(&server);
    let signed_in = browser.sign_in(admin, &printed, None).await;
    let cookie = cookie_pair(&signed_in.set_cookie.expect("the one-time password signs in"));
    let page = browser.get("/gateways", Some(&cookie)).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(page.location.as_deref(), Some("/account"));
    assert_eq!(browser.get("/account", Some(&cookie)).await.status, StatusCode::OK);
    let api = browser.get("/api/factories", Some(&cookie)).await;
    assert_eq!(api.status, StatusCode::FORBIDDEN, "{}", api.body);
    let rpc = browser
        .post_form(
            "/rpc/create_factory",
            &cookie,
            &[("name", "Early"), ("location", ""), ("timezone", "UTC")],
        )
        .await;
    assert_eq!(rpc.status, StatusCode::FORBIDDEN, "{}", rpc.body);
    let changed = browser
        .post_form(
            "/rpc/change_password",
            &cookie,
            &[("current_password", &printed), ("new_password", "my own admin secret")],
        )
        .await;
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.body);
    let cookie = cookie_pair(&changed.set_cookie.expect("a new session id"));
    assert_eq!(browser.get("/gateways", Some(&cookie)).await.status, StatusCode::OK);
    assert_eq!(
        browser.get("/api/factories", Some(&cookie)).await.status,
        StatusCode::OK
    );
}

/// A given first password (tests, demos) is not a one-time one.
#[tokio::test]
async fn a_configured_first_password_need_not_be_changed() {
    let store = crate::common::fresh_store().await;
    factory_monitor::sessions::ensure_initial_admin(&store, Some("configured admin secret".into()))
        .await
        .unwrap();
    let admin = store
        .authenticate_user(
            factory_monitor::sessions::INITIAL_ADMIN_EMAIL,
            &UserPassword::new("configured admin secret"),
        )
        .await
        .unwrap()
        .unwrap();
    assert!(!admin.must_change_password);
}

#[tokio::test]
async fn use_moves_the_idle_expiry_forward() {
    let (server, browser) = server_with_users().await;
    let cookie = browser.session(ADMIN_EMAIL).await;
    let expires_at = || async {
        sqlx::query_scalar::<_, chrono::DateTime<chrono::Utc>>("SELECT max(expires_at) FROM sessions")
            .fetch_one(server.store.pool())
            .await
            .unwrap()
    };
    // As if the session had been idle for an hour.
    sqlx::query("UPDATE sessions SET expires_at = expires_at - interval '1 hour'")
        .execute(server.store.pool())
        .await
        .unwrap();
    let before = expires_at().await;
    let answer = browser.get("/api/factories", Some(&cookie)).await;
    assert_eq!(answer.status, StatusCode::OK);
    let after = expires_at().await;
    assert!(after - before > chrono::Duration::minutes(59), "{before} -> {after}");
    assert!(answer.set_cookie.is_some(), "the cookie's max-age is renewed too");
}

#[tokio::test]
async fn an_administrator_cannot_lock_themselves_out() {
    let (server, browser) = server_with_users().await;
    let cookie = browser.session(ADMIN_EMAIL).await;
    let me = server
        .store
        .list_users()
        .await
        .unwrap()
        .into_iter()
        .find(|u| u.email == ADMIN_EMAIL)
        .unwrap();
    let id = me.id.to_string();
    let disable = browser
        .post_form("/rpc/set_user_disabled", &cookie, &[("id", &id), ("disabled", "true")])
        .await;
    assert_eq!(disable.status, StatusCode::FORBIDDEN);
    let demote = browser
        .post_form("/rpc/set_user_role", &cookie, &[("id", &id), ("role", "viewer")])
        .await;
    assert_eq!(demote.status, StatusCode::FORBIDDEN);
    let still = server.store.get_user(me.id).await.unwrap().unwrap();
    assert_eq!((still.role, still.disabled_at), (Role::Admin, None));
}
