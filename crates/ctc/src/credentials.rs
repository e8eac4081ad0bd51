//! Gateway credentials. The password never appears in `Debug` output or logs.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use zeroize::Zeroize;

/// A gateway password. `Debug` and `Display` print `***`; use [`Password::expose`] to send it.
/// Its memory is zeroed when it is dropped.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Password(String);

impl Drop for Password {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl Password {
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    /// The secret itself, for the `POST_LOGIN` frame and nothing else.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(***)")
    }
}

impl fmt::Display for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl From<String> for Password {
    fn from(secret: String) -> Self {
        Self(secret)
    }
}

impl From<&str> for Password {
    fn from(secret: &str) -> Self {
        Self(secret.to_owned())
    }
}

/// The e-mail and password a gateway account logs in with, and optionally a guard the
/// provider wants held for exactly one connection attempt (see [`Credentials::held_with`]).
#[derive(Clone)]
pub struct Credentials {
    pub email: String,
    pub password: Password,
    attempt_guard: Option<Arc<dyn Send + Sync>>,
}

impl Credentials {
    pub fn new(email: impl Into<String>, password: impl Into<Password>) -> Self {
        Self {
            email: email.into(),
            password: password.into(),
            attempt_guard: None,
        }
    }

    /// Ties `guard` (say, a handshake slot) to the connection attempt these credentials are
    /// used for: the supervisor drops it when that attempt ends, however it ends (online,
    /// failed, or cut short by a reconnect, a reconfigure or a shutdown).
    pub fn held_with(mut self, guard: impl Send + Sync + 'static) -> Self {
        self.attempt_guard = Some(Arc::new(guard));
        self
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("email", &self.email)
            .field("password", &self.password)
            .finish()
    }
}

impl PartialEq for Credentials {
    fn eq(&self, other: &Self) -> bool {
        self.email == other.email && self.password == other.password
    }
}

impl Eq for Credentials {}

/// Boxed future returned by [`CredentialsProvider::credentials`].
pub type CredentialsFuture<'a> = Pin<Box<dyn Future<Output = Result<Credentials, String>> + Send + 'a>>;

/// Where a supervisor gets the credentials for each connection attempt. Asked again before every
/// attempt, so a password changed in the inventory is picked up without restarting anything.
pub trait CredentialsProvider: Send + Sync {
    /// The credentials to log in with, or a reason why there are none (shown in the gateway's
    /// state, so it must not contain the secret).
    fn credentials(&self) -> CredentialsFuture<'_>;
}

impl CredentialsProvider for Credentials {
    fn credentials(&self) -> CredentialsFuture<'_> {
        let credentials = self.clone();
        Box::pin(async move { Ok(credentials) })
    }
}

impl<F> CredentialsProvider for F
where
    F: Fn() -> Result<Credentials, String> + Send + Sync,
{
    fn credentials(&self) -> CredentialsFuture<'_> {
        let result = self();
        Box::pin(async move { result })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_contains_the_password() {
        let credentials = Credentials::new("tech@plant.example", "s3cret-value");
        let printed = format!("{credentials:?} {}", credentials.password);
        assert!(!printed.contains("s3cret-value"), "{printed}");
        assert!(printed.contains("tech@plant.example"));
        assert_eq!(credentials.password.expose(), "s3cret-value");
    }
}
