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
}

#[server(prefix = "/rpc", endpoint = "list_gateways")]
pub async fn list_gateways(factory: Option<Uuid>, offset: u64) -> Result<Page<GatewayListItem>, AppError> {
    ssr::require_user().await?;
    let store = ssr::store()?;
    let filter = store::GatewayFilter {
        factory_id: factory,
        ..Default::default()
    };
    let page = domain::PageRequest {
        limit: domain::page::DEFAULT_LIMIT,
        offset,
    };
    let page = store.list_gateways(&filter, page).await?;
    let names = store.factory_names().await?;
    let name_of = |id: Uuid| {
        names
            .iter()
            .find(|(fid, _)| *fid == id)
            .map_or_else(|| "—".to_owned(), |(_, name)| name.clone())
    };
    let orchestrator = leptos::prelude::use_context::<orchestrator::Orchestrator>();
    Ok(Page {
        data: page
            .data
            .into_iter()
            .map(|gateway| GatewayListItem {
                factory_name: name_of(gateway.factory_id),
                state: orchestrator
                    .as_ref()
                    .and_then(|o| o.status(gateway.id))
                    .map(|live| live.state),
                gateway,
            })
            .collect(),
        pagination: page.pagination,
    })
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
    ssr::answer_form_keeping("/gateways", "/gateways", &kept, create_gateway_checked(form).await)
}

#[cfg(feature = "ssr")]
async fn create_gateway_checked(form: GatewayForm) -> Result<Gateway, AppError> {
    let user = ssr::require_admin().await?;
    let store = ssr::store()?;
    let gateway = store.create_gateway(form.into_input().validate()?).await?;
    tracing::info!(gateway = %gateway.id, user_id = %user.id, "gateway created");
    Ok(gateway)
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
    ssr::answer_form_keeping("/gateways", &retry, &kept, update_gateway_checked(id, form).await)
}

#[cfg(feature = "ssr")]
async fn update_gateway_checked(id: Uuid, form: GatewayForm) -> Result<Gateway, AppError> {
    let user = ssr::require_admin().await?;
    let store = ssr::store()?;
    let gateway = store.update_gateway(id, form.into_patch().validate()?).await?;
    tracing::info!(gateway = %gateway.id, user_id = %user.id, "gateway updated");
    Ok(gateway)
}

#[server(prefix = "/rpc", endpoint = "delete_gateway")]
pub async fn delete_gateway(id: Uuid) -> Result<String, AppError> {
    ssr::answer_form("/gateways", delete_gateway_checked(id).await)
}

#[cfg(feature = "ssr")]
async fn delete_gateway_checked(id: Uuid) -> Result<String, AppError> {
    let user = ssr::require_admin().await?;
    let store = ssr::store()?;
    let gateway = store.get_gateway(id).await?;
    store.delete_gateway(id).await?;
    tracing::info!(gateway = %id, user_id = %user.id, "gateway deleted");
    Ok(gateway.name)
}
