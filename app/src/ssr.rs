//! What server functions need from the server: the store, provided as context by
//! the HTTP layer for every request.

use domain::AppError;
use leptos::prelude::use_context;
use store::Store;

pub fn store() -> Result<Store, AppError> {
    use_context::<Store>().ok_or_else(|| {
        tracing::error!("server function ran without a Store in context");
        AppError::internal()
    })
}
