//! Pagination: the request (`limit`, `offset`) and the list envelope.

use crate::error::{AppError, FieldError};
use serde::{Deserialize, Serialize};

pub const DEFAULT_LIMIT: u32 = 20;
pub const MAX_LIMIT: u32 = 100;

/// A validated page request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PageRequest {
    pub limit: u32,
    pub offset: u64,
}

impl Default for PageRequest {
    fn default() -> Self {
        Self {
            limit: DEFAULT_LIMIT,
            offset: 0,
        }
    }
}

impl PageRequest {
    /// Parses the raw query values: both must be whole numbers, `limit` 1..=100
    /// (default 20), `offset` >= 0 (default 0). `2.5`, `abc` and `` are refused.
    pub fn parse(limit: Option<&str>, offset: Option<&str>) -> Result<Self, AppError> {
        let mut errors = Vec::new();
        let limit = match limit {
            None => DEFAULT_LIMIT,
            Some(raw) => match raw.trim().parse::<i64>() {
                Ok(n) if (1..=MAX_LIMIT as i64).contains(&n) => n as u32,
                Ok(_) => {
                    errors.push(FieldError::new("limit", "must be between 1 and 100"));
                    DEFAULT_LIMIT
                }
                Err(_) => {
                    errors.push(FieldError::new("limit", "must be a whole number"));
                    DEFAULT_LIMIT
                }
            },
        };
        let offset = match offset {
            None => 0,
            Some(raw) => match raw.trim().parse::<i64>() {
                Ok(n) if n >= 0 => n as u64,
                Ok(_) => {
                    errors.push(FieldError::new("offset", "must be 0 or more"));
                    0
                }
                Err(_) => {
                    errors.push(FieldError::new("offset", "must be a whole number"));
                    0
                }
            },
        };
        if errors.is_empty() {
            Ok(Self { limit, offset })
        } else {
            Err(AppError::validation(errors))
        }
    }
}

/// The list envelope: `{"data": [...], "pagination": {...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Page<T> {
    pub data: Vec<T>,
    pub pagination: Pagination,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Pagination {
    pub total: u64,
    pub limit: u32,
    pub offset: u64,
    #[serde(rename = "hasNext")]
    pub has_next: bool,
    #[serde(rename = "hasPrev")]
    pub has_prev: bool,
}

impl<T> Page<T> {
    /// The page `request` asks for out of `all`, a list read whole.
    pub fn slice(all: Vec<T>, request: PageRequest) -> Self {
        let total = all.len() as u64;
        let offset = usize::try_from(request.offset).unwrap_or(usize::MAX);
        let data = all.into_iter().skip(offset).take(request.limit as usize).collect();
        Self::new(data, total, request)
    }

    pub fn new(data: Vec<T>, total: u64, request: PageRequest) -> Self {
        Self {
            data,
            pagination: Pagination {
                total,
                limit: request.limit,
                offset: request.offset,
                has_next: request.offset + u64::from(request.limit) < total,
                has_prev: request.offset > 0,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_read_whole_is_sliced_into_its_page() {
        let page = Page::slice(vec![1, 2, 3, 4, 5], PageRequest { limit: 2, offset: 3 });
        assert_eq!(
            (page.data, page.pagination.total, page.pagination.has_next),
            (vec![4, 5], 5, false)
        );
        let beyond = Page::slice(
            vec![1, 2],
            PageRequest {
                limit: 2,
                offset: u64::MAX / 2,
            },
        );
        assert_eq!((beyond.data.len(), beyond.pagination.total), (0, 2));
    }

    #[test]
    fn defaults_apply_when_absent() {
        assert_eq!(PageRequest::parse(None, None).unwrap(), PageRequest::default());
    }

    #[test]
    fn bounds_are_inclusive() {
        assert_eq!(PageRequest::parse(Some("1"), Some("0")).unwrap().limit, 1);
        assert_eq!(PageRequest::parse(Some("100"), None).unwrap().limit, 100);
    }

    #[test]
    fn rejects_fractions_words_empty_and_out_of_range() {
        for (limit, offset) in [
            (Some("2.5"), None),
            (Some("abc"), None),
            (Some(""), None),
            (Some("0"), None),
            (Some("101"), None),
            (None, Some("-1")),
            (None, Some("1.5")),
        ] {
            let err = PageRequest::parse(limit, offset).unwrap_err();
            assert_eq!(err.code(), "VALIDATION_ERROR", "{limit:?} {offset:?}");
        }
    }

    #[test]
    fn flags_follow_position() {
        let page = Page::new(vec![1, 2], 3, PageRequest { limit: 2, offset: 1 });
        assert!(!page.pagination.has_next);
        assert!(page.pagination.has_prev);
        let page = Page::new(vec![1, 2], 3, PageRequest { limit: 2, offset: 0 });
        assert!(page.pagination.has_next);
        assert!(!page.pagination.has_prev);
    }
}
