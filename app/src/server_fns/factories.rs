use domain::{AppError, Factory, Page};
use leptos::server;
use uuid::Uuid;

#[cfg(feature = "ssr")]
use crate::ssr;

/// A factory as the factories table shows it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FactoryListItem {
    pub factory: Factory,
    pub gateway_count: i64,
}

#[server(prefix = "/rpc", endpoint = "list_factories")]
pub async fn list_factories(offset: u64, search: Option<String>) -> Result<Page<FactoryListItem>, AppError> {
    ssr::require_user().await?;
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

/// Every factory's id and name, for pick lists.
#[server(prefix = "/rpc", endpoint = "factory_names")]
pub async fn factory_names() -> Result<Vec<(Uuid, String)>, AppError> {
    ssr::require_user().await?;
    Ok(ssr::store()?.factory_names().await?)
}

/// Creates a factory in the only organization there is (the form has no
/// organization field until there can be several).
#[server(prefix = "/rpc", endpoint = "create_factory")]
pub async fn create_factory(name: String, location: String, timezone: String) -> Result<Factory, AppError> {
    let kept = [
        ("name", name.clone()),
        ("location", location.clone()),
        ("timezone", timezone.clone()),
    ];
    let created: Result<Factory, AppError> = async {
        let user = ssr::require_admin().await?;
        let store = ssr::store()?;
        let input = domain::FactoryInput {
            name: Some(name),
            location: Some(location),
            timezone: Some(timezone),
            ..Default::default()
        }
        .validate()?;
        let factory = store.create_factory(input).await?;
        tracing::info!(factory_id = %factory.id, user_id = %user.id, "factory created");
        Ok(factory)
    }
    .await;
    ssr::answer_form_keeping("/factories", "/factories", &kept, created)
}

/// Changes a factory's name, location (blank clears it) and time zone.
#[server(prefix = "/rpc", endpoint = "update_factory")]
pub async fn update_factory(id: Uuid, name: String, location: String, timezone: String) -> Result<Factory, AppError> {
    let kept = [
        ("name", name.clone()),
        ("location", location.clone()),
        ("timezone", timezone.clone()),
    ];
    let updated: Result<Factory, AppError> = async {
        let user = ssr::require_admin().await?;
        let store = ssr::store()?;
        let changes = domain::FactoryPatch {
            name: Some(name),
            location: Some(Some(location)),
            timezone: Some(timezone),
            ..Default::default()
        }
        .validate()?;
        let factory = store.update_factory(id, changes).await?;
        tracing::info!(factory_id = %factory.id, user_id = %user.id, "factory updated");
        Ok(factory)
    }
    .await;
    ssr::answer_form_keeping("/factories", &format!("/factories?edit={id}"), &kept, updated)
}

/// What a delete removed, for the notice.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FactoryDeleted {
    pub name: String,
    pub gateways_deleted: usize,
}

/// Deletes a factory and, with it, its gateways.
#[server(prefix = "/rpc", endpoint = "delete_factory")]
pub async fn delete_factory(id: Uuid) -> Result<FactoryDeleted, AppError> {
    let result: Result<FactoryDeleted, AppError> = async {
        let user = ssr::require_admin().await?;
        let store = ssr::store()?;
        let factory = store.get_factory(id).await?;
        let gateways = store.delete_factory(id).await?;
        tracing::info!(factory_id = %id, user_id = %user.id, gateways = gateways.len(), "factory deleted");
        Ok(FactoryDeleted {
            name: factory.name,
            gateways_deleted: gateways.len(),
        })
    }
    .await;
    ssr::answer_form("/factories", result)
}

#[server(prefix = "/rpc", endpoint = "get_factory")]
pub async fn get_factory(id: Uuid) -> Result<Factory, AppError> {
    ssr::require_user().await?;
    Ok(ssr::store()?.get_factory(id).await?)
}
