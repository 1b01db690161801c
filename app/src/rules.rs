//! `/rules`: the user's delivery rules (`mailcore::rules`). A form builder
//! for "if this, do that" rules, a vacation reply and forwarding, all kept
//! as one Sieve script; and the raw Sieve view, where the script can be
//! written by hand (which turns the form off until the user starts over).
//! Every part is a plain form, so it all works without JavaScript.

// A server function takes one argument per form field; the rule form has
// eight, and the macro's client half cannot carry an allow of its own.
#![allow(clippy::too_many_arguments)]

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::AppError;
use crate::head::PageTitle;
use crate::mail::Frame;
use crate::pages::{Shell, problem, q};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VacationRow {
    pub on: bool,
    pub subject: String,
    pub body: String,
    pub days: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RulesPageData {
    pub frame: Frame,
    /// One sentence per rule ("If the subject contains ... move to ...").
    pub rules: Vec<String>,
    pub vacation: VacationRow,
    pub forward_to: String,
    pub forward_keep: bool,
    /// The script that runs (or the form's, when none runs).
    pub sieve: String,
    /// The script was written as Sieve: the form does not show it.
    pub hand_written: bool,
    /// Rules are on at all.
    pub active: bool,
}

#[cfg(feature = "ssr")]
mod ssr {
    use mailcore::rules::form::{Action, Field, Op, RuleForm};

    pub(super) fn describe(r: &mailcore::rules::form::Rule) -> String {
        let field = match r.field {
            Field::From => "the sender".to_owned(),
            Field::To => "a recipient (To or Cc)".to_owned(),
            Field::Subject => "the subject".to_owned(),
            Field::Header => format!("the header {}", r.header),
            Field::ListId => "the mailing list (List-Id)".to_owned(),
            Field::SizeOver => {
                return format!("If the message is over {} KB, {}", r.value, action(r));
            }
            Field::SizeUnder => {
                return format!("If the message is under {} KB, {}", r.value, action(r));
            }
        };
        let op = match r.op {
            Op::Contains => "contains",
            Op::Is => "is",
            Op::Matches => "matches",
        };
        format!("If {field} {op} \u{201c}{}\u{201d}, {}", r.value, action(r))
    }

    fn action(r: &mailcore::rules::form::Rule) -> String {
        let a = match r.action {
            Action::Move => format!("move it to {}", r.arg),
            Action::MarkRead => "mark it read".to_owned(),
            Action::Flag => "flag it".to_owned(),
            Action::Label => format!("label it {}", r.arg),
            Action::Forward => format!("forward a copy to {}", r.arg),
            Action::Reject => format!("send it back saying \u{201c}{}\u{201d}", r.arg),
            Action::Discard => "delete it".to_owned(),
        };
        if r.stop { format!("{a}, and stop") } else { a }
    }

    /// The form as stored, or a fresh one when the rules were written as
    /// Sieve (saving the form then replaces them, which the page says).
    pub(super) async fn current(
        core: &mailcore::Core,
        account: mailcore::AccountId,
    ) -> Result<RuleForm, crate::error::AppError> {
        let scripts = core
            .sieve_scripts(account)
            .await
            .map_err(crate::auth::ssr::core_error)?;
        Ok(scripts
            .into_iter()
            .find(|s| s.name == mailcore::rules::FORM_SCRIPT)
            .and_then(|s| s.form)
            .unwrap_or_default())
    }

    pub(super) async fn save(
        core: &mailcore::Core,
        account: mailcore::AccountId,
        form: &RuleForm,
    ) -> Result<(), crate::error::AppError> {
        match core.save_rule_form(account, form).await {
            Ok(()) => leptos_actix::redirect("/rules?saved=1"),
            Err(mailcore::CoreError::Invalid(why)) => leptos_actix::redirect(&format!(
                "/rules?error={}",
                crate::mail::encode(&format!("Not saved: {why}."))
            )),
            Err(e) => return Err(crate::auth::ssr::core_error(e)),
        }
        Ok(())
    }
}

#[server(prefix = "/api", endpoint = "rules_data")]
pub async fn rules_data() -> Result<Option<RulesPageData>, AppError> {
    use crate::auth::ssr::{core, core_error, current_session};
    let Some(s) = current_session().await? else {
        return Ok(None);
    };
    let core = core()?;
    let scripts = core.sieve_scripts(s.account.id).await.map_err(core_error)?;
    let mine = scripts
        .iter()
        .find(|x| x.name == mailcore::rules::FORM_SCRIPT);
    let running = scripts.iter().find(|x| x.active);
    let form = mine.and_then(|m| m.form.clone()).unwrap_or_default();
    let hand_written = running.or(mine).is_some_and(|x| x.form.is_none());
    let v = form.vacation.clone();
    let f = form.forward.clone();
    Ok(Some(RulesPageData {
        frame: crate::mail::ssr::frame(&s).await?,
        rules: if hand_written {
            Vec::new()
        } else {
            form.rules.iter().map(ssr::describe).collect()
        },
        vacation: VacationRow {
            on: v.is_some() && !hand_written,
            subject: v.as_ref().map(|v| v.subject.clone()).unwrap_or_default(),
            body: v.as_ref().map(|v| v.body.clone()).unwrap_or_default(),
            days: v.as_ref().map_or(7, |v| v.days),
        },
        forward_to: f.as_ref().map(|f| f.to.clone()).unwrap_or_default(),
        forward_keep: f.as_ref().is_none_or(|f| f.keep),
        sieve: running
            .or(mine)
            .map(|x| x.content.clone())
            .unwrap_or_default(),
        hand_written,
        active: running.is_some(),
    }))
}

/// Adds one rule at the end of the list.
#[server(prefix = "/api", endpoint = "add_rule")]
pub async fn add_rule(
    csrf: String,
    field: String,
    #[server(default)] header: String,
    op: String,
    value: String,
    action: String,
    #[server(default)] arg: String,
    #[server(default)] stop: Option<String>,
) -> Result<(), AppError> {
    use crate::auth::ssr::core;
    use crate::mail::ssr::require;
    use mailcore::rules::form::{Action, Field, Op, Rule};
    let s = require(&csrf).await?;
    use mailcore::rules::form::parse_name;
    let bad = |what: &str| crate::error::ssr::raise(AppError::Invalid(format!("not a {what}")));
    let field: Field = parse_name(&field).ok_or_else(|| bad("field"))?;
    let op: Op = parse_name(&op).ok_or_else(|| bad("test"))?;
    let action: Action = parse_name(&action).ok_or_else(|| bad("action"))?;
    let core = core()?;
    let mut form = ssr::current(&core, s.account.id).await?;
    form.rules.push(Rule {
        field,
        header,
        op,
        value,
        action,
        arg,
        stop: stop.is_some(),
    });
    ssr::save(&core, s.account.id, &form).await
}

#[server(prefix = "/api", endpoint = "delete_rule")]
pub async fn delete_rule(csrf: String, index: usize) -> Result<(), AppError> {
    use crate::auth::ssr::core;
    use crate::mail::ssr::require;
    let s = require(&csrf).await?;
    let core = core()?;
    let mut form = ssr::current(&core, s.account.id).await?;
    if index < form.rules.len() {
        form.rules.remove(index);
    }
    ssr::save(&core, s.account.id, &form).await
}

#[server(prefix = "/api", endpoint = "save_vacation")]
pub async fn save_vacation(
    csrf: String,
    #[server(default)] on: Option<String>,
    #[server(default)] subject: String,
    #[server(default)] body: String,
    #[server(default)] days: String,
) -> Result<(), AppError> {
    use crate::auth::ssr::core;
    use crate::mail::ssr::require;
    let s = require(&csrf).await?;
    let core = core()?;
    let mut form = ssr::current(&core, s.account.id).await?;
    form.vacation = on.is_some().then(|| mailcore::rules::form::Vacation {
        subject: subject.trim().to_owned(),
        body,
        days: days.trim().parse().unwrap_or(7),
    });
    ssr::save(&core, s.account.id, &form).await
}

#[server(prefix = "/api", endpoint = "save_forward")]
pub async fn save_forward(
    csrf: String,
    #[server(default)] to: String,
    #[server(default)] keep: Option<String>,
) -> Result<(), AppError> {
    use crate::auth::ssr::core;
    use crate::mail::ssr::require;
    let s = require(&csrf).await?;
    let core = core()?;
    let mut form = ssr::current(&core, s.account.id).await?;
    let to = to.trim();
    form.forward = (!to.is_empty()).then(|| mailcore::rules::form::Forward {
        to: to.to_owned(),
        keep: keep.is_some(),
    });
    ssr::save(&core, s.account.id, &form).await
}

/// Saves the raw Sieve view as the script that runs. An empty script
/// clears the rules.
#[server(prefix = "/api", endpoint = "save_sieve")]
pub async fn save_sieve(csrf: String, #[server(default)] sieve: String) -> Result<(), AppError> {
    use crate::auth::ssr::{core, core_error};
    use crate::mail::ssr::require;
    let s = require(&csrf).await?;
    let core = core()?;
    let sieve = sieve.replace("\r\n", "\n");
    // An emptied script is no rules at all: the form starts empty too.
    let result = if sieve.trim().is_empty() {
        core.save_rule_form(s.account.id, &Default::default()).await
    } else {
        core.put_sieve_script(s.account.id, mailcore::rules::FORM_SCRIPT, &sieve, true)
            .await
    };
    match result {
        Ok(()) => leptos_actix::redirect("/rules?saved=1"),
        Err(mailcore::CoreError::Invalid(why)) => leptos_actix::redirect(&format!(
            "/rules?error={}",
            crate::mail::encode(&format!("The script has an error: {why}"))
        )),
        Err(e) => return Err(core_error(e)),
    }
    Ok(())
}

/// Replaces a hand-written script with an empty form.
#[server(prefix = "/api", endpoint = "reset_rules")]
pub async fn reset_rules(csrf: String) -> Result<(), AppError> {
    use crate::auth::ssr::core;
    use crate::mail::ssr::require;
    let s = require(&csrf).await?;
    let core = core()?;
    ssr::save(&core, s.account.id, &Default::default()).await
}

const FIELDS: &[(&str, &str)] = &[
    ("from", "Sender"),
    ("to", "Recipient (To or Cc)"),
    ("subject", "Subject"),
    ("list_id", "Mailing list (List-Id)"),
    ("header", "Header named below"),
    ("size_over", "Size over (KB)"),
    ("size_under", "Size under (KB)"),
];
const OPS: &[(&str, &str)] = &[
    ("contains", "contains"),
    ("is", "is"),
    ("matches", "matches (* and ?)"),
];
const ACTIONS: &[(&str, &str)] = &[
    ("move", "Move to folder"),
    ("mark_read", "Mark read"),
    ("flag", "Flag"),
    ("label", "Label ($Label1 … or a word)"),
    ("forward", "Forward a copy to"),
    ("reject", "Send back with a message"),
    ("discard", "Delete"),
];

#[component]
pub fn RulesPage() -> impl IntoView {
    let add = ServerAction::<AddRule>::new();
    let del = ServerAction::<DeleteRule>::new();
    let vac = ServerAction::<SaveVacation>::new();
    let fwd = ServerAction::<SaveForward>::new();
    let raw = ServerAction::<SaveSieve>::new();
    let reset = ServerAction::<ResetRules>::new();
    let saved = q("saved");
    let error = q("error");
    let data = Resource::new(
        move || {
            (
                add.version().get(),
                del.version().get(),
                vac.version().get(),
                fwd.version().get(),
                raw.version().get(),
                reset.version().get(),
            )
        },
        |_| rules_data(),
    );
    view! {
        <PageTitle text="Rules · Tern"/>
        <Suspense fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match data.await {
                    Ok(Some(d)) => {
                        let csrf = d.frame.csrf.clone();
                        let err = error();
                        let folders: Vec<String> = d.frame.folders.iter().map(|f| f.name.clone()).collect();
                        let (c1, c2, c3, c4, c5) = (csrf.clone(), csrf.clone(), csrf.clone(), csrf.clone(), csrf.clone());
                        let v = d.vacation.clone();
                        view! {
                            <Shell frame=d.frame.clone()>
                                <h1>"Rules"</h1>
                                <p class="hint">"Rules run when mail arrives, whichever client you read it with."</p>
                                {(saved() == "1").then(|| view! { <p class="ok" role="status" data-testid="ok">"Saved."</p> })}
                                {(!err.is_empty()).then(|| view! { <p class="error" role="alert" data-testid="error">{err.clone()}</p> })}
                                <p data-testid="rules-state">{if d.active { "Your rules are on." } else { "No rules run." }}</p>
                                {d.hand_written.then(|| view! {
                                    <section class="note" data-testid="hand-written">
                                        <p>"Your rules are written in Sieve (below), so the form does not show them. Saving the form replaces them."</p>
                                        <ActionForm action=reset attr:class="inline">
                                            <input type="hidden" name="csrf" value=c5.clone()/>
                                            <button type="submit">"Start over with the form"</button>
                                        </ActionForm>
                                    </section>
                                })}
                                <h2>"When a message arrives"</h2>
                                <ol class="rules" data-testid="rules">
                                    {d.rules.iter().enumerate().map(|(i, r)| {
                                        let c = c1.clone();
                                        view! {
                                            <li data-testid="rule">
                                                <span>{r.clone()}</span>
                                                <ActionForm action=del attr:class="inline">
                                                    <input type="hidden" name="csrf" value=c/>
                                                    <input type="hidden" name="index" value=i.to_string()/>
                                                    <button type="submit" class="link" aria-label=format!("Delete rule {}", i + 1)>"Delete"</button>
                                                </ActionForm>
                                            </li>
                                        }
                                    }).collect_view()}
                                </ol>
                                <ActionForm action=add attr:class="rule-builder">
                                    <input type="hidden" name="csrf" value=c2/>
                                    <fieldset>
                                        <legend>"Add a rule"</legend>
                                        <label for="rule-field">"If"</label>
                                        <select id="rule-field" name="field">
                                            {FIELDS.iter().map(|(v, l)| view! { <option value=*v>{*l}</option> }).collect_view()}
                                        </select>
                                        <label for="rule-header">"Header name"</label>
                                        <input id="rule-header" name="header" type="text" maxlength="76" placeholder="X-Spam-Flag"/>
                                        <label for="rule-op">"Test"</label>
                                        <select id="rule-op" name="op">
                                            {OPS.iter().map(|(v, l)| view! { <option value=*v>{*l}</option> }).collect_view()}
                                        </select>
                                        <label for="rule-value">"Value"</label>
                                        <input id="rule-value" name="value" type="text" maxlength="1000" required/>
                                        <label for="rule-action">"Then"</label>
                                        <select id="rule-action" name="action">
                                            {ACTIONS.iter().map(|(v, l)| view! { <option value=*v>{*l}</option> }).collect_view()}
                                        </select>
                                        <label for="rule-arg">"Folder, label, address or message"</label>
                                        <input id="rule-arg" name="arg" type="text" maxlength="1000" list="rule-folders"/>
                                        <datalist id="rule-folders">
                                            {folders.iter().map(|f| view! { <option value=f.clone()></option> }).collect_view()}
                                        </datalist>
                                        <label class="check"><input type="checkbox" name="stop" value="1"/>" and stop there"</label>
                                        <button type="submit">"Add rule"</button>
                                    </fieldset>
                                </ActionForm>
                                <h2>"Vacation reply"</h2>
                                <ActionForm action=vac attr:class="vacation">
                                    <input type="hidden" name="csrf" value=c3/>
                                    <label class="check"><input type="checkbox" name="on" value="1" checked=v.on/>" Reply to people who write to me"</label>
                                    <label for="vac-subject">"Subject"</label>
                                    <input id="vac-subject" name="subject" type="text" maxlength="1000" value=v.subject.clone() placeholder="Automatic reply"/>
                                    <label for="vac-body">"Message"</label>
                                    <textarea id="vac-body" name="body" rows="5" prop:value=v.body.clone()>{v.body.clone()}</textarea>
                                    <label for="vac-days">"At most once per sender every (days)"</label>
                                    <input id="vac-days" name="days" type="number" min="1" max="365" value=v.days.to_string()/>
                                    <p class="hint">"Never sent to mailing lists, to automatic mail, or twice to one sender within that time."</p>
                                    <button type="submit">"Save vacation reply"</button>
                                </ActionForm>
                                <h2>"Forwarding"</h2>
                                <ActionForm action=fwd attr:class="forwarding">
                                    <input type="hidden" name="csrf" value=c4/>
                                    <label for="fwd-to">"Forward all mail to"</label>
                                    <input id="fwd-to" name="to" type="email" maxlength="320" value=d.forward_to.clone() placeholder="leave empty to stop forwarding"/>
                                    <label class="check"><input type="checkbox" name="keep" value="1" checked=d.forward_keep/>" Keep a copy here"</label>
                                    <button type="submit">"Save forwarding"</button>
                                </ActionForm>
                                <h2>"Sieve"</h2>
                                <p class="hint">"What runs, as a Sieve script (RFC 5228). Desktop clients can edit it over ManageSieve."</p>
                                <ActionForm action=raw attr:class="sieve">
                                    <input type="hidden" name="csrf" value=csrf.clone()/>
                                    <label for="sieve">"Script"</label>
                                    <textarea id="sieve" name="sieve" rows="14" spellcheck="false" data-testid="sieve" prop:value=d.sieve.clone()>{format!("\n{}", d.sieve)}</textarea>
                                    <button type="submit">"Save script"</button>
                                </ActionForm>
                            </Shell>
                        }.into_any()
                    }
                    Ok(None) => problem(None),
                    Err(e) => problem(Some(e)),
                }
            })}
        </Suspense>
    }
}
