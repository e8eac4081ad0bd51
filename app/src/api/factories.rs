use domain::{AppError, Factory, Page};
use leptos::server;

#[cfg(feature = "ssr")]
use crate::ssr;

/// A factory as the factories table shows it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FactoryListItem {
    pub factory: Factory,
    pub gateway_count: i64,
}

#[server(prefix = "/rpc")]
pub async fn list_factories(offset: u64, search: Option<String>) -> Result<Page<FactoryListItem>, AppError> {
    let store = ssr::store()?;
    let page = domain::PageRequest {
        limit: domain::page::DEFAULT_LIMIT,
        offset,
    };
    let page = store.list_factories_with_counts(page, search.as_deref()).await?;
    Ok(Page {
        data: page
            .data
            .into_iter()
            .map(|row| FactoryListItem {
                factory: row.factory,
                gateway_count: row.gateway_count,
            })
            .collect(),
        pagination: page.pagination,
    })
}

/// Creates a factory in the only organization there is (the form has no
/// organization field until there can be several).
#[server(prefix = "/rpc")]
pub async fn create_factory(name: String, location: String, timezone: String) -> Result<Factory, AppError> {
    let store = ssr::store()?;
    let input = domain::FactoryInput {
        name: Some(name),
        location: Some(location),
        timezone: Some(timezone),
        ..Default::default()
    }
    .validate()?;
    let factory = store.create_factory(input).await?;
    tracing::info!(factory_id = %factory.id, "factory created");
    Ok(factory)
}
