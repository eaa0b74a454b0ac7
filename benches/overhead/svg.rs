//! The reconnect-storm figure as an SVG: reconnects per 100 ms after a server restart, one
//! line per client, drawn by hand (a few dozen lines of SVG need no plotting crate).

use std::fmt::Write;

/// A line chart of `series` (label, colour, reconnects per 100 ms bin) over time.
pub fn storm(title: &str, series: &[(&str, &str, Vec<u32>)]) -> String {
    let (w, h, left, bottom, top, right) = (720.0, 320.0, 60.0, 40.0, 40.0, 20.0);
    let bins = series.iter().map(|s| s.2.len()).max().unwrap_or(0).max(10);
    let peak = series
        .iter()
        .flat_map(|s| s.2.iter().copied())
        .max()
        .unwrap_or(0)
        .max(1);
    let x = |i: usize| left + (w - left - right) * i as f64 / bins as f64;
    let y = |v: u32| h - bottom - (h - bottom - top) * f64::from(v) / f64::from(peak);
    let mut svg = String::new();
    let _ = write!(
        svg,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">
<rect width="{w}" height="{h}" fill="#fff"/>
<text x="{left}" y="22" font-size="14">{title}</text>
<line x1="{left}" y1="{}" x2="{}" y2="{}" stroke="#333"/>
<line x1="{left}" y1="{top}" x2="{left}" y2="{}" stroke="#333"/>
"##,
        h - bottom,
        w - right,
        h - bottom,
        h - bottom
    );
    // Axes: seconds along x, reconnects per 100 ms up y.
    for s in 0..=(bins / 10) {
        let px = x(s * 10);
        let _ = writeln!(
            svg,
            r##"<text x="{px}" y="{}" text-anchor="middle">{s} s</text>"##,
            h - bottom + 16.0
        );
    }
    for frac in [0.0, 0.5, 1.0] {
        let v = (f64::from(peak) * frac).round() as u32;
        let _ = writeln!(
            svg,
            r##"<text x="{}" y="{}" text-anchor="end">{v}</text>"##,
            left - 6.0,
            y(v) + 4.0
        );
    }
    let _ = writeln!(
        svg,
        r##"<text x="14" y="{}" transform="rotate(-90 14 {})" text-anchor="middle">reconnects per 100 ms</text>"##,
        (h - bottom + top) / 2.0,
        (h - bottom + top) / 2.0
    );
    for (n, (label, colour, bins)) in series.iter().enumerate() {
        let points: Vec<String> = bins
            .iter()
            .enumerate()
            .map(|(i, v)| format!("{:.1},{:.1}", x(i) + 0.5 * (x(1) - x(0)), y(*v)))
            .collect();
        let _ = writeln!(
            svg,
            r##"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{}"/>"##,
            points.join(" ")
        );
        let ly = top + 4.0 + 16.0 * n as f64;
        let _ = writeln!(
            svg,
            r##"<line x1="{}" y1="{ly}" x2="{}" y2="{ly}" stroke="{colour}" stroke-width="2"/><text x="{}" y="{}">{label}</text>"##,
            w - right - 170.0,
            w - right - 150.0,
            w - right - 144.0,
            ly + 4.0
        );
    }
    svg.push_str("</svg>\n");
    svg
}
