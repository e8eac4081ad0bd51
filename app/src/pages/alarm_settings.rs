//! `/alarm-rules`: what raises alarms (everyone sees the rules, admins change them), and
//! `/notification-channels` (admins): where notifications go, "Send test", and each
//! channel's delivery log.

use super::load_error;
use crate::components::{DataTable, FormError, IdSelect, TextField, UrlError};
use crate::server_fns::alarms::{
    channels_view, rules_view, ChannelWithLog, CreateAlarmRule, CreateChannel, DeleteAlarmRule, DeleteChannel,
    RulesPageData, SendTestNotification, SetAlarmRuleEnabled,
};
use domain::alarms::{AlarmKind, AlarmRule, Delivery};
use domain::machines::TrendValue;
use domain::AppError;
use leptos::form::ActionForm;
use leptos::prelude::*;
use uuid::Uuid;

#[component]
pub fn RulesPage() -> impl IntoView {
    let create = ServerAction::<CreateAlarmRule>::new();
    let toggle = ServerAction::<SetAlarmRuleEnabled>::new();
    let delete = ServerAction::<DeleteAlarmRule>::new();
    let data = Resource::new(
        move || (create.version().get(), toggle.version().get(), delete.version().get()),
        |_| rules_view(),
    );
    let create_error = Signal::derive(move || create.value().get().and_then(Result::err));
    view! {
        <header class="page-header">
            <h1>"Alarm rules"</h1>
            <p class="subtitle">"What raises an alarm, where, and how urgently"</p>
        </header>
        <UrlError />
        <Transition fallback=|| view! { <p>"Loading rules…"</p> }>
            {move || data.get().map(|result| match result {
                Ok(page) => {
                    let form = page
                        .can_edit
                        .then(|| rule_form(create, create_error, page.factories.clone(), page.machines.clone()));
                    view! {
                        {form}
                        <section class="card">{rule_table(page, toggle, delete)}</section>
                    }
                    .into_any()
                }
                Err(err) => load_error("alarm rules", err),
            })}
        </Transition>
    }
}

fn rule_form(
    create: ServerAction<CreateAlarmRule>,
    error: Signal<Option<AppError>>,
    factories: Vec<(Uuid, String)>,
    machines: Vec<(Uuid, String)>,
) -> AnyView {
    let kinds = AlarmKind::ALL
        .map(|k| view! { <option value=k.as_str()>{k.label()}</option> })
        .collect_view();
    let values = std::iter::once(view! { <option value="">"—"</option> }.into_any())
        .chain(TrendValue::ALL.map(|v| view! { <option value=v.as_str()>{v.as_str()}</option> }.into_any()))
        .collect_view();
    let field_message = move |name: &'static str, label: &'static str| {
        move || {
            error
                .get()
                .and_then(|e| e.field_message(name).map(|m| format!("{label} {m}")))
        }
    };
    view! {
        <section class="card">
            <h2>"Add a rule"</h2>
            <ActionForm action=create attr:class="form" attr:aria-label="Add rule">
                <div class="field">
                    <label for="rule-kind">"Kind"</label>
                    <select id="rule-kind" name="kind">{kinds}</select>
                    <p class="field-error" role="alert">{field_message("kind", "Kind")}</p>
                </div>
                <div class="field">
                    <label for="rule-severity">"Severity"</label>
                    <select id="rule-severity" name="severity">
                        <option value="warning">"Warning"</option>
                        <option value="critical">"Critical"</option>
                    </select>
                </div>
                <TextField label="Name" name="name" placeholder="e.g. Gateway down over 5 min" max_length=domain::NAME_MAX error />
                <TextField label="Delay (seconds)" name="delay_seconds" placeholder="300 for offline and silent rules" max_length=8 error />
                <p class="hint">"Scope: everything, or one factory, machine or sensor."</p>
                <IdSelect label="Factory" name="factory_id" choices=factories optional=true blank="All factories" error />
                <IdSelect label="Machine" name="machine_id" choices=machines optional=true blank="Any machine" error />
                <TextField label="Sensor serial (thresholds, silent sensors)" name="serial" placeholder="e.g. 40417" max_length=20 error />
                <div class="field">
                    <label for="rule-value">"Value (thresholds)"</label>
                    <select id="rule-value" name="value">{values}</select>
                    <p class="field-error" role="alert">{field_message("value", "Value")}</p>
                </div>
                <TextField label="Alert level" name="alert" placeholder="e.g. 4.5" max_length=12 error />
                <TextField label="Danger level" name="danger" placeholder="e.g. 7.1" max_length=12 error />
                <p class="hint">
                    "A velocity rule on a machine with an ISO 20816 group may leave both levels blank: "
                    "it takes the group's zone boundaries, B/C as alert and C/D as danger."
                </p>
                <TextField label="Consecutive readings" name="consecutive" placeholder="1" max_length=3 error />
                <TextField label="Hysteresis (%)" name="hysteresis" placeholder="10" max_length=6 error />
                <FormError error />
                <button type="submit" class="primary" disabled=move || create.pending().get()>"Add rule"</button>
            </ActionForm>
        </section>
    }
    .into_any()
}

fn scope_text(rule: &AlarmRule, factories: &[(Uuid, String)]) -> String {
    if let Some(id) = rule.factory_id {
        let name = factories
            .iter()
            .find(|(f, _)| *f == id)
            .map_or("a factory", |(_, n)| n.as_str());
        return format!("Factory {name}");
    }
    if let Some(serial) = rule.serial {
        return format!("Sensor {serial}");
    }
    if rule.machine_id.is_some() {
        return "One machine".into();
    }
    if rule.gateway_id.is_some() {
        return "One gateway".into();
    }
    "Everything".into()
}

fn rule_table(
    page: RulesPageData,
    toggle: ServerAction<SetAlarmRuleEnabled>,
    delete: ServerAction<DeleteAlarmRule>,
) -> AnyView {
    if page.rules.is_empty() {
        return view! { <div class="empty"><h2>"No rules yet"</h2><p>"Without rules, nothing raises an alarm."</p></div> }
            .into_any();
    }
    let count = page.rules.len();
    let rows = page
        .rules
        .iter()
        .map(|rule| {
            let (id, enabled) = (rule.id, rule.enabled);
            let actions = page.can_edit.then(|| {
                view! {
                    <button type="button" on:click=move |_| {
                        toggle.dispatch(SetAlarmRuleEnabled { id, enabled: !enabled });
                    }>{if enabled { "Disable" } else { "Enable" }}</button>
                    " "
                    <button type="button" class="danger" on:click=move |_| {
                        delete.dispatch(DeleteAlarmRule { id });
                    }>"Delete"</button>
                }
            });
            view! {
                <tr>
                    <td class="strong">{rule.name.clone()}</td>
                    <td>{rule.kind.label()}</td>
                    <td><span class=format!("badge severity-{}", rule.severity.as_str())>{rule.severity.as_str()}</span></td>
                    <td>{scope_text(rule, &page.factories)}</td>
                    <td>{rule.describe()}</td>
                    <td>{if enabled { "On" } else { "Off" }}</td>
                    <td>{actions}</td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <h2>{format!("{count} {}", if count == 1 { "rule" } else { "rules" })}</h2>
        <DataTable label="Alarm rules" columns=vec![("Name", ""), ("Kind", ""), ("Severity", ""), ("Scope", ""), ("Condition", ""), ("Enabled", ""), ("", "")]>
            {rows}
        </DataTable>
    }
    .into_any()
}

#[component]
pub fn ChannelsPage() -> impl IntoView {
    let create = ServerAction::<CreateChannel>::new();
    let delete = ServerAction::<DeleteChannel>::new();
    let test = ServerAction::<SendTestNotification>::new();
    let refresh = RwSignal::new(0u32);
    let data = Resource::new(
        move || {
            (
                create.version().get(),
                delete.version().get(),
                test.version().get(),
                refresh.get(),
            )
        },
        |_| channels_view(),
    );
    let create_error = Signal::derive(move || create.value().get().and_then(Result::err));
    view! {
        <header class="page-header">
            <h1>"Notification channels"</h1>
            <p class="subtitle">"Where alarms are sent: signed webhooks and e-mail, each delivery logged"</p>
        </header>
        <UrlError />
        {channel_form(create, create_error)}
        <Transition fallback=|| view! { <p>"Loading channels…"</p> }>
            {move || data.get().map(|result| match result {
                Ok(channels) if channels.is_empty() => view! {
                    <section class="card"><div class="empty"><h2>"No channels yet"</h2>
                    <p>"Add a webhook or an e-mail address to be told of alarms."</p></div></section>
                }.into_any(),
                Ok(channels) => channels
                    .into_iter()
                    .map(|c| channel_card(c, delete, test, refresh))
                    .collect_view()
                    .into_any(),
                Err(err) => load_error("notification channels", err),
            })}
        </Transition>
    }
}

fn channel_form(create: ServerAction<CreateChannel>, error: Signal<Option<AppError>>) -> AnyView {
    let field_message = move |name: &'static str, label: &'static str| {
        move || {
            error
                .get()
                .and_then(|e| e.field_message(name).map(|m| format!("{label} {m}")))
        }
    };
    view! {
        <section class="card">
            <h2>"Add a channel"</h2>
            <ActionForm action=create attr:class="form" attr:aria-label="Add channel">
                <div class="field">
                    <label for="channel-kind">"Kind"</label>
                    <select id="channel-kind" name="kind">
                        <option value="webhook">"Webhook"</option>
                        <option value="email">"E-mail"</option>
                    </select>
                    <p class="field-error" role="alert">{field_message("kind", "Kind")}</p>
                </div>
                <TextField label="Name" name="name" placeholder="e.g. Maintenance on call" required=true max_length=domain::NAME_MAX error />
                <TextField label="Webhook URL" name="url" placeholder="https://hooks.example.com/…" max_length=domain::alarms::URL_MAX error />
                <div class="field">
                    <label for="field-secret">"Signing secret (webhooks)"</label>
                    <input id="field-secret" name="secret" type="password" autocomplete="new-password" maxlength=domain::alarms::SECRET_MAX />
                    <p class="field-error" role="alert">{field_message("secret", "Secret")}</p>
                </div>
                <TextField label="E-mail to" name="to" placeholder="a@plant.example, b@plant.example" max_length=domain::alarms::URL_MAX error />
                <FormError error />
                <button type="submit" class="primary" disabled=move || create.pending().get()>"Add channel"</button>
            </ActionForm>
        </section>
    }
    .into_any()
}

fn delivery_row(d: Delivery) -> impl IntoView {
    let last = d.attempt_log.last().map(|a| match (a.status_code, &a.error) {
        (Some(code), _) => format!("HTTP {code} in {} ms", a.duration_ms),
        (None, Some(error)) => error.clone(),
        (None, None) => format!("sent in {} ms", a.duration_ms),
    });
    view! {
        <tr>
            <td>{d.created_at.format("%Y-%m-%d %H:%M:%S").to_string()}</td>
            <td>{d.event}</td>
            <td><span class=format!("badge delivery-{}", d.status)>{d.status.clone()}</span></td>
            <td class="num">{d.attempts}</td>
            <td>{last.unwrap_or_else(|| "—".into())}</td>
        </tr>
    }
}

fn channel_card(
    item: ChannelWithLog,
    delete: ServerAction<DeleteChannel>,
    test: ServerAction<SendTestNotification>,
    refresh: RwSignal<u32>,
) -> impl IntoView {
    let ChannelWithLog { channel, deliveries } = item;
    let id = channel.id;
    let target = channel.url.clone().or(channel.to.clone()).unwrap_or_default();
    let severities = channel
        .severities
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    let log = if deliveries.is_empty() {
        view! { <p class="muted">"Nothing sent yet."</p> }.into_any()
    } else {
        view! {
            <DataTable label="Deliveries" columns=vec![("Queued", ""), ("Event", ""), ("Status", ""), ("Attempts", "num"), ("Last attempt", "")]>
                {deliveries.into_iter().map(delivery_row).collect_view()}
            </DataTable>
        }
        .into_any()
    };
    view! {
        <section class="card channel" aria-label=format!("Channel {}", channel.name)>
            <h2>{channel.name.clone()}</h2>
            <p>
                {format!("{} to {target}", channel.kind.as_str())}
                {channel.has_secret.then_some(" (signed)")}
                {format!(" · {severities}{}", if channel.send_clears { ", clears too" } else { "" })}
            </p>
            <p>
                <button type="button" on:click=move |_| { test.dispatch(SendTestNotification { id }); }>"Send test"</button>
                " "
                <button type="button" on:click=move |_| refresh.update(|n| *n += 1)>"Refresh log"</button>
                " "
                <button type="button" class="danger" on:click=move |_| { delete.dispatch(DeleteChannel { id }); }>"Delete"</button>
            </p>
            <h3>"Delivery log"</h3>
            {log}
        </section>
    }
}

lazy_page!(RulesRoute, RulesPage);
lazy_page!(ChannelsRoute, ChannelsPage);
