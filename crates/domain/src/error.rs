//! The one error type that crosses layers. The store maps its failures into it,
//! the REST API renders it as `{"error":{"code","message","statusCode"}}`, and
//! the web app receives it from server functions. It only ever carries text that
//! is safe to show: internal causes are logged where they happen, never put here.

use serde::{Deserialize, Serialize};
use server_fn::codec::JsonEncoding;
use server_fn::error::{FromServerFnError, ServerFnErrorErr};
use std::fmt;

/// Machine-readable error codes, serialised as `SCREAMING_SNAKE_CASE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum ErrorCode {
    ValidationError,
    InvalidJsonBody,
    EmptyJsonBody,
    UnsupportedMediaType,
    PayloadTooLarge,
    RequestTimeout,
    Unauthorized,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    FactoryNotFound,
    GatewayNotFound,
    SensorNotFound,
    ReadingNotFound,
    MachineNotFound,
    AlarmNotFound,
    AlarmRuleNotFound,
    ChannelNotFound,
    GatewayNotOnline,
    UnknownOrganization,
    UnknownFactory,
    OrganizationRequired,
    GatewayIdTaken,
    SensorAlreadyAssigned,
    UnknownSensor,
    UnknownMachine,
    UnknownGateway,
    ServiceUnavailable,
    InternalError,
}

impl ErrorCode {
    pub fn status(self) -> u16 {
        use ErrorCode::*;
        match self {
            ValidationError | InvalidJsonBody | EmptyJsonBody => 400,
            Unauthorized => 401,
            Forbidden => 403,
            NotFound | FactoryNotFound | GatewayNotFound | SensorNotFound | ReadingNotFound | MachineNotFound
            | AlarmNotFound | AlarmRuleNotFound | ChannelNotFound => 404,
            GatewayNotOnline => 409,
            MethodNotAllowed => 405,
            GatewayIdTaken | SensorAlreadyAssigned => 409,
            PayloadTooLarge => 413,
            RequestTimeout => 408,
            UnsupportedMediaType => 415,
            UnknownOrganization | UnknownFactory | UnknownSensor | UnknownMachine | UnknownGateway
            | OrganizationRequired => 422,
            ServiceUnavailable => 503,
            InternalError => 500,
        }
    }

    pub fn as_str(self) -> &'static str {
        use ErrorCode::*;
        match self {
            ValidationError => "VALIDATION_ERROR",
            InvalidJsonBody => "INVALID_JSON_BODY",
            EmptyJsonBody => "EMPTY_JSON_BODY",
            UnsupportedMediaType => "UNSUPPORTED_MEDIA_TYPE",
            PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            RequestTimeout => "REQUEST_TIMEOUT",
            Unauthorized => "UNAUTHORIZED",
            Forbidden => "FORBIDDEN",
            NotFound => "NOT_FOUND",
            MethodNotAllowed => "METHOD_NOT_ALLOWED",
            FactoryNotFound => "FACTORY_NOT_FOUND",
            GatewayNotFound => "GATEWAY_NOT_FOUND",
            SensorNotFound => "SENSOR_NOT_FOUND",
            ReadingNotFound => "READING_NOT_FOUND",
            MachineNotFound => "MACHINE_NOT_FOUND",
            AlarmNotFound => "ALARM_NOT_FOUND",
            AlarmRuleNotFound => "ALARM_RULE_NOT_FOUND",
            ChannelNotFound => "CHANNEL_NOT_FOUND",
            GatewayNotOnline => "GATEWAY_NOT_ONLINE",
            UnknownOrganization => "UNKNOWN_ORGANIZATION",
            UnknownFactory => "UNKNOWN_FACTORY",
            OrganizationRequired => "ORGANIZATION_REQUIRED",
            GatewayIdTaken => "GATEWAY_ID_TAKEN",
            SensorAlreadyAssigned => "SENSOR_ALREADY_ASSIGNED",
            UnknownSensor => "UNKNOWN_SENSOR",
            UnknownMachine => "UNKNOWN_MACHINE",
            UnknownGateway => "UNKNOWN_GATEWAY",
            ServiceUnavailable => "SERVICE_UNAVAILABLE",
            InternalError => "INTERNAL_ERROR",
        }
    }
}

/// One invalid field and what is wrong with it, in words for a person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FieldError {
    pub field: String,
    pub message: String,
    /// The field as a JSON pointer (`/name`; `""` for the whole body), as the
    /// predecessor's validator reported it, for scripts written against it.
    #[serde(rename = "instancePath", default)]
    pub instance_path: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        let field = field.into();
        let instance_path = match field.as_str() {
            "body" => String::new(),
            path => format!("/{}", path.replace('.', "/")),
        };
        Self {
            field,
            message: message.into(),
            instance_path,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppError {
    pub code: ErrorCode,
    pub message: String,
    /// Per-field problems, for validation errors.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<FieldError>,
}

impl AppError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            details: Vec::new(),
        }
    }

    /// A validation failure; the message lists every field so it reads well on its own.
    pub fn validation(details: Vec<FieldError>) -> Self {
        let message = details
            .iter()
            .map(|e| format!("{}: {}", e.field, e.message))
            .collect::<Vec<_>>()
            .join("; ");
        Self {
            code: ErrorCode::ValidationError,
            message: if message.is_empty() {
                "Request validation failed".into()
            } else {
                message
            },
            details,
        }
    }

    pub fn internal() -> Self {
        Self::new(ErrorCode::InternalError, "Internal server error")
    }

    pub fn factory_not_found() -> Self {
        Self::new(ErrorCode::FactoryNotFound, "Factory not found")
    }

    /// The answer to everything but the account page while the user still has a
    /// one-time password.
    pub fn password_change_required() -> Self {
        Self::new(
            ErrorCode::Forbidden,
            "Choose your own password first: you signed in with a one-time password (Account page).",
        )
    }

    pub fn gateway_not_found() -> Self {
        Self::new(ErrorCode::GatewayNotFound, "Gateway not found")
    }

    pub fn code(&self) -> &'static str {
        self.code.as_str()
    }

    pub fn status(&self) -> u16 {
        self.code.status()
    }

    /// The message for one field, for inline form errors.
    pub fn field_message(&self, field: &str) -> Option<&str> {
        self.details
            .iter()
            .find(|e| e.field == field)
            .map(|e| e.message.as_str())
    }
}

impl fmt::Display for AppError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for AppError {}

impl FromServerFnError for AppError {
    type Encoder = JsonEncoding;

    fn from_server_fn_error(value: ServerFnErrorErr) -> Self {
        match value {
            // Arguments that do not deserialise are the client's mistake.
            ServerFnErrorErr::Args(message) | ServerFnErrorErr::Deserialization(message) => {
                Self::new(ErrorCode::ValidationError, message)
            }
            ServerFnErrorErr::Request(_) | ServerFnErrorErr::Response(_) => Self::new(
                ErrorCode::ServiceUnavailable,
                "The server could not be reached. Check the connection and try again.",
            ),
            _ => Self::internal(),
        }
    }
}
