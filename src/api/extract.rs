//! Request parsing that answers every client mistake with a clear 4xx in the
//! API's error shape (axum's own rejections are plain text).

use super::error::ApiError;
use axum::body::Body;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::request::Parts;
use domain::error::ErrorCode;
use domain::{AppError, FieldError, PageRequest};
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use uuid::Uuid;

/// Largest accepted request body.
pub const BODY_LIMIT: usize = 1024 * 1024;

/// A JSON object body deserialised into `T`, refusing unknown keys by name.
pub struct ApiJson<T>(pub T);

fn validation(field: &str, message: impl Into<String>) -> ApiError {
    ApiError(AppError::validation(vec![FieldError::new(field, message)]))
}

/// Why a body could not be read: too long, too slow (`BODY_READ_TIMEOUT`), or cut off.
fn unreadable_body(err: axum::Error) -> ApiError {
    let cause = err.into_inner();
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(cause.as_ref());
    while let Some(error) = source {
        if error.is::<http_body_util::LengthLimitError>() {
            return too_large();
        }
        if error.is::<tower_http::timeout::TimeoutError>() {
            return ApiError::new(
                ErrorCode::RequestTimeout,
                format!(
                    "Request Timeout: the body was not sent within {} s",
                    crate::web::BODY_READ_TIMEOUT.as_secs()
                ),
            );
        }
        source = error.source();
    }
    ApiError::new(ErrorCode::InvalidJsonBody, "The request body could not be read")
}

fn too_large() -> ApiError {
    ApiError::new(
        ErrorCode::PayloadTooLarge,
        format!("Request body is larger than {} KiB", BODY_LIMIT / 1024),
    )
}

/// An optional body: none at all (no Content-Type, nothing sent) is `None`; anything
/// else must be a JSON object, as for [`ApiJson`].
impl<T: DeserializeOwned, S: Send + Sync> axum::extract::OptionalFromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Option<Self>, ApiError> {
        let declared_empty = req
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_none_or(|v| v.trim() == "0");
        if req.headers().get(CONTENT_TYPE).is_none() && declared_empty {
            let bytes = axum::body::to_bytes(req.into_body(), BODY_LIMIT)
                .await
                .map_err(unreadable_body)?;
            if bytes.is_empty() {
                return Ok(None);
            }
            return Err(ApiError::new(
                ErrorCode::UnsupportedMediaType,
                "Unsupported Media Type: no Content-Type; send application/json",
            ));
        }
        <Self as FromRequest<S>>::from_request(req, state).await.map(Some)
    }
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, ApiError> {
        let (parts, body) = req.into_parts();
        let declared_length = parts
            .headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared_length.is_some_and(|n| n > BODY_LIMIT as u64) {
            return Err(too_large());
        }
        let content_type = parts
            .headers
            .get(CONTENT_TYPE)
            .map(|v| v.to_str().unwrap_or("(not text)").to_owned());
        let bytes = axum::body::to_bytes(Body::new(body), BODY_LIMIT)
            .await
            .map_err(unreadable_body)?;
        match content_type.as_deref() {
            None if bytes.is_empty() => return Err(validation("body", "a JSON object is required")),
            Some(ct) if !is_json(ct) => {
                return Err(ApiError::new(
                    ErrorCode::UnsupportedMediaType,
                    format!("Unsupported Media Type: {ct}; send application/json"),
                ))
            }
            None => {
                return Err(ApiError::new(
                    ErrorCode::UnsupportedMediaType,
                    "Unsupported Media Type: no Content-Type; send application/json",
                ))
            }
            Some(_) => {}
        }
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::new(
                ErrorCode::EmptyJsonBody,
                "Body cannot be empty when Content-Type is application/json",
            ));
        }
        let value: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::new(ErrorCode::InvalidJsonBody, format!("Body is not valid JSON: {e}")))?;
        if !value.is_object() {
            let kind = match value {
                serde_json::Value::Array(_) => "an array",
                serde_json::Value::String(_) => "a string",
                serde_json::Value::Number(_) => "a number",
                serde_json::Value::Bool(_) => "a boolean",
                _ => "null",
            };
            return Err(validation("body", format!("must be a JSON object, got {kind}")));
        }
        serde_path_to_error::deserialize(value).map(ApiJson).map_err(|err| {
            let message = without_value(&err.inner().to_string());
            let path = err.path().to_string();
            let field = unknown_field_name(&message).unwrap_or(if path == "." { "body" } else { &path });
            validation(field, message.clone())
        })
    }
}

/// serde quotes the offending value (`invalid type: integer `12345`, expected a
/// string`); that value may be a password, so only its kind is kept.
fn without_value(message: &str) -> String {
    for prefix in ["invalid type: ", "invalid value: "] {
        if let Some((found, expected)) = message
            .strip_prefix(prefix)
            .and_then(|rest| rest.split_once(", expected "))
        {
            let kind = found.split_whitespace().next().unwrap_or(found);
            return format!("{prefix}{kind}, expected {expected}");
        }
    }
    message.to_owned()
}

fn is_json(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// `unknown field `x`, expected ...` → `x`.
fn unknown_field_name(message: &str) -> Option<&str> {
    message.strip_prefix("unknown field `")?.split('`').next()
}

/// A resource id from the path, checked to be a UUID.
pub struct IdPath(pub Uuid);

impl<S: Send + Sync> FromRequestParts<S> for IdPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let axum::extract::Path(raw) = axum::extract::Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| validation("id", "must be a UUID"))?;
        domain::validate::parse_uuid(&raw)
            .map(IdPath)
            .ok_or_else(|| validation("id", format!("must be a UUID, got {raw:?}")))
    }
}

/// The query string as key → value (last one wins); unknown keys are ignored.
pub struct QueryMap(pub HashMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for QueryMap {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or("");
        let pairs: Vec<(String, String)> =
            serde_urlencoded::from_str(query).map_err(|_| validation("query", "is not a valid query string"))?;
        Ok(QueryMap(pairs.into_iter().collect()))
    }
}

impl QueryMap {
    pub fn page(&self) -> Result<PageRequest, ApiError> {
        PageRequest::parse(
            self.0.get("limit").map(String::as_str),
            self.0.get("offset").map(String::as_str),
        )
        .map_err(ApiError)
    }

    pub fn uuid(&self, key: &str) -> Result<Option<Uuid>, ApiError> {
        match self.0.get(key) {
            None => Ok(None),
            Some(raw) => domain::validate::parse_uuid(raw.trim())
                .map(Some)
                .ok_or_else(|| validation(key, format!("must be a UUID, got {raw:?}"))),
        }
    }

    /// `true` or `false`; absent means `false`.
    pub fn flag(&self, key: &str) -> Result<bool, ApiError> {
        match self.0.get(key).map(|v| v.trim()) {
            None | Some("false") => Ok(false),
            Some("true") => Ok(true),
            Some(_) => Err(validation(key, "must be true or false")),
        }
    }

    /// A free-text parameter such as `search`; blank means absent.
    pub fn text(&self, key: &str) -> Result<Option<&str>, ApiError> {
        match self.0.get(key).map(String::as_str).filter(|s| !s.trim().is_empty()) {
            Some(text) if text.contains('\0') => Err(validation(key, domain::validate::NUL_MESSAGE)),
            text => Ok(text),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_do_not_quote_the_value() {
        assert_eq!(
            without_value("invalid type: integer `12345`, expected a string"),
            "invalid type: integer, expected a string"
        );
        assert_eq!(
            without_value("invalid type: string \"hunter2\", expected a boolean"),
            "invalid type: string, expected a boolean"
        );
        assert_eq!(without_value("missing field `name`"), "missing field `name`");
    }

    #[test]
    fn json_media_types() {
        assert!(is_json("application/json"));
        assert!(is_json("application/json; charset=utf-8"));
        assert!(is_json("Application/JSON"));
        assert!(is_json("application/merge-patch+json"));
        assert!(!is_json("application/xml"));
        assert!(!is_json("text/plain"));
    }

    #[test]
    fn unknown_field_is_named() {
        assert_eq!(
            unknown_field_name("unknown field `extra`, expected one of `name`"),
            Some("extra")
        );
        assert_eq!(unknown_field_name("missing field `name`"), None);
    }
}
