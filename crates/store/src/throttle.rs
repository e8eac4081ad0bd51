//! The sign-in throttle's policy: which keys an attempt counts against and their
//! limits (the counts themselves are in PostgreSQL, see `users.rs`).

use crate::{Store, StoreError};
use std::net::IpAddr;
use std::time::Duration;

/// Sign-in attempts per account and per client address over a fixed window, counted
/// in PostgreSQL (shared by every instance) before the password is checked.
#[derive(Clone, Debug)]
pub struct SignInThrottle {
    window: Duration,
    per_account: u32,
    per_ip: u32,
}

/// Longer emails are cut to this many characters before they become a throttle key.
const THROTTLE_KEY_EMAIL_MAX: usize = 254;

impl Default for SignInThrottle {
    fn default() -> Self {
        Self::new(Duration::from_secs(15 * 60), 5, 20)
    }
}

impl SignInThrottle {
    pub fn new(window: Duration, per_account: u32, per_ip: u32) -> Self {
        Self {
            window,
            per_account,
            per_ip,
        }
    }

    fn account_key(email: &str) -> String {
        let email: String = email
            .trim()
            .to_lowercase()
            .chars()
            .take(THROTTLE_KEY_EMAIL_MAX)
            .collect();
        format!("account:{email}")
    }

    fn address_key(ip: Option<IpAddr>) -> Option<String> {
        ip.map(|ip| format!("ip:{ip}"))
    }

    /// Counts an attempt for this account from this address and says whether it may go
    /// ahead (both within their limits).
    pub async fn reserve(&self, store: &Store, email: &str, ip: Option<IpAddr>) -> Result<bool, StoreError> {
        let account = Self::account_key(email);
        let address = Self::address_key(ip);
        let mut keys = vec![(account.as_str(), self.per_account)];
        if let Some(address) = &address {
            keys.push((address.as_str(), self.per_ip));
        }
        store.reserve_sign_in_attempt(&keys, self.window).await
    }

    /// A successful sign-in clears the account's attempts and gives its address back the
    /// attempt it took (an address is limited in failures, not in sign-ins).
    pub async fn succeeded(&self, store: &Store, email: &str, ip: Option<IpAddr>) -> Result<(), StoreError> {
        let address = Self::address_key(ip);
        store
            .clear_sign_in_attempts(&Self::account_key(email), address.as_deref())
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_are_keyed_case_blind_and_bounded() {
        assert_eq!(
            SignInThrottle::account_key(" Ada@Example.com "),
            "account:ada@example.com"
        );
        let long = "a".repeat(10_000);
        assert_eq!(
            SignInThrottle::account_key(&long).len(),
            "account:".len() + THROTTLE_KEY_EMAIL_MAX
        );
    }
}
