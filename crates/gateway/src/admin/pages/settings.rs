//! The settings, as the gateway runs with them, secrets hidden.

use super::*;

pub(in crate::admin) async fn settings(State(gateway): State<Gateway>, staff: Staff) -> Response {
    let s = gateway.settings();
    let findings = s.check();
    let shown = s.shown();
    layout(
        Some(&staff),
        "Settings",
        "/admin/settings",
        html! {
            h1 { "Settings" }
            h2 { "Configuration check" }
            @if findings.is_empty() { p { "No findings." } }
            ul { @for f in &findings { li class=(if f.error { "error" } else { "warning" }) { (f.to_string()) } } }
            h2 { "In effect" }
            p class="muted" { "Secrets are never shown; in addresses, passwords and the values after ? are replaced by ***." }
            p class="scroll-hint" { "Swipe the table sideways for more columns \u{2192}" }
            div class="scroll" {
                table {
                    thead { tr { th { "Setting" } th { "Value" } } }
                    tbody { @for (name, value) in &shown { tr { td { code { (name) } } td { (value) } } } }
                }
            }
        },
    )
}
