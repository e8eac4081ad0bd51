//! Passwords in transit, one type per kind so that one cannot be passed where the other
//! is meant: a gateway's (from a form or API body to the cipher and the gateway login) and
//! a person's (from the sign-in or account form to argon2).

use serde::{Deserialize, Deserializer};
use std::fmt;
use zeroize::Zeroizing;

/// A plaintext password type: its `Debug` never shows the value and its memory is wiped
/// on drop; it can be deserialised but never serialised, so it cannot leak into a
/// response by accident.
macro_rules! plaintext_password {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq)]
        pub struct $name(Zeroizing<String>);

        impl $name {
            pub fn new(value: impl Into<String>) -> Self {
                Self(Zeroizing::new(value.into()))
            }

            /// The plaintext, for where it is checked or used only.
            pub fn expose(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}(<redacted>)", stringify!($name))
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                String::deserialize(deserializer).map($name::new)
            }
        }
    };
}

plaintext_password!(
    /// A gateway's login password: encrypted at rest, sent to the gateway only.
    GatewayPassword
);

plaintext_password!(
    /// A person's sign-in password: hashed with argon2, never stored.
    UserPassword
);

plaintext_password!(
    /// A notification channel's signing secret: encrypted at rest like gateway passwords,
    /// used only to sign what is sent, never returned.
    ChannelSecret
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_value() {
        let password = GatewayPassword::new("hunter2");
        assert_eq!(format!("{password:?}"), "GatewayPassword(<redacted>)");
        assert_eq!(password.expose(), "hunter2");
        assert_eq!(
            format!("{:?}", UserPassword::new("hunter2")),
            "UserPassword(<redacted>)"
        );
    }
}
