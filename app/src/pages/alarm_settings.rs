//! `/alarm-rules`: what raises alarms (everyone sees the rules, admins change them), and
//! `/notification-channels` (admins): where notifications go, "Send test", and each
//! channel's delivery log.

use super::{load_error, query_value};
use crate::components::{DataTable, FormError, IdSelect, TextField, UrlError};
use crate::server_fns::alarms::{
    channels_view, rules_view, ChannelWithLog, DeleteAlarmRule, DeleteChannel, RulesPageData, SaveAlarmRule,
    SaveChannel, SendTestNotification, SetAlarmRuleEnabled,
};
use domain::alarms::{AlarmKind, AlarmRule, Delivery, NotificationChannel, Severity};
use domain::machines::TrendValue;
use domain::AppError;
use leptos::form::ActionForm;
use leptos::prelude::*;
use leptos_router::components::A;
use leptos_router::hooks::use_navigate;
use uuid::Uuid;

#[component]
pub fn RulesPage() -> impl IntoView {
    let edit = query_value("edit");
    let save = ServerAction::<SaveAlarmRule>::new();
    let toggle = ServerAction::<SetAlarmRuleEnabled>::new();
    let delete = ServerAction::<DeleteAlarmRule>::new();
    let saved = count_saves(
        move || save.value().with(|v| matches!(v, Some(Ok(_)))),
        edit,
        "/alarm-rules",
    );
    let data = Resource::new(
        move || (saved.get(), toggle.version().get(), delete.version().get()),
        |_| rules_view(),
    );
    let save_error = Signal::derive(move || save.value().get().and_then(Result::err));
    view! {
        <header class="page-header">
            <h1>"Alarm rules"</h1>
            <p class="subtitle">"What raises an alarm, where, and how urgently"</p>
        </header>
        <UrlError />
        <Transition fallback=|| view! { <p>"Loading rules…"</p> }>
            {move || data.get().map(|result| match result {
                Ok(page) => {
                    let editing = edit
                        .get()
                        .and_then(|id| page.rules.iter().find(|r| r.id.to_string() == id).cloned());
                    let form = page.can_edit.then(|| {
                        rule_form(save, save_error, page.factories.clone(), page.machines.clone(), editing)
                    });
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

/// Counts the successful saves of a form's action (a refused one must not re-render,
/// and so empty, the form being corrected); after saving an edit, goes back to `page`.
fn count_saves(
    succeeded: impl Fn() -> bool + 'static,
    edit: Memo<Option<String>>,
    page: &'static str,
) -> RwSignal<u32> {
    let saved = RwSignal::new(0u32);
    let navigate = use_navigate();
    Effect::new(move |_| {
        if succeeded() {
            saved.update(|n| *n += 1);
            if edit.get_untracked().is_some() {
                navigate(page, Default::default());
            }
        }
    });
    saved
}

/// `<option>`s of `choices` (value, text), `chosen` selected.
fn options<'a>(choices: impl IntoIterator<Item = (&'a str, &'a str)>, chosen: &str) -> AnyView {
    choices
        .into_iter()
        .map(|(value, text)| {
            let selected = value == chosen;
            view! { <option value=value.to_owned() selected=selected>{text.to_owned()}</option> }
        })
        .collect_view()
        .into_any()
}

/// The form that adds a rule, or edits `editing` (its kind stays).
fn rule_form(
    save: ServerAction<SaveAlarmRule>,
    error: Signal<Option<AppError>>,
    factories: Vec<(Uuid, String)>,
    machines: Vec<(Uuid, String)>,
    editing: Option<AlarmRule>,
) -> AnyView {
    let field_message = move |name: &'static str, label: &'static str| {
        move || {
            error
                .get()
                .and_then(|e| e.field_message(name).map(|m| format!("{label} {m}")))
        }
    };
    let rule = editing.clone();
    let text = |f: fn(&AlarmRule) -> Option<String>| rule.as_ref().and_then(f).unwrap_or_default();
    let (name, delay, serial) = (
        text(|r| Some(r.name.clone())),
        text(|r| Some(r.delay_seconds.to_string())),
        text(|r| r.serial.map(|s| s.to_string())),
    );
    let (alert, danger, consecutive, hysteresis) = (
        text(|r| r.alert.map(|l| l.to_string())),
        text(|r| r.danger.map(|l| l.to_string())),
        text(|r| Some(r.consecutive.to_string())),
        text(|r| Some(r.hysteresis.to_string())),
    );
    let factory = rule.as_ref().and_then(|r| r.factory_id).unwrap_or_default();
    let machine = rule.as_ref().and_then(|r| r.machine_id).unwrap_or_default();
    let kind = rule.as_ref().map_or("", |r| r.kind.as_str());
    let kind_select = match &rule {
        // The kind of a rule never changes: shown, not sent.
        Some(_) => view! { <select id="rule-kind" disabled=true>{options(AlarmKind::ALL.map(|k| (k.as_str(), k.label())), kind)}</select> }.into_any(),
        None => view! { <select id="rule-kind" name="kind">{options(AlarmKind::ALL.map(|k| (k.as_str(), k.label())), kind)}</select> }.into_any(),
    };
    let severity = rule.as_ref().map_or("warning", |r| r.severity.as_str());
    let value = rule.as_ref().and_then(|r| r.value).map_or("", TrendValue::as_str);
    let values = std::iter::once(("", "—")).chain(TrendValue::ALL.map(|v| (v.as_str(), v.as_str())));
    let (heading, button, label) = match &rule {
        Some(r) => (format!("Edit “{}”", r.name), "Save changes", "Edit rule"),
        None => ("Add a rule".to_owned(), "Add rule", "Add rule"),
    };
    let hidden = rule.as_ref().map(|r| {
        view! {
            <input type="hidden" name="id" value=r.id.to_string() />
            // Kept as it is: the form has no gateway field (set through the API).
            {r.gateway_id.map(|g| view! { <input type="hidden" name="gateway_id" value=g.to_string() /> })}
        }
    });
    view! {
        <section class="card">
            <h2>{heading}</h2>
            <ActionForm action=save attr:class="form" attr:aria-label=label>
                {hidden}
                <div class="field">
                    <label for="rule-kind">"Kind"</label>
                    {kind_select}
                    <p class="field-error" role="alert">{field_message("kind", "Kind")}</p>
                </div>
                <div class="field">
                    <label for="rule-severity">"Severity"</label>
                    <select id="rule-severity" name="severity">
                        {options([("warning", "Warning"), ("critical", "Critical")], severity)}
                    </select>
                </div>
                <TextField label="Name" name="name" value=name placeholder="e.g. Gateway down over 5 min" max_length=domain::NAME_MAX error />
                <TextField label="Delay (seconds)" name="delay_seconds" value=delay placeholder="300 for offline and silent rules" max_length=8 error />
                <p class="hint">"Scope: everything, or one factory, machine or sensor."</p>
                <IdSelect label="Factory" name="factory_id" choices=factories selected=factory optional=true blank="All factories" error />
                <IdSelect label="Machine" name="machine_id" choices=machines selected=machine optional=true blank="Any machine" error />
                <TextField label="Sensor serial (thresholds, silent sensors)" name="serial" value=serial placeholder="e.g. 40417" max_length=20 error />
                <div class="field">
                    <label for="rule-value">"Value (thresholds)"</label>
                    <select id="rule-value" name="value">{options(values, value)}</select>
                    <p class="field-error" role="alert">{field_message("value", "Value")}</p>
                </div>
                <TextField label="Alert level" name="alert" value=alert placeholder="e.g. 4.5" max_length=12 error />
                <TextField label="Danger level" name="danger" value=danger placeholder="e.g. 7.1" max_length=12 error />
                <p class="hint">
                    "A velocity rule on a machine with an ISO 20816 group may leave both levels blank: "
                    "it takes the group's zone boundaries, B/C as alert and C/D as danger."
                </p>
                <TextField label="Consecutive readings" name="consecutive" value=consecutive placeholder="1" max_length=3 error />
                <TextField label="Hysteresis (%)" name="hysteresis" value=hysteresis placeholder="10" max_length=6 error />
                <FormError error />
                <div class="actions">
                    <button type="submit" class="primary" disabled=move || save.pending().get()>{button}</button>
                    {editing.is_some().then(|| view! { <A href="/alarm-rules">"Cancel"</A> })}
                </div>
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
                    <A href=format!("/alarm-rules?edit={id}")>"Edit"</A>
                    " "
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
    let edit = query_value("edit");
    let save = ServerAction::<SaveChannel>::new();
    let delete = ServerAction::<DeleteChannel>::new();
    let test = ServerAction::<SendTestNotification>::new();
    let refresh = RwSignal::new(0u32);
    let saved = count_saves(
        move || save.value().with(|v| matches!(v, Some(Ok(_)))),
        edit,
        "/notification-channels",
    );
    let data = Resource::new(
        move || (saved.get(), delete.version().get(), test.version().get(), refresh.get()),
        |_| channels_view(),
    );
    let save_error = Signal::derive(move || save.value().get().and_then(Result::err));
    view! {
        <header class="page-header">
            <h1>"Notification channels"</h1>
            <p class="subtitle">"Where alarms are sent: signed webhooks and e-mail, each delivery logged"</p>
        </header>
        <UrlError />
        <Transition fallback=|| view! { <p>"Loading channels…"</p> }>
            {move || data.get().map(|result| match result {
                Ok(page) => {
                    let editing = edit
                        .get()
                        .and_then(|id| page.channels.iter().find(|c| c.channel.id.to_string() == id))
                        .map(|c| c.channel.clone());
                    let form = channel_form(save, save_error, page.factories.clone(), editing);
                    let cards = if page.channels.is_empty() {
                        view! {
                            <section class="card"><div class="empty"><h2>"No channels yet"</h2>
                            <p>"Add a webhook or an e-mail address to be told of alarms."</p></div></section>
                        }
                        .into_any()
                    } else {
                        page.channels
                            .into_iter()
                            .map(|c| channel_card(c, delete, test, refresh))
                            .collect_view()
                            .into_any()
                    };
                    view! { {form} {cards} }.into_any()
                }
                Err(err) => load_error("notification channels", err),
            })}
        </Transition>
    }
}

/// The form that adds a channel, or edits `editing` (its kind stays; a blank secret
/// keeps the stored one).
fn channel_form(
    save: ServerAction<SaveChannel>,
    error: Signal<Option<AppError>>,
    factories: Vec<(Uuid, String)>,
    editing: Option<NotificationChannel>,
) -> AnyView {
    let field_message = move |name: &'static str, label: &'static str| {
        move || {
            error
                .get()
                .and_then(|e| e.field_message(name).map(|m| format!("{label} {m}")))
        }
    };
    let channel = editing.as_ref();
    let kind = channel.map_or("webhook", |c| c.kind.as_str());
    let kinds = [("webhook", "Webhook"), ("email", "E-mail")];
    let kind_select = match channel {
        // The kind of a channel never changes: shown, not sent.
        Some(_) => view! { <select id="channel-kind" disabled=true>{options(kinds, kind)}</select> }.into_any(),
        None => view! { <select id="channel-kind" name="kind">{options(kinds, kind)}</select> }.into_any(),
    };
    let receives = |severity: Severity| channel.is_none_or(|c| c.severities.contains(&severity));
    let (warnings, criticals) = (receives(Severity::Warning), receives(Severity::Critical));
    let send_clears = channel.is_none_or(|c| c.send_clears);
    let id = channel.map(|c| c.id.to_string());
    let name = channel.map(|c| c.name.clone()).unwrap_or_default();
    let url = channel.and_then(|c| c.url.clone()).unwrap_or_default();
    let to = channel.and_then(|c| c.to.clone()).unwrap_or_default();
    let factory = channel.and_then(|c| c.factory_id).unwrap_or_default();
    let cancel = channel
        .is_some()
        .then(|| view! { <A href="/notification-channels">"Cancel"</A> });
    let secret_hint = match channel {
        Some(c) if c.has_secret => "Blank keeps the current secret",
        _ => "",
    };
    let (heading, button, label) = match channel {
        Some(c) => (format!("Edit “{}”", c.name), "Save changes", "Edit channel"),
        None => ("Add a channel".to_owned(), "Add channel", "Add channel"),
    };
    view! {
        <section class="card">
            <h2>{heading}</h2>
            <ActionForm action=save attr:class="form" attr:aria-label=label>
                {id.map(|id| view! { <input type="hidden" name="id" value=id /> })}
                <div class="field">
                    <label for="channel-kind">"Kind"</label>
                    {kind_select}
                    <p class="field-error" role="alert">{field_message("kind", "Kind")}</p>
                </div>
                <TextField label="Name" name="name" value=name placeholder="e.g. Maintenance on call" required=true max_length=domain::NAME_MAX error />
                <TextField label="Webhook URL" name="url" value=url placeholder="https://hooks.example.com/…" max_length=domain::alarms::URL_MAX error />
                <div class="field">
                    <label for="field-secret">"Signing secret (webhooks)"</label>
                    <input id="field-secret" name="secret" type="password" autocomplete="new-password" placeholder=secret_hint maxlength=domain::alarms::SECRET_MAX />
                    <p class="field-error" role="alert">{field_message("secret", "Secret")}</p>
                </div>
                <TextField label="E-mail to" name="to" value=to placeholder="a@plant.example, b@plant.example" max_length=domain::alarms::URL_MAX error />
                <IdSelect label="Factory" name="factory_id" choices=factories selected=factory optional=true blank="All factories" error />
                <fieldset class="field checks">
                    <legend>"Sends"</legend>
                    <label><input type="checkbox" name="warning" value="on" checked=warnings />" Warnings"</label>
                    <label><input type="checkbox" name="critical" value="on" checked=criticals />" Critical alarms"</label>
                    <label><input type="checkbox" name="send_clears" value="on" checked=send_clears />" Clears too"</label>
                    <p class="field-error" role="alert">{field_message("severities", "Severities")}</p>
                </fieldset>
                <FormError error />
                <div class="actions">
                    <button type="submit" class="primary" disabled=move || save.pending().get()>{button}</button>
                    {cancel}
                </div>
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
                <A href=format!("/notification-channels?edit={id}")>"Edit"</A>
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
