//! Posters, drawn as SVG from the title and the movie's colour.

/// An SVG poster (2:3) for a movie.
pub fn svg(title: &str, colour: &str) -> String {
    let colour = if colour.len() == 7 && colour.starts_with('#') && colour[1..].bytes().all(|b| b.is_ascii_hexdigit()) {
        colour
    } else {
        "#444444"
    };
    // Up to three lines of about 14 characters, split at spaces.
    let mut lines: Vec<String> = Vec::new();
    for word in title.split_whitespace() {
        match lines.last_mut() {
            Some(line) if line.len() + word.len() < 14 => {
                line.push(' ');
                line.push_str(word);
            }
            _ => lines.push(word.to_owned()),
        }
    }
    lines.truncate(3);
    let text: String = lines
        .iter()
        .enumerate()
        .map(|(i, line)| {
            let y = 150 + i * 34;
            format!(r#"<text x="100" y="{y}" text-anchor="middle">{}</text>"#, escape(line))
        })
        .collect();
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 200 300" role="img" aria-label="{label}">
<defs><linearGradient id="g" x1="0" y1="0" x2="0" y2="1"><stop offset="0" stop-color="{colour}"/><stop offset="1" stop-color="#111"/></linearGradient></defs>
<rect width="200" height="300" fill="url(#g)"/>
<circle cx="100" cy="80" r="34" fill="none" stroke="#fff" stroke-opacity=".5" stroke-width="3"/>
<path d="M88 64 L120 80 L88 96 Z" fill="#fff" fill-opacity=".7"/>
<g fill="#fff" font-family="system-ui,sans-serif" font-size="24" font-weight="700">{text}</g>
<text x="100" y="280" text-anchor="middle" fill="#fff" fill-opacity=".7" font-family="system-ui,sans-serif" font-size="12">LIPA CINEMA</text>
</svg>"##,
        label = escape(title),
    )
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}
