//! Charts drawn as SVG on the server: no JavaScript, readable without colour (labels and
//! titles carry the numbers). The drawing is 360 units wide, about a phone's width, so its
//! 11-unit text stays readable there; wider screens scale it up.

use maud::{Markup, html};

const WIDTH: f64 = 360.0;

/// How tall the bars are drawn.
#[derive(Debug, Clone, Copy)]
pub enum Scale {
    /// Up to the largest value (counts).
    Largest,
    /// Out of 100 (percentages): 40 % fills two fifths.
    Percent,
}

/// A vertical bar chart of `(label, value)`; every `label_every`-th label is written.
pub fn bars(title: &str, points: &[(String, i64)], label_every: usize, scale: Scale) -> Markup {
    let (h, pad) = (150.0_f64, 24.0_f64);
    let (max, top) = match scale {
        Scale::Largest => {
            let max = points.iter().map(|(_, v)| *v).max().unwrap_or(0).max(1);
            (max, format!("max {max}"))
        }
        Scale::Percent => (100, "100 %".to_owned()),
    };
    let n = points.len().max(1);
    #[allow(clippy::cast_precision_loss)]
    let step = (WIDTH - 2.0 * pad) / n as f64;
    html! {
        figure class="chart" {
            figcaption { (title) }
            svg viewBox=(format!("0 0 {WIDTH} {}", h + 20.0)) role="img" aria-label=(title) {
                line x1=(pad) y1=(h) x2=(WIDTH - pad) y2=(h) class="axis" {}
                line x1=(pad) y1=(pad) x2=(WIDTH - pad) y2=(pad) class="grid" {}
                @for (i, (label, value)) in points.iter().enumerate() {
                    @let bar = {
                        #[allow(clippy::cast_precision_loss)]
                        let bar = (h - pad) * (*value).clamp(0, max) as f64 / max as f64;
                        bar
                    };
                    @let x = {
                        #[allow(clippy::cast_precision_loss)]
                        let x = pad + step * i as f64;
                        x
                    };
                    rect x=(format!("{:.1}", x + 1.0)) y=(format!("{:.1}", h - bar)) width=(format!("{:.1}", (step - 2.0).max(1.0)))
                        height=(format!("{bar:.1}")) class="bar" {
                        title { (label) ": " (value) @if matches!(scale, Scale::Percent) { " %" } }
                    }
                    @if label_every > 0 && i % label_every == 0 {
                        text x=(format!("{:.1}", x + step / 2.0)) y=(h + 14.0) text-anchor="middle" class="tick" { (label) }
                    }
                }
                text x=(pad) y=(pad - 6.0) class="tick" { (top) }
            }
        }
    }
}

/// Horizontal bars for categories (failures by reason): each label on its own line, whole,
/// above its bar.
pub fn ranking(title: &str, rows: &[(String, i64)]) -> Markup {
    let max = rows.iter().map(|(_, v)| *v).max().unwrap_or(0).max(1);
    let row = 34;
    html! {
        figure class="chart" {
            figcaption { (title) }
            @if rows.is_empty() {
                p class="muted" { "None." }
            } @else {
                svg viewBox=(format!("0 0 {WIDTH} {}", rows.len() * row + 4)) role="img" aria-label=(title) {
                    @for (i, (label, value)) in rows.iter().enumerate() {
                        @let width = {
                            #[allow(clippy::cast_precision_loss)]
                            let width = (WIDTH - 50.0) * (*value as f64) / (max as f64);
                            width
                        };
                        text x="0" y=(i * row + 12) class="tick" { (label) }
                        rect x="0" y=(i * row + 16) width=(format!("{width:.1}")) height="12" class="bar bad" {}
                        text x=(format!("{:.1}", 6.0 + width)) y=(i * row + 27) class="tick" { (value) }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn heights(svg: &str) -> Vec<String> {
        svg.split("height=\"").skip(1).map(|h| h.split('"').next().unwrap_or_default().to_owned()).collect()
    }

    #[test]
    fn percentages_are_drawn_out_of_100_and_counts_out_of_the_largest() {
        let points = [("Mon".to_owned(), 40), ("Tue".to_owned(), 20)];
        let percent = bars("rate", &points, 1, Scale::Percent).into_string();
        // The bars' room is 126 units: 40 % is 50.4 of it, not all of it.
        assert_eq!(heights(&percent), ["50.4", "25.2"], "{percent}");
        assert!(percent.contains("100 %"));
        let counts = bars("count", &points, 1, Scale::Largest).into_string();
        assert_eq!(heights(&counts), ["126.0", "63.0"], "{counts}");
    }

    #[test]
    fn a_long_reason_is_written_whole() {
        let label = "1025: the prompt could not be sent".to_owned();
        let svg = ranking("Failures", &[(label.clone(), 3)]).into_string();
        assert!(svg.contains(&format!(">{label}</text>")), "{svg}");
    }
}
