//! Charts drawn as SVG on the server: no JavaScript, readable without colour (labels and
//! titles carry the numbers).

use maud::{Markup, html};

/// A vertical bar chart of `(label, value)`; every `label_every`-th label is written.
pub fn bars(title: &str, points: &[(String, i64)], label_every: usize) -> Markup {
    let (w, h, pad) = (640.0_f64, 180.0_f64, 24.0_f64);
    let max = points.iter().map(|(_, v)| *v).max().unwrap_or(0).max(1);
    let n = points.len().max(1);
    #[allow(clippy::cast_precision_loss)]
    let step = (w - 2.0 * pad) / n as f64;
    html! {
        figure class="chart" {
            figcaption { (title) }
            svg viewBox=(format!("0 0 {w} {}", h + 20.0)) role="img" aria-label=(title) {
                line x1=(pad) y1=(h) x2=(w - pad) y2=(h) class="axis" {}
                @for (i, (label, value)) in points.iter().enumerate() {
                    @let bar = {
                        #[allow(clippy::cast_precision_loss)]
                        let bar = (h - pad) * (*value as f64) / (max as f64);
                        bar
                    };
                    @let x = {
                        #[allow(clippy::cast_precision_loss)]
                        let x = pad + step * i as f64;
                        x
                    };
                    rect x=(format!("{:.1}", x + 1.0)) y=(format!("{:.1}", h - bar)) width=(format!("{:.1}", (step - 2.0).max(1.0)))
                        height=(format!("{bar:.1}")) class="bar" {
                        title { (label) ": " (value) }
                    }
                    @if label_every > 0 && i % label_every == 0 {
                        text x=(format!("{:.1}", x + step / 2.0)) y=(h + 14.0) text-anchor="middle" class="tick" { (label) }
                    }
                }
                text x=(pad) y="12" class="tick" { "max " (max) }
            }
        }
    }
}

/// Horizontal bars for categories (failures by result code).
pub fn ranking(title: &str, rows: &[(String, i64)]) -> Markup {
    let max = rows.iter().map(|(_, v)| *v).max().unwrap_or(0).max(1);
    html! {
        figure class="chart" {
            figcaption { (title) }
            @if rows.is_empty() {
                p class="muted" { "None." }
            } @else {
                svg viewBox=(format!("0 0 640 {}", rows.len() * 26 + 4)) role="img" aria-label=(title) {
                    @for (i, (label, value)) in rows.iter().enumerate() {
                        @let width = {
                            #[allow(clippy::cast_precision_loss)]
                            let width = 380.0 * (*value as f64) / (max as f64);
                            width
                        };
                        text x="0" y=(i * 26 + 17) class="tick" { (label) }
                        rect x="220" y=(i * 26 + 4) width=(format!("{width:.1}")) height="18" class="bar bad" {}
                        text x=(format!("{:.1}", 226.0 + width)) y=(i * 26 + 17) class="tick" { (value) }
                    }
                }
            }
        }
    }
}
