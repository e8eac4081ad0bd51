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

    /// The one role rule, for the REST API, server functions and pages alike: only
    /// administrators change anything.
    pub fn can_write(self) -> bool {
        self == Role::Admin
    }

    /// [`Role::can_write`] as an answer: `FORBIDDEN` for a viewer.
    pub fn check_write(self) -> Result<(), crate::AppError> {
        if self.can_write() {
            Ok(())
        } else {
            Err(crate::AppError::new(
                crate::error::ErrorCode::Forbidden,
                "Only administrators can do this; the viewer role can only read.",
            ))
        }
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
    /// Signed in with a password someone else chose (the first administrator's one-time
    /// password): the user must set their own before doing anything else.
    #[serde(default)]
    pub must_change_password: bool,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

/// An administrator may not demote or disable their own account (they would lock
/// themselves out): `by` is who acts, `target` the account, `what` the change in words.
pub fn check_not_own_account(by: uuid::Uuid, target: uuid::Uuid, what: &str) -> Result<(), crate::AppError> {
    if by == target {
        return Err(crate::AppError::new(
            crate::error::ErrorCode::Forbidden,
            format!("You cannot {what} your own account; ask another administrator."),
        ));
    }
    Ok(())
}

impl User {
    pub fn is_admin(&self) -> bool {
        self.role.can_write() && self.disabled_at.is_none()
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
    validate_new_password("password", password)
}

/// [`validate_user_password`] for a form or body whose field has another name.
pub fn validate_new_password(field: &str, password: &str) -> Result<(), crate::AppError> {
    let mut check = crate::validate::Checker::default();
    let length = password.chars().count();
    if length < USER_PASSWORD_MIN {
        check.fail(field, format!("must be at least {USER_PASSWORD_MIN} characters"));
    } else if length > USER_PASSWORD_MAX {
        check.fail(field, format!("must be at most {USER_PASSWORD_MAX} characters"));
    } else if is_common_password(password) {
        check.fail(field, COMMON_PASSWORD_MESSAGE);
    }
    check.finish(())
}

/// Why a password from the common-password list is refused.
pub const COMMON_PASSWORD_MESSAGE: &str =
    "is one of the most common passwords, the first ones an attacker tries; choose another";

/// Whether `password` (ignoring case) is in the list of common leaked passwords shipped
/// with the server (`data/common-passwords.txt`, its source in `data/README.md`). Not in
/// the browser build: the list would weigh on every page, and the server decides anyway.
#[cfg(feature = "server")]
pub fn is_common_password(password: &str) -> bool {
    use std::collections::HashSet;
    use std::sync::LazyLock;
    static COMMON: LazyLock<HashSet<&'static str>> =
        LazyLock::new(|| include_str!("../data/common-passwords.txt").lines().collect());
    COMMON.contains(password.to_lowercase().as_str())
}

#[cfg(not(feature = "server"))]
pub fn is_common_password(_password: &str) -> bool {
    false
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

    #[cfg(feature = "server")]
    #[test]
    fn common_passwords_are_refused_ignoring_case() {
        for common in ["password", "PassWord1", "12345678", "iloveyou", "sunshine"] {
            let err = validate_user_password(common).unwrap_err();
            assert_eq!(err.field_message("password"), Some(COMMON_PASSWORD_MESSAGE), "{common}");
        }
        assert!(validate_user_password("correct horse battery").is_ok());
    }

    #[test]
    fn user_password_length_is_bounded() {
        assert!(validate_user_password("1234567").is_err());
        assert!(validate_user_password("1234567x").is_ok());
        assert!(validate_user_password(&"x".repeat(USER_PASSWORD_MAX + 1)).is_err());
    }
}
