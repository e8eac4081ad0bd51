use domain::{AppError, Gateway, Page};
use leptos::server;
use uuid::Uuid;

#[cfg(feature = "ssr")]
use crate::ssr;

/// A gateway as the gateways table shows it: with its factory's name.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GatewayListItem {
    pub gateway: Gateway,
    pub factory_name: String,
    /// Connection state from the orchestrator when the page was loaded.
    pub state: Option<domain::live::ConnectionState>,
    /// Percent of the last 24 hours online (of the part the gateway existed).
    pub uptime_24h: Option<f64>,
}

/// One page of the gateways table, and the live stream position it is as new as.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GatewayList {
    pub page: Page<GatewayListItem>,
    pub as_of: u64,
}

/// `state` filters by live state, `sort` names a column (`GatewaySort`), `order` is
/// `asc` or `desc`; the same rules as `GET /api/gateways`.
#[server(prefix = "/rpc", endpoint = "list_gateways")]
pub async fn list_gateways(
    factory: Option<Uuid>,
    offset: u64,
    state: Option<String>,
    sort: Option<String>,
    order: Option<String>,
) -> Result<GatewayList, AppError> {
    use domain::live::ConnectionState;
    use domain::{FieldError, GatewaySort};
    ssr::require_user().await?;
    let store = ssr::store()?;
    let orchestrator = leptos::prelude::use_context::<orchestrator::Orchestrator>().ok_or_else(AppError::internal)?;
    let as_of = orchestrator.stream_position();
    let refuse = |field: &str, message: String| AppError::validation(vec![FieldError::new(field, message)]);
    let sort = match sort.as_deref().filter(|s| !s.is_empty()) {
        None => GatewaySort::default(),
        Some(raw) => GatewaySort::parse(raw).ok_or_else(|| refuse("sort", format!("unknown column {raw:?}")))?,
    };
    let descending = match order.as_deref() {
        None | Some("") | Some("asc") => false,
        Some("desc") => true,
        Some(_) => return Err(refuse("order", "must be asc or desc".into())),
    };
    let ids = match state.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(raw) => {
            let wanted =
                ConnectionState::parse(raw).ok_or_else(|| refuse("state", format!("unknown state {raw:?}")))?;
            Some(orchestrator.ids_in_state(wanted))
        }
    };
    let filter = store::GatewayFilter {
        factory_id: factory,
        ids,
        sort,
        descending,
        ..Default::default()
    };
    let page = domain::PageRequest {
        limit: domain::page::DEFAULT_LIMIT,
        offset,
    };
    let page = store.list_gateways(&filter, page).await?;
    let names: std::collections::HashMap<Uuid, String> = store.factory_names().await?.into_iter().collect();
    let listed: Vec<Uuid> = page.data.iter().map(|g| g.id).collect();
    let uptime = store.uptime_last_day(&listed, chrono::Utc::now()).await?;
    Ok(GatewayList {
        page: Page {
            data: page
                .data
                .into_iter()
                .map(|gateway| GatewayListItem {
                    factory_name: names
                        .get(&gateway.factory_id)
                        .cloned()
                        .unwrap_or_else(|| "—".to_owned()),
                    state: orchestrator.status(gateway.id).map(|live| live.state),
                    uptime_24h: uptime.get(&gateway.id).copied(),
                    gateway,
                })
                .collect(),
            pagination: page.pagination,
        },
        as_of,
    })
}

/// One action on the selected gateways (admins), each on its own.
#[server(prefix = "/rpc", endpoint = "bulk_gateways")]
pub async fn bulk_gateways(
    action: domain::live::BulkAction,
    ids: Vec<Uuid>,
) -> Result<domain::live::BulkOutcome, AppError> {
    ssr::require_admin().await?;
    let orchestrator = leptos::prelude::use_context::<orchestrator::Orchestrator>().ok_or_else(AppError::internal)?;
    orchestrator.bulk(action, ids).await
}

/// The gateway form as posted (create and edit share it). Blank optional fields
/// mean "none"; on edit, a blank or absent password keeps the stored one.
#[cfg(feature = "ssr")]
struct GatewayForm {
    factory_id: String,
    gateway_id: String,
    name: String,
    url: String,
    email: String,
    password: Option<String>,
    model: String,
    firmware_version: String,
    tls_pin: String,
}

#[cfg(feature = "ssr")]
impl GatewayForm {
    /// The fields a refused plain form post sends back: all but the password.
    fn kept(&self) -> [(&'static str, String); 8] {
        [
            ("factory_id", &self.factory_id),
            ("gateway_id", &self.gateway_id),
            ("name", &self.name),
            ("url", &self.url),
            ("email", &self.email),
            ("model", &self.model),
            ("firmware_version", &self.firmware_version),
            ("tls_pin", &self.tls_pin),
        ]
        .map(|(field, value)| (field, value.clone()))
    }

    fn password(&mut self) -> Option<domain::GatewayPassword> {
        self.password
            .take()
            .filter(|p| !p.is_empty())
            .map(domain::GatewayPassword::new)
    }

    fn into_input(mut self) -> domain::GatewayInput {
        domain::GatewayInput {
            password: self.password(),
            factory_id: Some(self.factory_id),
            gateway_id: Some(self.gateway_id),
            name: Some(self.name),
            url: Some(self.url),
            email: Some(self.email),
            model: optional(self.model),
            firmware_version: optional(self.firmware_version),
            tls_pin: optional(self.tls_pin),
            ..Default::default()
        }
    }

    fn into_patch(mut self) -> domain::GatewayPatch {
        domain::GatewayPatch {
            password: self.password(),
            factory_id: Some(self.factory_id),
            gateway_id: Some(self.gateway_id),
            name: Some(self.name),
            url: Some(self.url),
            email: Some(self.email),
            model: Some(optional(self.model)),
            firmware_version: Some(optional(self.firmware_version)),
            tls_pin: Some(optional(self.tls_pin)),
            ..Default::default()
        }
    }
}

/// Blank form fields mean "none".
#[cfg(feature = "ssr")]
fn optional(value: String) -> Option<String> {
    Some(value).filter(|v| !v.trim().is_empty())
}

#[server(prefix = "/rpc", endpoint = "create_gateway")]
#[allow(clippy::too_many_arguments)]
pub async fn create_gateway(
    factory_id: String,
    gateway_id: String,
    name: String,
    url: String,
    email: String,
    password: String,
    model: String,
    firmware_version: String,
    #[server(default)] tls_pin: String,
) -> Result<Gateway, AppError> {
    let form = GatewayForm {
        factory_id,
        gateway_id,
        name,
        url,
        email,
        password: Some(password),
        model,
        firmware_version,
        tls_pin,
    };
    let kept = form.kept();
    let result: Result<Gateway, AppError> = async {
        let user = ssr::require_admin().await?;
        let store = ssr::store()?;
        let gateway = store.create_gateway(form.into_input().validate()?).await?;
        tracing::info!(gateway = %gateway.id, user_id = %user.id, "gateway created");
        Ok(gateway)
    }
    .await;
    ssr::answer_form_keeping("/gateways", "/gateways", &kept, result)
}

/// Changes a gateway. A blank (or absent) password keeps the stored one; the
/// form leaves the field out when it is blank.
#[server(prefix = "/rpc", endpoint = "update_gateway")]
#[allow(clippy::too_many_arguments)]
pub async fn update_gateway(
    id: Uuid,
    factory_id: String,
    gateway_id: String,
    name: String,
    url: String,
    email: String,
    #[server(default)] password: Option<String>,
    model: String,
    firmware_version: String,
    #[server(default)] tls_pin: String,
) -> Result<Gateway, AppError> {
    let form = GatewayForm {
        factory_id,
        gateway_id,
        name,
        url,
        email,
        password,
        model,
        firmware_version,
        tls_pin,
    };
    let kept = form.kept();
    let retry = format!("/gateways?edit={id}");
    let result: Result<Gateway, AppError> = async {
        let user = ssr::require_admin().await?;
        let store = ssr::store()?;
        let gateway = store.update_gateway(id, form.into_patch().validate()?).await?;
        tracing::info!(gateway = %gateway.id, user_id = %user.id, "gateway updated");
        Ok(gateway)
    }
    .await;
    ssr::answer_form_keeping("/gateways", &retry, &kept, result)
}

#[server(prefix = "/rpc", endpoint = "delete_gateway")]
pub async fn delete_gateway(id: Uuid) -> Result<String, AppError> {
    let result: Result<String, AppError> = async {
        let user = ssr::require_admin().await?;
        let store = ssr::store()?;
        let gateway = store.get_gateway(id).await?;
        store.delete_gateway(id).await?;
        tracing::info!(gateway = %id, user_id = %user.id, "gateway deleted");
        Ok(gateway.name)
    }
    .await;
    ssr::answer_form("/gateways", result)
}
