//! The inventory: organizations → factories → gateways, and the inputs that
//! create and change them. Wire inputs (`*Input`, `*Patch`) mirror request bodies
//! field for field and refuse unknown keys; `validate` turns them into the checked
//! values (`New*`, `*Changes`) that the store accepts, reporting every bad field.

use crate::error::AppError;
use crate::secret::GatewayPassword;
use crate::validate::{gateway_url_problem, is_valid_email, Checker};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

pub type Metadata = Map<String, Value>;

pub const NAME_MAX: usize = 255;
pub const LOCATION_MAX: usize = 500;
pub const TIMEZONE_MAX: usize = 100;
pub const GATEWAY_ID_MAX: usize = 255;
pub const URL_MAX: usize = 500;
pub const EMAIL_MAX: usize = 255;
pub const PASSWORD_MAX: usize = 1024;
pub const MODEL_MAX: usize = 100;
pub const FIRMWARE_MAX: usize = 50;
/// A typed certificate pin: 95 characters colon-separated, plus a `sha256:` prefix and spaces.
pub const TLS_PIN_INPUT_MAX: usize = 110;
pub const DEFAULT_TIMEZONE: &str = "UTC";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Organization {
    pub id: Uuid,
    pub name: String,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub metadata: Metadata,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Factory {
    pub id: Uuid,
    pub organization_id: Uuid,
    pub name: String,
    pub location: Option<String>,
    pub timezone: String,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub metadata: Metadata,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A gateway as it is shown and returned. It has no password field at all: the
/// stored ciphertext never leaves the store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Gateway {
    pub id: Uuid,
    pub factory_id: Uuid,
    pub gateway_id: String,
    pub name: String,
    pub url: String,
    pub email: String,
    pub model: Option<String>,
    pub firmware_version: Option<String>,
    /// For a `wss://` gateway with a certificate no root vouches for (self-signed): the
    /// SHA-256 of the one certificate to accept, as `ab:cd:…` (64 hex digits).
    #[serde(default)]
    pub tls_pin: Option<String>,
    /// A disabled gateway stays in the inventory but is not connected.
    pub enabled: bool,
    pub last_seen_at: Option<DateTime<Utc>>,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub metadata: Metadata,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Distinguishes an absent key (`None`) from an explicit `null` (`Some(None)`).
pub(crate) fn nullable<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

fn check_uuid(checker: &mut Checker, field: &str, raw: &str) -> Option<Uuid> {
    let id = crate::validate::parse_uuid(raw.trim());
    if id.is_none() {
        checker.fail(field, "must be a UUID");
    }
    id
}

pub(crate) fn check_metadata(checker: &mut Checker, value: Option<Value>) -> Option<Metadata> {
    match value? {
        Value::Object(map) => {
            if crate::validate::map_contains_nul(&map) {
                checker.fail("metadata", crate::validate::NUL_MESSAGE);
            }
            Some(map)
        }
        _ => {
            checker.fail("metadata", "must be a JSON object");
            None
        }
    }
}

/// Whether `zone` is an IANA time zone name. In the browser the zone table is not
/// bundled, so only the shape is checked there; the server checks the name.
pub fn is_valid_timezone(zone: &str) -> bool {
    #[cfg(feature = "server")]
    {
        zone.parse::<chrono_tz::Tz>().is_ok()
    }
    #[cfg(not(feature = "server"))]
    {
        !zone.is_empty() && !zone.contains(char::is_whitespace)
    }
}

fn check_timezone(checker: &mut Checker, raw: &str) -> String {
    let zone = checker.required_text("timezone", Some(raw), TIMEZONE_MAX);
    if !zone.is_empty() && !is_valid_timezone(&zone) {
        checker.fail("timezone", "must be an IANA time zone such as Europe/Berlin or UTC");
    }
    zone
}

fn check_email(checker: &mut Checker, raw: Option<&str>) -> String {
    let email = checker.required_text("email", raw, EMAIL_MAX);
    if !email.is_empty() && !is_valid_email(&email) {
        checker.fail("email", "must be a valid email address");
    }
    email
}

fn check_url(checker: &mut Checker, raw: Option<&str>) -> String {
    let url = checker.required_text("url", raw, URL_MAX);
    if !url.is_empty() {
        if let Some(problem) = gateway_url_problem(&url) {
            checker.fail("url", problem);
        }
    }
    url
}

/// A certificate pin in its one stored form, `ab:cd:…` (lower case); `None` for blank.
fn check_tls_pin(checker: &mut Checker, raw: &str) -> Option<String> {
    let raw = raw.trim();
    if raw.is_empty() {
        return None;
    }
    match crate::validate::certificate_pin(raw) {
        Some(pin) => Some(pin),
        None => {
            checker.fail(
                "tls_pin",
                "must be a SHA-256 fingerprint: 64 hex digits, colons allowed",
            );
            None
        }
    }
}

/// A pin says which certificate to accept: it means nothing without TLS.
pub fn check_pin_needs_tls(checker: &mut Checker, pin: Option<&str>, url: &str) {
    if pin.is_some() && !url.trim().to_ascii_lowercase().starts_with("wss://") {
        checker.fail("tls_pin", "needs a wss:// URL (a pin is a certificate to accept)");
    }
}

fn check_password(checker: &mut Checker, password: Option<GatewayPassword>) -> Option<GatewayPassword> {
    let password = password?;
    if password.expose().is_empty() {
        checker.fail("password", "is required");
    } else if password.expose().chars().count() > PASSWORD_MAX {
        checker.fail("password", format!("must be at most {PASSWORD_MAX} characters"));
    }
    Some(password)
}

// ---------------------------------------------------------------- factories

/// Body of a factory create. `organization_id` may be left out while exactly one
/// organization exists.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FactoryInput {
    #[cfg_attr(feature = "openapi", schema(value_type = Option<uuid::Uuid>))]
    pub organization_id: Option<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = String, required = true))]
    pub name: Option<String>,
    pub location: Option<String>,
    pub timezone: Option<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub metadata: Option<Value>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewFactory {
    pub organization_id: Option<Uuid>,
    pub name: String,
    pub location: Option<String>,
    pub timezone: String,
    pub metadata: Metadata,
}

impl FactoryInput {
    pub fn validate(self) -> Result<NewFactory, AppError> {
        let mut c = Checker::default();
        let organization_id = self
            .organization_id
            .as_deref()
            .and_then(|raw| check_uuid(&mut c, "organization_id", raw));
        let name = c.required_text("name", self.name.as_deref(), NAME_MAX);
        let location = c.optional_text("location", self.location.as_deref(), LOCATION_MAX);
        let timezone = check_timezone(&mut c, self.timezone.as_deref().unwrap_or(DEFAULT_TIMEZONE));
        let metadata = check_metadata(&mut c, self.metadata).unwrap_or_default();
        c.finish(NewFactory {
            organization_id,
            name,
            location,
            timezone,
            metadata,
        })
    }
}

/// Body of a factory update (PUT or PATCH): every field optional; `location: null`
/// clears it. The organization cannot be changed.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FactoryPatch {
    pub name: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, nullable))]
    pub location: Option<Option<String>>,
    pub timezone: Option<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub metadata: Option<Value>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct FactoryChanges {
    pub name: Option<String>,
    pub location: Option<Option<String>>,
    pub timezone: Option<String>,
    pub metadata: Option<Metadata>,
}

impl FactoryPatch {
    pub fn validate(self) -> Result<FactoryChanges, AppError> {
        let mut c = Checker::default();
        let name = self.name.as_deref().map(|n| c.required_text("name", Some(n), NAME_MAX));
        let location = self
            .location
            .map(|l| c.optional_text("location", l.as_deref(), LOCATION_MAX));
        let timezone = self.timezone.as_deref().map(|tz| check_timezone(&mut c, tz));
        let metadata = check_metadata(&mut c, self.metadata);
        c.finish(FactoryChanges {
            name,
            location,
            timezone,
            metadata,
        })
    }
}

// ----------------------------------------------------------------- gateways

/// The orders a gateway list can be sorted in (`?sort=`), each a stored column; ties
/// are broken by id, so pages never overlap.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum GatewaySort {
    #[default]
    Name,
    GatewayId,
    Url,
    Model,
    FirmwareVersion,
    Enabled,
    LastSeenAt,
    CreatedAt,
    UpdatedAt,
}

impl GatewaySort {
    pub const ALL: [GatewaySort; 9] = [
        GatewaySort::Name,
        GatewaySort::GatewayId,
        GatewaySort::Url,
        GatewaySort::Model,
        GatewaySort::FirmwareVersion,
        GatewaySort::Enabled,
        GatewaySort::LastSeenAt,
        GatewaySort::CreatedAt,
        GatewaySort::UpdatedAt,
    ];

    /// The query value, which is also the column's name.
    pub fn as_str(self) -> &'static str {
        match self {
            GatewaySort::Name => "name",
            GatewaySort::GatewayId => "gateway_id",
            GatewaySort::Url => "url",
            GatewaySort::Model => "model",
            GatewaySort::FirmwareVersion => "firmware_version",
            GatewaySort::Enabled => "enabled",
            GatewaySort::LastSeenAt => "last_seen_at",
            GatewaySort::CreatedAt => "created_at",
            GatewaySort::UpdatedAt => "updated_at",
        }
    }

    pub fn parse(value: &str) -> Option<GatewaySort> {
        GatewaySort::ALL.into_iter().find(|sort| sort.as_str() == value)
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GatewayInput {
    #[cfg_attr(feature = "openapi", schema(value_type = uuid::Uuid, required = true))]
    pub factory_id: Option<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = String, required = true))]
    pub gateway_id: Option<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = String, required = true))]
    pub name: Option<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = String, required = true))]
    pub url: Option<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = String, required = true))]
    pub email: Option<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Password, min_length = 1, required = true))]
    pub password: Option<GatewayPassword>,
    pub model: Option<String>,
    pub firmware_version: Option<String>,
    /// `wss://` only: the SHA-256 fingerprint of the gateway's certificate to accept
    /// (64 hex digits, colons and a `sha256:` prefix allowed).
    pub tls_pin: Option<String>,
    /// Default true.
    pub enabled: Option<bool>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub metadata: Option<Value>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewGateway {
    pub factory_id: Uuid,
    pub gateway_id: String,
    pub name: String,
    pub url: String,
    pub email: String,
    pub password: GatewayPassword,
    pub model: Option<String>,
    pub firmware_version: Option<String>,
    pub tls_pin: Option<String>,
    pub enabled: bool,
    pub metadata: Metadata,
}

impl GatewayInput {
    pub fn validate(self) -> Result<NewGateway, AppError> {
        let mut c = Checker::default();
        let factory_id = match self.factory_id.as_deref().map(str::trim) {
            None | Some("") => {
                c.fail("factory_id", "is required");
                None
            }
            Some(raw) => check_uuid(&mut c, "factory_id", raw),
        };
        let gateway_id = c.required_text("gateway_id", self.gateway_id.as_deref(), GATEWAY_ID_MAX);
        let name = c.required_text("name", self.name.as_deref(), NAME_MAX);
        let url = check_url(&mut c, self.url.as_deref());
        let email = check_email(&mut c, self.email.as_deref());
        let password = check_password(&mut c, self.password);
        if password.is_none() {
            c.fail("password", "is required");
        }
        let model = c.optional_text("model", self.model.as_deref(), MODEL_MAX);
        let firmware_version = c.optional_text("firmware_version", self.firmware_version.as_deref(), FIRMWARE_MAX);
        let tls_pin = self.tls_pin.as_deref().and_then(|raw| check_tls_pin(&mut c, raw));
        check_pin_needs_tls(&mut c, tls_pin.as_deref(), &url);
        let metadata = check_metadata(&mut c, self.metadata).unwrap_or_default();
        match (factory_id, password) {
            (Some(factory_id), Some(password)) if c.errors.is_empty() => Ok(NewGateway {
                factory_id,
                gateway_id,
                name,
                url,
                email,
                password,
                model,
                firmware_version,
                tls_pin,
                enabled: self.enabled.unwrap_or(true),
                metadata,
            }),
            _ => Err(AppError::validation(c.errors)),
        }
    }
}

/// Body of a gateway update. `factory_id` moves the gateway; `model`,
/// `firmware_version` accept `null` to clear; an absent password keeps the old one.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GatewayPatch {
    #[cfg_attr(feature = "openapi", schema(value_type = Option<uuid::Uuid>))]
    pub factory_id: Option<String>,
    pub gateway_id: Option<String>,
    pub name: Option<String>,
    pub url: Option<String>,
    pub email: Option<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = Password, min_length = 1))]
    pub password: Option<GatewayPassword>,
    #[serde(default, deserialize_with = "nullable")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, nullable))]
    pub model: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, nullable))]
    pub firmware_version: Option<Option<String>>,
    /// `null` removes the pin.
    #[serde(default, deserialize_with = "nullable")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, nullable))]
    pub tls_pin: Option<Option<String>>,
    pub enabled: Option<bool>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub metadata: Option<Value>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct GatewayChanges {
    pub factory_id: Option<Uuid>,
    pub gateway_id: Option<String>,
    pub name: Option<String>,
    pub url: Option<String>,
    pub email: Option<String>,
    pub password: Option<GatewayPassword>,
    pub model: Option<Option<String>>,
    pub firmware_version: Option<Option<String>>,
    pub tls_pin: Option<Option<String>>,
    pub enabled: Option<bool>,
    pub metadata: Option<Metadata>,
}

impl GatewayChanges {
    /// Whether the change touches what the gateway connection logs in with.
    pub fn changes_connection(&self) -> bool {
        self.url.is_some() || self.email.is_some() || self.password.is_some() || self.tls_pin.is_some()
    }
}

impl GatewayPatch {
    pub fn validate(self) -> Result<GatewayChanges, AppError> {
        let mut c = Checker::default();
        let factory_id = self
            .factory_id
            .as_deref()
            .and_then(|raw| check_uuid(&mut c, "factory_id", raw));
        let gateway_id = self
            .gateway_id
            .as_deref()
            .map(|v| c.required_text("gateway_id", Some(v), GATEWAY_ID_MAX));
        let name = self.name.as_deref().map(|v| c.required_text("name", Some(v), NAME_MAX));
        let url = self.url.as_deref().map(|v| check_url(&mut c, Some(v)));
        let email = self.email.as_deref().map(|v| check_email(&mut c, Some(v)));
        let password = check_password(&mut c, self.password);
        let model = self.model.map(|v| c.optional_text("model", v.as_deref(), MODEL_MAX));
        let firmware_version = self
            .firmware_version
            .map(|v| c.optional_text("firmware_version", v.as_deref(), FIRMWARE_MAX));
        let tls_pin = self.tls_pin.map(|pin| {
            pin.as_deref()
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .and_then(|p| check_tls_pin(&mut c, p))
        });
        let metadata = check_metadata(&mut c, self.metadata);
        c.finish(GatewayChanges {
            factory_id,
            gateway_id,
            name,
            url,
            email,
            password,
            model,
            firmware_version,
            tls_pin,
            enabled: self.enabled,
            metadata,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn factory(body: Value) -> Result<NewFactory, AppError> {
        serde_json::from_value::<FactoryInput>(body).unwrap().validate()
    }

    #[test]
    fn factory_defaults_and_trimming() {
        let f = factory(json!({"name": "  Plant  ", "location": ""})).unwrap();
        assert_eq!(f.name, "Plant");
        assert_eq!(f.location, None);
        assert_eq!(f.timezone, "UTC");
        assert!(f.metadata.is_empty());
    }

    #[test]
    fn factory_reports_every_bad_field() {
        let err = factory(json!({"organization_id": "nope", "name": "", "timezone": "Mars/Base", "metadata": []}))
            .unwrap_err();
        let fields: Vec<_> = err.details.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["organization_id", "name", "timezone", "metadata"]);
    }

    #[test]
    fn unknown_keys_are_refused_by_name() {
        let err = serde_json::from_value::<FactoryInput>(json!({"name": "x", "extra": 1})).unwrap_err();
        assert!(err.to_string().contains("extra"), "{err}");
    }

    #[test]
    fn patch_distinguishes_null_from_absent() {
        let patch: FactoryPatch = serde_json::from_value(json!({"location": null})).unwrap();
        assert_eq!(patch.validate().unwrap().location, Some(None));
        let patch: FactoryPatch = serde_json::from_value(json!({})).unwrap();
        assert_eq!(patch.validate().unwrap(), FactoryChanges::default());
    }

    #[test]
    fn gateway_requires_its_fields() {
        let err = serde_json::from_value::<GatewayInput>(json!({}))
            .unwrap()
            .validate()
            .unwrap_err();
        let fields: Vec<_> = err.details.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["factory_id", "gateway_id", "name", "url", "email", "password"]);
    }

    #[test]
    fn gateway_patch_with_empty_password_is_refused_and_null_clears_model() {
        let patch: GatewayPatch = serde_json::from_value(json!({"password": ""})).unwrap();
        assert_eq!(
            patch.validate().unwrap_err().field_message("password"),
            Some("is required")
        );
        let patch: GatewayPatch = serde_json::from_value(json!({"model": null, "name": "N"})).unwrap();
        let changes = patch.validate().unwrap();
        assert_eq!(changes.model, Some(None));
        assert!(!changes.changes_connection());
    }

    #[test]
    fn password_debug_is_redacted_inside_inputs() {
        let input: GatewayInput = serde_json::from_value(json!({"password": "s3cret"})).unwrap();
        assert!(!format!("{input:?}").contains("s3cret"));
    }
}
