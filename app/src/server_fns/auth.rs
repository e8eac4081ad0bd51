//! Sign-in, sign-out and who is signed in.

use domain::{AppError, User};
use leptos::server;

#[cfg(feature = "ssr")]
use crate::ssr;

/// A path on this site to return to after signing in; anything else (another
/// host, `//evil.example`, a backslash trick) becomes `/`.
pub fn safe_next(next: Option<&str>) -> String {
    // Any origin will do: only whether `next` stays on it matters.
    const SITE: &str = "http://site.invalid/";
    let Some(path) = next else { return "/".to_owned() };
    // Browsers drop tabs and newlines from URLs and read `\` as `/`: "/\t/evil.example"
    // would become "//evil.example", another site.
    if !path.starts_with('/') || path.chars().any(|c| c.is_control() || c == '\\') {
        return "/".to_owned();
    }
    let site = url::Url::parse(SITE).expect("a valid base URL");
    match site.join(path) {
        Ok(target) if target.origin() == site.origin() => {
            let mut same_site = target.path().to_owned();
            if let Some(query) = target.query() {
                same_site.push('?');
                same_site.push_str(query);
            }
            same_site
        }
        _ => "/".to_owned(),
    }
}

#[server(prefix = "/rpc", endpoint = "get_current_user")]
pub async fn get_current_user() -> Result<Option<User>, AppError> {
    ssr::current_user().await
}

/// Why a sign-in failed, as the `failed` query parameter of `/login` after a
/// plain form post (without JavaScript the page cannot receive the error).
pub const FAILED_CREDENTIALS: &str = "credentials";
pub const FAILED_THROTTLED: &str = "throttled";
pub const THROTTLED_MESSAGE: &str = "Too many failed sign-in attempts. Wait 15 minutes and try again.";

#[server(prefix = "/rpc", endpoint = "sign_in")]
pub async fn sign_in(email: String, password: String, next: Option<String>) -> Result<(), AppError> {
    use domain::error::ErrorCode;
    let store = ssr::store()?;
    let session = ssr::session().await?;
    // Never a default: a sign-in without its throttle must fail, not go unthrottled.
    let throttle = leptos::prelude::use_context::<store::SignInThrottle>().ok_or_else(|| {
        tracing::error!("sign-in ran without a SignInThrottle in context");
        AppError::internal()
    })?;
    let ip = ssr::client_ip();
    let next = safe_next(next.as_deref());
    let fail = |reason: &str, message: &str| {
        if ssr::is_plain_form_post() {
            // The email comes back in the form; the password never does.
            leptos_axum::redirect(&ssr::refused_form_location(
                "/login",
                &[("failed", reason), ("next", &next)],
                &[("email", email.clone())],
            ));
        }
        Err(AppError::new(ErrorCode::Unauthorized, message))
    };
    // Counted before the password is checked: parallel guesses cannot all pass.
    if !throttle.reserve(&store, &email, ip).await? {
        tracing::warn!(?ip, "sign-in throttled");
        return fail(FAILED_THROTTLED, THROTTLED_MESSAGE);
    }
    let password = domain::UserPassword::new(password);
    match store.authenticate_user(&email, &password).await? {
        None => {
            tracing::info!(?ip, "sign-in failed");
            fail(FAILED_CREDENTIALS, domain::auth::SIGN_IN_FAILED)
        }
        Some(user) => {
            throttle.succeeded(&store, &email, ip).await?;
            // A new id at sign-in, so a session id planted before cannot ride along.
            session.cycle_id().await.map_err(|_| AppError::internal())?;
            session
                .insert(store::SESSION_USER_KEY, user.id)
                .await
                .map_err(|_| AppError::internal())?;
            tracing::info!(user_id = %user.id, "signed in");
            leptos_axum::redirect(&next);
            Ok(())
        }
    }
}

/// The signed-in user replaces their own password (the current one is required). Their
/// other sessions end; this one stays signed in under a new session id.
#[server(prefix = "/rpc", endpoint = "change_password")]
pub async fn change_password(current_password: String, new_password: String) -> Result<User, AppError> {
    let result: Result<User, AppError> = async {
        use domain::error::ErrorCode;
        // Not `require_user`: this is what a user with a one-time password may still do.
        let user = ssr::current_user()
            .await?
            .ok_or_else(|| AppError::new(ErrorCode::Unauthorized, "Your session has ended. Sign in again."))?;
        let session = ssr::session().await?;
        let changed = ssr::store()?
            .change_own_password(
                user.id,
                &domain::UserPassword::new(current_password),
                &domain::UserPassword::new(new_password),
                session.id().as_ref(),
            )
            .await?;
        // A credential change gets a new session id, like a sign-in.
        session.cycle_id().await.map_err(|_| AppError::internal())?;
        tracing::info!(user_id = %user.id, "password changed by its owner; other sessions ended");
        Ok(changed)
    }
    .await;
    ssr::answer_form("/account", result)
}

#[server(prefix = "/rpc", endpoint = "sign_out")]
pub async fn sign_out() -> Result<(), AppError> {
    let session = ssr::session().await?;
    // Deletes the record in the database and expires the cookie.
    session.flush().await.map_err(|_| AppError::internal())?;
    leptos_axum::redirect("/login");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_on_this_site() {
        assert_eq!(safe_next(Some("/gateways?page=2")), "/gateways?page=2");
        assert_eq!(safe_next(Some("//evil.example")), "/");
        assert_eq!(safe_next(Some("https://evil.example")), "/");
        assert_eq!(safe_next(Some("/\\evil.example")), "/");
        assert_eq!(safe_next(Some("/\t/evil.example")), "/", "a tab browsers would drop");
        assert_eq!(safe_next(Some("/\n/evil.example")), "/");
        assert_eq!(
            safe_next(Some("/%09/evil.example")),
            "/%09/evil.example",
            "stays a path here"
        );
        assert_eq!(safe_next(Some("/gateways/../users")), "/users");
        assert_eq!(safe_next(Some("https:evil.example")), "/");
        assert_eq!(safe_next(None), "/");
    }

    #[test]
    fn query_values_are_encoded() {
        assert_eq!(domain::links::encode_query_value("/a?b=1&c"), "%2Fa%3Fb%3D1%26c");
    }
}
