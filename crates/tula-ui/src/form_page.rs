//! The VIP form as HTML: the fields with their hints and errors, the error
//! summary, the DSR type with the Layer 2 / Layer 3 comparison, and the
//! backends table with the row the script copies for "Add backend".

use crate::form::{BackendRow, FormErrors, VipForm};
use crate::layout::{esc, url_segment, Page, Section};
use crate::session::Session;

/// The create (no `editing`) or edit page, with `errors` if a submission was rejected.
pub(crate) fn render_page(
    form: &VipForm,
    errors: &FormErrors,
    editing: Option<&str>,
    session: &Session,
    revision: u64,
) -> String {
    let (title, action) = match editing {
        Some(name) => (
            format!("Edit VIP {name}"),
            format!("/ui/vips/{}/edit", url_segment(name)),
        ),
        None => ("Create VIP".to_string(), "/ui/vips/new".to_string()),
    };
    let mut body = format!("<h1>{}</h1>\n", esc(&title));
    if !errors.is_empty() {
        body.push_str(&error_summary(form, errors, revision));
    }
    body.push_str(&render_form(form, errors, editing, &action, &session.csrf));
    let mut page = Page::new(title.clone(), Section::Vips, session)
        .crumb("L4 Virtual IPs", Some(crate::list::PATH.to_string()));
    if let Some(name) = editing {
        page = page.crumb(name, Some(format!("/ui/vips/{}", url_segment(name))));
        page = page.crumb("Edit", None);
    } else {
        page = page.crumb("Create", None);
    }
    page.render(&body)
}

fn error_summary(form: &VipForm, errors: &FormErrors, revision: u64) -> String {
    let mut html = format!(
        "<div class=\"alert alert-error error-summary\" id=\"error-summary\" role=\"alert\" tabindex=\"-1\">\n\
         <h2>Not applied: {} problem{}</h2>\n<p>Nothing was changed; the running revision is still \
         <span id=\"unchanged-revision\">{revision}</span>.</p>\n<ul>\n",
        errors.len(),
        if errors.len() == 1 { "" } else { "s" }
    );
    let mut by_field: Vec<&(String, String)> = errors.by_field.iter().collect();
    by_field.sort_by_key(|(field, _)| form.position(field));
    for (field, message) in by_field {
        html.push_str(&format!(
            "<li><a href=\"#f-{}\">{}: {}</a></li>\n",
            esc(field),
            esc(&form.label(field)),
            esc(message)
        ));
    }
    for message in &errors.general {
        html.push_str(&format!("<li>{}</li>\n", esc(message)));
    }
    html.push_str("</ul>\n</div>\n");
    html
}

/// Renders fields with their hints and errors.
struct Fields<'a> {
    errors: &'a FormErrors,
}

impl Fields<'_> {
    /// `aria-invalid` and `aria-describedby` for `field`, and its error paragraph.
    fn described(&self, field: &str, hint: bool) -> (String, String) {
        let messages = self.errors.messages(field);
        let mut ids = Vec::new();
        if hint {
            ids.push(format!("h-{field}"));
        }
        let mut error = String::new();
        let mut attrs = String::new();
        if !messages.is_empty() {
            ids.push(format!("e-{field}"));
            attrs.push_str(" aria-invalid=\"true\"");
            let text: Vec<String> = messages.iter().map(|m| esc(m)).collect();
            error = format!(
                "<p class=\"error\" id=\"e-{}\">{}</p>\n",
                esc(field),
                text.join("<br>")
            );
        }
        if !ids.is_empty() {
            attrs.push_str(&format!(" aria-describedby=\"{}\"", ids.join(" ")));
        }
        (attrs, error)
    }

    fn wrapper_class(&self, field: &str) -> &'static str {
        if self.errors.has(field) {
            "field has-error"
        } else {
            "field"
        }
    }

    fn hint(field: &str, hint: Option<&str>) -> String {
        hint.map(|h| format!("<p class=\"hint\" id=\"h-{field}\">{h}</p>\n"))
            .unwrap_or_default()
    }

    fn text(
        &self,
        field: &str,
        label: &str,
        value: &str,
        attrs: &str,
        hint: Option<&str>,
    ) -> String {
        let (aria, error) = self.described(field, hint.is_some());
        format!(
            "<div class=\"{class}\">\n<label for=\"f-{field}\">{label}</label>\n\
             <input id=\"f-{field}\" name=\"{field}\" value=\"{value}\"{attrs}{aria}>\n{hint}{error}</div>\n",
            class = self.wrapper_class(field),
            value = esc(value),
            hint = Self::hint(field, hint),
        )
    }

    fn select(
        &self,
        field: &str,
        label: &str,
        value: &str,
        options: &[(&str, &str)],
        hint: Option<&str>,
    ) -> String {
        let (aria, error) = self.described(field, hint.is_some());
        format!(
            "<div class=\"{class}\">\n<label for=\"f-{field}\">{label}</label>\n\
             <select id=\"f-{field}\" name=\"{field}\"{aria}>{options}</select>\n{hint}{error}</div>\n",
            class = self.wrapper_class(field),
            options = options_html(options, value),
            hint = Self::hint(field, hint),
        )
    }
}

fn options_html(options: &[(&str, &str)], value: &str) -> String {
    options
        .iter()
        .map(|(option, label)| {
            let selected = if *option == value { " selected" } else { "" };
            format!("<option value=\"{option}\"{selected}>{label}</option>")
        })
        .collect()
}

const STATES: [(&str, &str); 3] = [
    ("active", "active"),
    ("drain", "drain"),
    ("disabled", "disabled"),
];

fn render_form(
    form: &VipForm,
    errors: &FormErrors,
    editing: Option<&str>,
    action: &str,
    csrf: &str,
) -> String {
    let f = Fields { errors };
    let mut html = format!(
        "<form method=\"post\" action=\"{}\" class=\"vip-form\" novalidate>\n\
         <input type=\"hidden\" name=\"csrf\" value=\"{}\">\n",
        esc(action),
        esc(csrf)
    );

    html.push_str("<fieldset class=\"card\">\n<legend>Virtual IP</legend>\n<div class=\"grid\">\n");
    let name_attrs = if editing.is_some() {
        " readonly autocomplete=\"off\""
    } else {
        " required autocomplete=\"off\" spellcheck=\"false\""
    };
    let name_hint = if editing.is_some() {
        "A VIP's name cannot change; create a new VIP instead."
    } else {
        "A letter, then letters, digits, <code>-</code>, <code>_</code> or <code>.</code>"
    };
    html.push_str(&f.text("name", "Name", &form.name, name_attrs, Some(name_hint)));
    html.push_str(&f.text(
        "address",
        "Address",
        &form.address,
        " required inputmode=\"decimal\" autocomplete=\"off\" spellcheck=\"false\" placeholder=\"203.0.113.10\"",
        Some("The IPv4 address clients connect to."),
    ));
    html.push_str(&f.text(
        "port",
        "Port",
        &form.port,
        " required inputmode=\"numeric\" autocomplete=\"off\"",
        Some("0 serves all ports."),
    ));
    html.push_str(&f.select(
        "protocol",
        "Protocol",
        &form.protocol,
        &[("tcp", "TCP"), ("udp", "UDP")],
        None,
    ));
    html.push_str("</div>\n</fieldset>\n");

    html.push_str("<fieldset class=\"card\">\n<legend>Forwarding</legend>\n<div class=\"grid\">\n");
    html.push_str(&f.select(
        "mode",
        "Mode",
        &form.mode,
        &[("dsr", "DSR")],
        Some("Direct Server Return: replies go from the backends straight to the clients."),
    ));
    html.push_str(&f.select(
        "scheduler",
        "Scheduler",
        &form.scheduler,
        &[
            ("maglev", "Maglev"),
            ("source-hash", "Source hash"),
            ("round-robin", "Round robin"),
            ("weighted-round-robin", "Weighted round robin"),
        ],
        Some(
            "Maglev hashes each connection, source hash each client address, over a consistent \
             ring shared by every balancer; the round robins take turns per CPU (weighted: in \
             proportion to the weights), and each connection stays where it started.",
        ),
    ));
    html.push_str("</div>\n");
    html.push_str(&dsr_type_field(&f, &form.dsr_type));
    html.push_str("</fieldset>\n");

    html.push_str(&health_check_fields(&f, form));
    html.push_str(&backends_table(&f, form));

    let cancel = match editing {
        Some(name) => format!("/ui/vips/{}", url_segment(name)),
        None => crate::list::PATH.to_string(),
    };
    html.push_str(&format!(
        "<div class=\"actions\">\n<button type=\"submit\" class=\"primary\" id=\"save\">Save and apply</button>\n\
         <a class=\"button\" href=\"{}\">Cancel</a>\n</div>\n</form>\n",
        esc(&cancel)
    ));
    html
}

fn dsr_type_field(f: &Fields, value: &str) -> String {
    let (aria, error) = f.described("dsr_type", true);
    let radio = |option: &str, id: &str, label: &str| {
        let checked = if option == value { " checked" } else { "" };
        format!(
            "<label class=\"choice\" for=\"{id}\"><input type=\"radio\" id=\"{id}\" name=\"dsr_type\" value=\"{option}\"{checked}> {label}</label>\n"
        )
    };
    format!(
        "<fieldset class=\"{class} radios\"{aria}>\n<legend>DSR Type</legend>\n{l2}{l3}\
         <p class=\"hint\" id=\"h-dsr_type\">Layer 3 reaches backends on any routed network; Layer 2 needs them on the balancer's segment.</p>\n\
         {error}{help}</fieldset>\n",
        class = f.wrapper_class("dsr_type"),
        l2 = radio("l2", "f-dsr_type-l2", "Layer 2"),
        l3 = radio("l3-ipip", "f-dsr_type", "Layer 3 (IPIP Tunnel)"),
        help = DSR_HELP,
    )
}

/// The product description's comparison of the two DSR types.
const DSR_HELP: &str = r#"<details class="help" id="dsr-help">
<summary>Layer 2 or Layer 3? Compare the two</summary>
<div class="table-wrap" tabindex="0" role="region" aria-label="Layer 2 and Layer 3 DSR compared">
<table>
<thead><tr><th scope="col">Criteria</th><th scope="col">L2 DSR</th><th scope="col">L3 DSR</th></tr></thead>
<tbody>
<tr><th scope="row">Network topology</th><td>Same broadcast domain</td><td>Any routed network</td></tr>
<tr><th scope="row">Cross-subnet support</th><td>No</td><td>Yes</td></tr>
<tr><th scope="row">Cross-site support</th><td>No</td><td>Yes</td></tr>
<tr><th scope="row">Configuration complexity</th><td>Low</td><td>Moderate</td></tr>
<tr><th scope="row">Overhead</th><td>Negligible</td><td>Minimal (20-byte IP header)</td></tr>
<tr><th scope="row">MTU impact</th><td>None</td><td>Requires consideration</td></tr>
</tbody>
</table>
</div>
<p>Choose L2 DSR when all backends share the same VLAN, for its simplicity. Choose L3 DSR when backends span
subnets, when you need cross-site DSR, or when your network architecture prohibits large Layer 2 domains.
With L3 DSR each client packet travels to its backend inside an IPIP tunnel (a 20-byte outer IPv4 header);
the backend strips it and replies to the client directly, with the VIP as source.</p>
</details>
"#;

fn health_check_fields(f: &Fields, form: &VipForm) -> String {
    let mut html = String::from("<fieldset class=\"card\" id=\"health-check\">\n<legend>Health check</legend>\n<div class=\"grid\">\n");
    html.push_str(&f.select(
        "hc_type",
        "Type",
        &form.hc_type,
        &[
            ("tcp", "TCP"),
            ("http", "HTTP"),
            ("https", "HTTPS"),
            ("tunnel", "Tunnel"),
            ("none", "None"),
        ],
        Some(
            "TCP: a connect to the backend. HTTP(S): a GET. Tunnel: a connect to the VIP \
             through the same tunnel as clients. None: backends count as up.",
        ),
    ));
    html.push_str(&f.text(
        "hc_port",
        "Port",
        &form.hc_port,
        " inputmode=\"numeric\" autocomplete=\"off\" placeholder=\"VIP port\"",
        Some("Empty: the VIP's port."),
    ));
    html.push_str(&f.text(
        "hc_interval",
        "Interval",
        &form.hc_interval,
        " autocomplete=\"off\"",
        Some("Between probes, e.g. <code>2s</code> or <code>500ms</code>."),
    ));
    html.push_str(&f.text(
        "hc_timeout",
        "Timeout",
        &form.hc_timeout,
        " autocomplete=\"off\"",
        Some("At most the interval."),
    ));
    html.push_str(&f.text(
        "hc_rise",
        "Rise",
        &form.hc_rise,
        " inputmode=\"numeric\" autocomplete=\"off\"",
        Some("Successes in a row that bring a backend up."),
    ));
    html.push_str(&f.text(
        "hc_fall",
        "Fall",
        &form.hc_fall,
        " inputmode=\"numeric\" autocomplete=\"off\"",
        Some("Failures in a row that take it down."),
    ));
    html.push_str("</div>\n<div class=\"grid\" data-http-only>\n");
    html.push_str(&f.text(
        "hc_path",
        "HTTP path",
        &form.hc_path,
        " autocomplete=\"off\" placeholder=\"/\"",
        Some("HTTP and HTTPS checks only; empty: <code>/</code>."),
    ));
    html.push_str(&f.text(
        "hc_expect_status",
        "Expected status",
        &form.hc_expect_status,
        " autocomplete=\"off\" placeholder=\"200-399\"",
        Some("A status or a range; empty: 200-399."),
    ));
    html.push_str("</div>\n</fieldset>\n");
    html
}

fn backends_table(f: &Fields, form: &VipForm) -> String {
    let (aria, error) = f.described("backends", false);
    let mut html = format!(
        "<fieldset class=\"card\" id=\"backends\"{aria}>\n<legend>Backends</legend>\n\
         <p class=\"hint\">Each backend's routable IP address. The port must be empty or the VIP's port: \
         DSR cannot translate ports. Weight 0-1000. <em>drain</em> takes no new connections and keeps the \
         existing ones; <em>disabled</em> takes nothing.</p>\n{error}\
         <table class=\"backends-form\">\n<thead><tr><th scope=\"col\">Address</th><th scope=\"col\">Port</th>\
         <th scope=\"col\">Weight</th><th scope=\"col\">State</th><th scope=\"col\"><span class=\"visually-hidden\">Remove</span></th></tr></thead>\n\
         <tbody id=\"backend-rows\">\n"
    );
    for (position, row) in form.backends.iter().enumerate() {
        html.push_str(&backend_row(f, row, &(position + 1).to_string()));
    }
    let next = form.backends.iter().map(|b| b.row + 1).max().unwrap_or(0);
    html.push_str(&format!(
        "</tbody>\n</table>\n<button type=\"button\" id=\"add-backend\" data-next-row=\"{next}\">Add backend</button>\n"
    ));
    // The row the script copies for "Add backend"; __ROW__ and __N__ are filled in.
    let template = backend_row(
        &Fields {
            errors: &FormErrors::default(),
        },
        &BackendRow::blank(usize::MAX),
        "__N__",
    )
    .replace(&usize::MAX.to_string(), "__ROW__");
    html.push_str(&format!(
        "<template id=\"backend-row-template\">\n{template}</template>\n</fieldset>\n"
    ));
    html
}

fn backend_row(f: &Fields, row: &BackendRow, number: &str) -> String {
    let cell = |key: &str, label: &str, input: String| {
        let field = format!("b{}_{key}", row.row);
        let (aria, error) = f.described(&field, false);
        let class = if f.errors.has(&field) {
            " class=\"has-error\""
        } else {
            ""
        };
        format!(
            "<td{class}><label class=\"cell-label\" for=\"f-{field}\">Backend {number} {label}</label>\n{}{error}</td>\n",
            input.replace("{ARIA}", &aria).replace("{FIELD}", &field)
        )
    };
    let text = |value: &str, extra: &str| {
        format!(
            "<input id=\"f-{{FIELD}}\" name=\"{{FIELD}}\" value=\"{}\"{extra}{{ARIA}}>\n",
            esc(value)
        )
    };
    let state = format!(
        "<select id=\"f-{{FIELD}}\" name=\"{{FIELD}}\"{{ARIA}}>{}</select>\n",
        options_html(&STATES, &row.state)
    );
    format!(
        "<tr class=\"backend-row\" data-row=\"{r}\">\n{}{}{}{}<td><button type=\"button\" class=\"remove-row\" \
         aria-label=\"Remove backend {number}\">Remove</button></td>\n</tr>\n",
        cell("address", "address", text(&row.address, " inputmode=\"decimal\" autocomplete=\"off\" spellcheck=\"false\" placeholder=\"198.18.11.2\"")),
        cell("port", "port", text(&row.port, " inputmode=\"numeric\" autocomplete=\"off\" placeholder=\"VIP port\"")),
        cell("weight", "weight", text(&row.weight, " inputmode=\"numeric\" autocomplete=\"off\"")),
        cell("state", "state", state),
        r = row.row,
    )
}
