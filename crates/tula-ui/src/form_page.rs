//! The VIP form as HTML: the fields with their hints and errors, the error
//! summary, the DSR type with the Layer 2 / Layer 3 comparison, and the
//! backends table with the row the script copies for "Add backend" (without
//! a script, Add backend and Remove send the form back with a row more or less).

use maud::{html, Markup, PreEscaped};

use crate::form::{BackendRow, FormErrors, VipForm};
use crate::layout::{url_segment, Page, Section};
use crate::review::BASE_FIELD;
use crate::session::Session;

/// What the form page shows besides the form: a rejection's errors, or a notice.
pub(crate) struct Shown<'a> {
    pub errors: &'a FormErrors,
    /// A line above the form, e.g. "No changes".
    pub notice: Option<&'a str>,
    /// The revision the form is based on (sent back with it).
    pub revision: u64,
}

/// The create (no `editing`) or edit page.
pub(crate) fn render_page(
    form: &VipForm,
    shown: &Shown,
    editing: Option<&str>,
    session: &Session,
) -> String {
    let (title, action) = match editing {
        Some(name) => (
            format!("Edit VIP {name}"),
            format!("/ui/vips/{}/edit", url_segment(name)),
        ),
        None => ("Create VIP".to_string(), "/ui/vips/new".to_string()),
    };
    let body = html! {
        h1 { (title) }
        @if let Some(notice) = shown.notice {
            div.alert.alert-info #form-notice role="status" tabindex="-1" { (notice) }
        }
        @if !shown.errors.is_empty() { (error_summary(form, shown.errors, shown.revision)) }
        (render_form(form, shown, editing, &action, &session.csrf))
    };
    let mut page = Page::new(title.clone(), Section::Vips, session)
        .crumb("L4 Virtual IPs", Some(crate::list::PATH.to_string()));
    if let Some(name) = editing {
        page = page.crumb(name, Some(format!("/ui/vips/{}", url_segment(name))));
        page = page.crumb("Edit", None);
    } else {
        page = page.crumb("Create", None);
    }
    page.render(body)
}

fn error_summary(form: &VipForm, errors: &FormErrors, revision: u64) -> Markup {
    let mut by_field: Vec<&(String, String)> = errors.by_field.iter().collect();
    by_field.sort_by_key(|(field, _)| form.position(field));
    html! {
        div.alert.alert-error.error-summary #error-summary role="alert" tabindex="-1" {
            h2 { "Not applied: " (errors.len()) " problem" @if errors.len() != 1 { "s" } }
            p { "Nothing was changed; the running revision is still " span #unchanged-revision { (revision) } "." }
            ul {
                @for (field, message) in by_field {
                    li { a href={ "#f-" (field) } { (form.label(field)) ": " (message) } }
                }
                @for message in &errors.general { li { (message) } }
            }
        }
    }
}

/// Renders fields with their hints and errors.
struct Fields<'a> {
    errors: &'a FormErrors,
}

impl Fields<'_> {
    /// The ids that describe `field`: its hint, its error.
    fn described_by(&self, field: &str, hint: bool) -> Option<String> {
        let mut ids = Vec::new();
        if hint {
            ids.push(format!("h-{field}"));
        }
        if self.errors.has(field) {
            ids.push(format!("e-{field}"));
        }
        (!ids.is_empty()).then(|| ids.join(" "))
    }

    fn error(&self, field: &str) -> Markup {
        let messages = self.errors.messages(field);
        html! {
            @if !messages.is_empty() {
                p.error id={ "e-" (field) } {
                    @for (i, message) in messages.iter().enumerate() { @if i > 0 { br; } (message) }
                }
            }
        }
    }

    fn invalid(&self, field: &str) -> Option<&'static str> {
        self.errors.has(field).then_some("true")
    }

    fn hint(field: &str, hint: Option<Markup>) -> Markup {
        html! { @if let Some(hint) = hint { p.hint id={ "h-" (field) } { (hint) } } }
    }

    /// A text input; `numeric` for ports and counts.
    fn text(&self, field: &str, label: &str, value: &str, input: Input, hint: Option<Markup>) -> Markup {
        html! {
            div.field.has-error[self.errors.has(field)] {
                label for={ "f-" (field) } { (label) }
                input id={ "f-" (field) } name=(field) value=(value) autocomplete="off" spellcheck="false"
                    inputmode=[input.mode] required[input.required] readonly[input.readonly]
                    placeholder=[input.placeholder]
                    aria-invalid=[self.invalid(field)] aria-describedby=[self.described_by(field, hint.is_some())];
                (Self::hint(field, hint))
                (self.error(field))
            }
        }
    }

    fn select(&self, field: &str, label: &str, value: &str, options: &[(&str, &str)], hint: Option<Markup>) -> Markup {
        html! {
            div.field.has-error[self.errors.has(field)] {
                label for={ "f-" (field) } { (label) }
                select id={ "f-" (field) } name=(field)
                    aria-invalid=[self.invalid(field)] aria-describedby=[self.described_by(field, hint.is_some())] {
                    (options_html(options, value))
                }
                (Self::hint(field, hint))
                (self.error(field))
            }
        }
    }
}

/// How a text input behaves.
#[derive(Default, Clone, Copy)]
struct Input {
    mode: Option<&'static str>,
    required: bool,
    readonly: bool,
    /// Only an example of the format, never a value that looks typed in.
    placeholder: Option<&'static str>,
}

const NUMERIC: Input = Input {
    mode: Some("numeric"),
    required: false,
    readonly: false,
    placeholder: None,
};

fn options_html(options: &[(&str, &str)], value: &str) -> Markup {
    html! {
        @for (option, label) in options {
            option value=(option) selected[*option == value] { (label) }
        }
    }
}

const STATES: [(&str, &str); 3] = [
    ("active", "active"),
    ("drain", "drain"),
    ("disabled", "disabled"),
];

fn render_form(
    form: &VipForm,
    shown: &Shown,
    editing: Option<&str>,
    action: &str,
    csrf: &str,
) -> Markup {
    let f = Fields {
        errors: shown.errors,
    };
    let cancel = match editing {
        Some(name) => format!("/ui/vips/{}", url_segment(name)),
        None => crate::list::PATH.to_string(),
    };
    let name_hint = if editing.is_some() {
        html! { "A VIP's name cannot change; create a new VIP instead." }
    } else {
        html! { "A letter, then letters, digits, " code { "-" } ", " code { "_" } " or " code { "." } }
    };
    html! {
        form.vip-form method="post" action=(action) novalidate {
            // Enter in a field submits the form with its first button: this one, which only reviews.
            button.default-submit type="submit" name="review" value="1" tabindex="-1" aria-hidden="true" { "Save" }
            input type="hidden" name="csrf" value=(csrf);
            input type="hidden" name=(BASE_FIELD) value=(shown.revision);
            fieldset.card {
                legend { "Virtual IP" }
                div.grid {
                    (f.text("name", "Name", &form.name, Input { required: editing.is_none(), readonly: editing.is_some(), ..Input::default() }, Some(name_hint)))
                    (f.text("address", "Address", &form.address, Input { required: true, ..Input::default() },
                        Some(html! { "The IPv4 or IPv6 address clients connect to, e.g. " code { "203.0.113.10" } " or " code { "2001:db8::10" } "." })))
                    (f.text("port", "Port", &form.port, Input { required: true, ..NUMERIC }, Some(html! { "0 serves all ports." })))
                    (f.select("protocol", "Protocol", &form.protocol, &[("tcp", "TCP"), ("udp", "UDP")], None))
                }
            }
            fieldset.card {
                legend { "Forwarding" }
                div.grid {
                    (f.select("mode", "Mode", &form.mode, &[("dsr", "DSR")],
                        Some(html! { "Direct Server Return: replies go from the backends straight to the clients." })))
                    (f.select("scheduler", "Scheduler", &form.scheduler, &[
                        ("maglev", "Maglev"),
                        ("source-hash", "Source hash"),
                        ("round-robin", "Round robin"),
                        ("weighted-round-robin", "Weighted round robin"),
                    ], Some(html! {
                        "Maglev hashes each connection, source hash each client address, over a consistent \
                         ring shared by every balancer; the round robins take turns per CPU (weighted: in \
                         proportion to the weights), and each connection stays where it started."
                    })))
                }
                (dsr_type_field(&f, &form.dsr_type))
            }
            (health_check_fields(&f, form))
            (backends_table(&f, form))
            div.actions {
                button.primary type="submit" #save name="review" value="1" { "Save" }
                a.button href=(cancel) { "Cancel" }
                span.hint { "Save shows what changes; nothing is applied before you confirm." }
            }
        }
    }
}

fn dsr_type_field(f: &Fields, value: &str) -> Markup {
    let radio = |option: &str, id: &str, label: &str| {
        html! {
            label.choice for=(id) {
                input type="radio" id=(id) name="dsr_type" value=(option) checked[option == value];
                " " (label)
            }
        }
    };
    html! {
        fieldset.radios.field.has-error[f.errors.has("dsr_type")]
            aria-invalid=[f.invalid("dsr_type")] aria-describedby=[f.described_by("dsr_type", true)] {
            legend { "DSR Type" }
            (radio("l2", "f-dsr_type-l2", "Layer 2"))
            (radio("l3-ipip", "f-dsr_type", "Layer 3 (IPIP Tunnel)"))
            p.hint #h-dsr_type { "Layer 3 reaches backends on any routed network; Layer 2 needs them on the balancer's segment." }
            (f.error("dsr_type"))
            (dsr_help())
        }
    }
}

/// The product description's comparison of the two DSR types.
fn dsr_help() -> Markup {
    let rows = [
        ("Network topology", "Same broadcast domain", "Any routed network"),
        ("Cross-subnet support", "No", "Yes"),
        ("Cross-site support", "No", "Yes"),
        ("Configuration complexity", "Low", "Moderate"),
        ("Overhead", "Negligible", "Minimal (20-byte IP header)"),
        ("MTU impact", "None", "Requires consideration"),
    ];
    html! {
        details.help #dsr-help {
            summary { "Layer 2 or Layer 3? Compare the two" }
            div.table-wrap tabindex="0" role="region" aria-label="Layer 2 and Layer 3 DSR compared" {
                table {
                    thead { tr { th scope="col" { "Criteria" } th scope="col" { "L2 DSR" } th scope="col" { "L3 DSR" } } }
                    tbody {
                        @for (criteria, l2, l3) in rows { tr { th scope="row" { (criteria) } td { (l2) } td { (l3) } } }
                    }
                }
            }
            p {
                "Choose L2 DSR when all backends share the same VLAN, for its simplicity. Choose L3 DSR when backends span \
                 subnets, when you need cross-site DSR, or when your network architecture prohibits large Layer 2 domains. \
                 With L3 DSR each client packet travels to its backend inside an IPIP tunnel (a 20-byte outer IPv4 header; \
                 to IPv6 backends a 40-byte outer IPv6 header); the backend strips it and replies to the client directly, with the VIP as source."
            }
        }
    }
}

fn health_check_fields(f: &Fields, form: &VipForm) -> Markup {
    html! {
        fieldset.card #health-check {
            legend { "Health check" }
            div.grid {
                (f.select("hc_type", "Type", &form.hc_type, &[
                    ("tcp", "TCP"), ("http", "HTTP"), ("https", "HTTPS"), ("tunnel", "Tunnel"), ("none", "None"),
                ], Some(html! {
                    "TCP: a connect to the backend. HTTP(S): a GET. Tunnel: a connect to the VIP \
                     through the same tunnel as clients. None: backends count as up."
                })))
                (f.text("hc_port", "Port", &form.hc_port, NUMERIC, Some(html! { "Empty: the VIP's port." })))
                (f.text("hc_interval", "Interval", &form.hc_interval, Input::default(),
                    Some(html! { "Between probes, e.g. " code { "2s" } " or " code { "500ms" } "." })))
                (f.text("hc_timeout", "Timeout", &form.hc_timeout, Input::default(), Some(html! { "At most the interval." })))
                (f.text("hc_rise", "Rise", &form.hc_rise, NUMERIC, Some(html! { "Successes in a row that bring a backend up." })))
                (f.text("hc_fall", "Fall", &form.hc_fall, NUMERIC, Some(html! { "Failures in a row that take it down." })))
            }
            div.grid data-http-only {
                (f.text("hc_path", "HTTP path", &form.hc_path, Input::default(),
                    Some(html! { "HTTP and HTTPS checks only; empty: " code { "/" } "." })))
                (f.text("hc_expect_status", "Expected status", &form.hc_expect_status, Input::default(),
                    Some(html! { "A status or a range, e.g. " code { "200-399" } " (the default when empty)." })))
            }
        }
    }
}

fn backends_table(f: &Fields, form: &VipForm) -> Markup {
    let next = form.backends.iter().map(|b| b.row + 1).max().unwrap_or(0);
    // The row the script copies for "Add backend": maud's own output, with
    // __ROW__ and __N__ for the script to fill in (digits only, nothing to escape).
    let template = backend_row(
        &Fields {
            errors: &FormErrors::default(),
        },
        &BackendRow::blank(usize::MAX),
        "__N__",
    )
    .into_string()
    .replace(&usize::MAX.to_string(), "__ROW__");
    html! {
        fieldset.card #backends aria-invalid=[f.invalid("backends")] aria-describedby=[f.described_by("backends", false)] {
            legend { "Backends" }
            p.hint {
                "Each backend's routable IP address. The port must be empty or the VIP's port: \
                 DSR cannot translate ports. Weight 0 to 1000. " em { "drain" } " takes no new connections and keeps the \
                 existing ones; " em { "disabled" } " takes nothing."
            }
            (f.error("backends"))
            table.backends-form {
                thead { tr {
                    th scope="col" { "Address" } th scope="col" { "Port" } th scope="col" { "Weight" }
                    th scope="col" { "State" } th scope="col" { span.visually-hidden { "Remove" } }
                } }
                tbody #backend-rows {
                    @for (position, row) in form.backends.iter().enumerate() {
                        (backend_row(f, row, &(position + 1).to_string()))
                    }
                }
            }
            // Without a script these send the form back with a row more (or less); the script does it in place.
            button #add-backend type="submit" name="add_row" value="1" data-next-row=(next) { "Add backend" }
            template #backend-row-template { (PreEscaped(template)) }
        }
    }
}

fn backend_row(f: &Fields, row: &BackendRow, number: &str) -> Markup {
    let field = |key: &str| format!("b{}_{key}", row.row);
    let cell = |key: &str, label: &str, input: Markup| {
        let name = field(key);
        html! {
            td.has-error[f.errors.has(&name)] {
                label.cell-label for={ "f-" (name) } { "Backend " (number) " " (label) }
                (input)
                (f.error(&name))
            }
        }
    };
    let text = |key: &str, value: &str, mode: &str, placeholder: Option<&str>| {
        let name = field(key);
        html! {
            input id={ "f-" (name) } name=(name) value=(value) inputmode=(mode) autocomplete="off" spellcheck="false"
                placeholder=[placeholder]
                aria-invalid=[f.invalid(&name)] aria-describedby=[f.errors.has(&name).then(|| format!("e-{name}"))];
        }
    };
    let state_name = field("state");
    let state = html! {
        select id={ "f-" (state_name) } name=(state_name)
            aria-invalid=[f.invalid(&state_name)] aria-describedby=[f.errors.has(&state_name).then(|| format!("e-{state_name}"))] {
            (options_html(&STATES, &row.state))
        }
    };
    html! {
        tr.backend-row data-row=(row.row) {
            (cell("address", "address", text("address", &row.address, "text", None)))
            (cell("port", "port", text("port", &row.port, "numeric", Some("VIP port"))))
            (cell("weight", "weight", text("weight", &row.weight, "numeric", None)))
            (cell("state", "state", state))
            td {
                button.remove-row type="submit" name="remove_row" value=(row.row)
                    aria-label={ "Remove backend " (number) } { "Remove" }
            }
        }
    }
}
