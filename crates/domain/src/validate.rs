//! Field rules shared by the browser forms and the server. Lengths count
//! characters, as PostgreSQL's `varchar(n)` does.

use crate::error::FieldError;

/// A UUID in its canonical hyphenated form (8-4-4-4-12 hex digits).
/// `Uuid::parse_str` also takes the simple, braced and URN forms, which the API
/// contract does not.
pub fn parse_uuid(raw: &str) -> Option<uuid::Uuid> {
    if raw.len() != 36 {
        return None;
    }
    uuid::Uuid::try_parse(raw).ok()
}

/// The largest whole number every JSON client holds exactly (a browser's numbers are
/// doubles: JavaScript's `Number.MAX_SAFE_INTEGER`). Serials and event ids stay within it.
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// PostgreSQL cannot store NUL in text or jsonb, so it is refused up front.
pub const NUL_MESSAGE: &str = "must not contain NUL characters";

/// Whether any string or key in `value` contains NUL.
pub fn json_contains_nul(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::String(text) => text.contains('\0'),
        serde_json::Value::Array(items) => items.iter().any(json_contains_nul),
        serde_json::Value::Object(map) => map_contains_nul(map),
        _ => false,
    }
}

/// Whether any key, or any string in any value, of `map` contains NUL.
pub fn map_contains_nul(map: &serde_json::Map<String, serde_json::Value>) -> bool {
    map.iter()
        .any(|(key, item)| key.contains('\0') || json_contains_nul(item))
}

/// Collects field errors while an input is checked, so that a person sees every
/// problem at once instead of one per submit.
#[derive(Debug, Default)]
pub struct Checker {
    pub errors: Vec<FieldError>,
}

impl Checker {
    pub fn fail(&mut self, field: &str, message: impl Into<String>) {
        self.errors.push(FieldError::new(field, message));
    }

    /// A required text: trimmed, non-empty, at most `max` characters.
    pub fn required_text(&mut self, field: &str, value: Option<&str>, max: usize) -> String {
        match value.map(str::trim) {
            None | Some("") => {
                self.fail(field, "is required");
                String::new()
            }
            Some(text) => {
                self.check_text(field, text, max);
                text.to_owned()
            }
        }
    }

    /// An optional text: trimmed; empty means absent.
    pub fn optional_text(&mut self, field: &str, value: Option<&str>, max: usize) -> Option<String> {
        let text = value.map(str::trim).filter(|t| !t.is_empty())?;
        self.check_text(field, text, max);
        Some(text.to_owned())
    }

    /// At most `max` characters, and no NUL.
    fn check_text(&mut self, field: &str, text: &str, max: usize) {
        if text.chars().count() > max {
            self.fail(field, format!("must be at most {max} characters"));
        }
        if text.contains('\0') {
            self.fail(field, NUL_MESSAGE);
        }
    }

    pub fn finish<T>(self, value: T) -> Result<T, crate::AppError> {
        if self.errors.is_empty() {
            Ok(value)
        } else {
            Err(crate::AppError::validation(self.errors))
        }
    }
}

/// `local@domain.tld`: no spaces, one `@`, a dotted domain of letters, digits and
/// hyphens, and a final label of at least two letters (`admin@gateway.local` is fine,
/// `user@localhost` is not).
pub fn is_valid_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    let local_ok = !local.is_empty()
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c));
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = labels.len() >= 2
        && labels.iter().all(|label| {
            !label.is_empty()
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
        && labels
            .last()
            .is_some_and(|tld| tld.len() >= 2 && tld.chars().all(|c| c.is_ascii_alphabetic()));
    local_ok && domain_ok
}

/// A SHA-256 certificate fingerprint as 64 hex digits (colons and a `sha256:` prefix
/// allowed, any case), in the form it is stored and shown: `ab:cd:…`, lower case.
pub fn certificate_pin(raw: &str) -> Option<String> {
    let raw = raw.trim();
    let hex = match raw.get(..7) {
        Some(prefix) if prefix.eq_ignore_ascii_case("sha256:") => &raw[7..],
        _ => raw,
    };
    // 64 hex digits, bare or as 32 colon-separated pairs (how tools print fingerprints).
    let paired = hex.len() == 95 && hex.split(':').all(|pair| pair.len() == 2);
    let digits: String = if paired { hex.replace(':', "") } else { hex.to_owned() };
    if digits.len() != 64 || !digits.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let digits = digits.to_ascii_lowercase();
    let pairs: Vec<&str> = (0..32).map(|i| &digits[2 * i..2 * i + 2]).collect();
    Some(pairs.join(":"))
}

/// The host a gateway URL names, lower-cased; `None` when it names none. Changing it
/// sends the stored password elsewhere, so a change of host needs the password again.
pub fn gateway_url_host(url: &str) -> Option<String> {
    let lower = url.trim().to_ascii_lowercase();
    let rest = lower.strip_prefix("ws://").or_else(|| lower.strip_prefix("wss://"))?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, after)| after);
    let host = match authority.strip_prefix('[') {
        Some(bracketed) => bracketed.split_once(']')?.0,
        None => authority.rsplit_once(':').map_or(authority, |(host, _)| host),
    };
    (!host.is_empty()).then(|| host.to_owned())
}

/// Why a gateway URL is not acceptable, or `None` when it is: `ws://` or `wss://`,
/// a host (name, IPv4 or bracketed IPv6), an optional port 1-65535, an optional path;
/// no credentials, query or fragment.
pub fn gateway_url_problem(url: &str) -> Option<&'static str> {
    let lower = url.to_ascii_lowercase();
    let rest = if lower.starts_with("ws://") {
        &url[5..]
    } else if lower.starts_with("wss://") {
        &url[6..]
    } else {
        return Some("must start with ws:// or wss://");
    };
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Some("must not contain spaces");
    }
    if rest.contains(['?', '#']) {
        return Some("must not have a query or fragment");
    }
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.contains('@') {
        return Some("must not contain credentials; use the email and password fields");
    }
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        match bracketed.split_once(']') {
            Some((host, after)) => (host, after.strip_prefix(':')),
            None => return Some("has an unclosed IPv6 address"),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let host_ok = !host.is_empty() && host.chars().all(|c| c.is_ascii_alphanumeric() || ".-_:".contains(c));
    if !host_ok {
        return Some("must name a host, e.g. ws://192.168.1.100:5000");
    }
    if let Some(port) = port {
        match port.parse::<u16>() {
            Ok(p) if p > 0 => {}
            _ => return Some("has an invalid port"),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_hyphenated_uuids() {
        assert!(parse_uuid("67e55044-10b1-426f-9247-bb680e5fe0c8").is_some());
        for other in [
            "67e5504410b1426f9247bb680e5fe0c8",
            "{67e55044-10b1-426f-9247-bb680e5fe0c8}",
            "urn:uuid:67e55044-10b1-426f-9247-bb680e5fe0c8",
            "67e55044-10b1-426f-9247-bb680e5fe0cg",
        ] {
            assert!(parse_uuid(other).is_none(), "{other}");
        }
    }

    #[test]
    fn emails() {
        for good in ["admin@gateway.local", "a.b+c@plant.example.com", "ADMIN@EXAMPLE.COM"] {
            assert!(is_valid_email(good), "{good}");
        }
        for bad in [
            "",
            "user@localhost",
            "a@b.c",
            "no-at.example.com",
            "a b@x.com",
            "@x.com",
            "a@.com",
            "a@x..com",
            ".a@x.com",
        ] {
            assert!(!is_valid_email(bad), "{bad}");
        }
    }

    #[test]
    fn gateway_url_hosts() {
        assert_eq!(
            gateway_url_host("ws://Gateway.Plant:5000/ws").as_deref(),
            Some("gateway.plant")
        );
        assert_eq!(gateway_url_host("wss://[::1]:5000").as_deref(), Some("::1"));
        assert_eq!(gateway_url_host("ws://10.0.0.7").as_deref(), Some("10.0.0.7"));
        assert_eq!(gateway_url_host("http://10.0.0.7"), None);
    }

    #[test]
    fn gateway_urls() {
        for good in [
            "ws://192.168.1.100:5000",
            "wss://gw.plant.example",
            "WS://host:1/path",
            "ws://[::1]:5000",
        ] {
            assert_eq!(gateway_url_problem(good), None, "{good}");
        }
        for bad in [
            "http://x",
            "ws://",
            "ws://:5000",
            "localhost:5000",
            "ws://h:0",
            "ws://h:70000",
            "ws://h:port",
            "ws://u:p@h",
            "ws://h?x=1",
            "ws://h #",
            "mailto:a@b.c",
            "ws://[::1",
        ] {
            assert!(gateway_url_problem(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn length_counts_characters_not_bytes() {
        let mut checker = Checker::default();
        let name = "é".repeat(255);
        assert_eq!(checker.required_text("name", Some(&name), 255), name);
        assert!(checker.errors.is_empty());
        checker.required_text("name", Some(&"é".repeat(256)), 255);
        assert_eq!(checker.errors.len(), 1);
    }
}
