//! Who may do what.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// `admin` reads and writes (inventory, users, tokens); `viewer` only reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Role {
    Admin,
    Viewer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Viewer => "viewer",
        }
    }

    pub fn can_write(self) -> bool {
        self == Role::Admin
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "admin" => Ok(Role::Admin),
            "viewer" => Ok(Role::Viewer),
            other => Err(format!("unknown role {other:?} (expected admin or viewer)")),
        }
    }
}

/// A person who signs in to the web app. Carries no password material.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: uuid::Uuid,
    pub email: String,
    pub role: Role,
    pub disabled_at: Option<chrono::DateTime<chrono::Utc>>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

impl User {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin && self.disabled_at.is_none()
    }
}

/// Sign-in passwords: long enough to resist guessing (NIST SP 800-63B's minimum),
/// short enough that hashing them cannot be used to tie up the server.
pub const USER_PASSWORD_MIN: usize = 8;
pub const USER_PASSWORD_MAX: usize = 256;

/// The one answer to every failed sign-in, so that it does not tell whether the
/// account exists.
pub const SIGN_IN_FAILED: &str = "Incorrect email or password.";

/// Checks an email for a user account; returns it trimmed.
pub fn validate_user_email(email: &str) -> Result<String, crate::AppError> {
    let mut check = crate::validate::Checker::default();
    let email = check.required_text("email", Some(email), crate::inventory::EMAIL_MAX);
    if !email.is_empty() && !crate::validate::is_valid_email(&email) {
        check.fail("email", "must be a valid email address");
    }
    check.finish(email)
}

/// Checks a new sign-in password (never trimmed: spaces are characters too).
pub fn validate_user_password(password: &str) -> Result<(), crate::AppError> {
    let mut check = crate::validate::Checker::default();
    let length = password.chars().count();
    if length < USER_PASSWORD_MIN {
        check.fail("password", format!("must be at least {USER_PASSWORD_MIN} characters"));
    } else if length > USER_PASSWORD_MAX {
        check.fail("password", format!("must be at most {USER_PASSWORD_MAX} characters"));
    }
    check.finish(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_email_is_trimmed_and_checked() {
        assert_eq!(validate_user_email(" a@b.example ").unwrap(), "a@b.example");
        let err = validate_user_email("nope").unwrap_err();
        assert_eq!(err.field_message("email"), Some("must be a valid email address"));
        assert_eq!(
            validate_user_email("").unwrap_err().field_message("email"),
            Some("is required")
        );
    }

    #[test]
    fn user_password_length_is_bounded() {
        assert!(validate_user_password("1234567").is_err());
        assert!(validate_user_password("12345678").is_ok());
        assert!(validate_user_password(&"x".repeat(USER_PASSWORD_MAX + 1)).is_err());
    }
}
