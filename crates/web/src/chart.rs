//! Lab trends as inline SVG drawn on the server: a sparkline per item with the reference range
//! as a band and values outside it marked, and a larger plot with axes for the item's page.
//! Pure string building; every text that goes into the SVG is escaped.

use std::fmt::Write;

/// A point: time (epoch ms), value, outside the range.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    /// Epoch ms.
    pub t: i64,
    /// Value.
    pub v: f64,
    /// Outside the reference range.
    pub abnormal: bool,
}

/// Escapes text for XML.
pub fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '&' => o.push_str("&amp;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

struct Scale {
    t0: i64,
    t1: i64,
    v0: f64,
    v1: f64,
    x0: f64,
    x1: f64,
    y0: f64,
    y1: f64,
}

impl Scale {
    fn new(points: &[Point], range: Option<(f64, f64)>, x: (f64, f64), y: (f64, f64)) -> Scale {
        let finite = points.iter().filter(|p| p.v.is_finite());
        let mut v0 = f64::INFINITY;
        let mut v1 = f64::NEG_INFINITY;
        for p in finite.clone() {
            v0 = v0.min(p.v);
            v1 = v1.max(p.v);
        }
        if let Some((lo, hi)) = range.filter(|(lo, hi)| lo.is_finite() && hi.is_finite()) {
            v0 = v0.min(lo);
            v1 = v1.max(hi);
        }
        if !v0.is_finite() || !v1.is_finite() {
            v0 = 0.0;
            v1 = 1.0;
        }
        if (v1 - v0).abs() < f64::EPSILON {
            v0 -= 1.0;
            v1 += 1.0;
        }
        let pad = (v1 - v0) * 0.08;
        let t0 = points.iter().map(|p| p.t).min().unwrap_or(0);
        let t1 = points.iter().map(|p| p.t).max().unwrap_or(1);
        // One date: `x` puts it in the middle.
        Scale { t0, t1, v0: v0 - pad, v1: v1 + pad, x0: x.0, x1: x.1, y0: y.0, y1: y.1 }
    }

    fn x(&self, t: i64) -> f64 {
        if self.t1 == self.t0 {
            return (self.x0 + self.x1) / 2.0;
        }
        self.x0 + (t - self.t0) as f64 / (self.t1 - self.t0) as f64 * (self.x1 - self.x0)
    }

    fn y(&self, v: f64) -> f64 {
        self.y1 - (v - self.v0) / (self.v1 - self.v0) * (self.y1 - self.y0)
    }
}

fn band(s: &Scale, range: Option<(f64, f64)>, out: &mut String) {
    if let Some((lo, hi)) = range.filter(|(lo, hi)| lo.is_finite() && hi.is_finite() && hi > lo) {
        let (top, bottom) = (s.y(hi), s.y(lo));
        let _ = write!(
            out,
            r##"<rect class="band" x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="#e3f1e6"/>"##,
            s.x0,
            top,
            s.x1 - s.x0,
            (bottom - top).max(0.5)
        );
    }
}

fn line_and_dots(s: &Scale, points: &[Point], r: f64, out: &mut String) {
    let finite: Vec<&Point> = points.iter().filter(|p| p.v.is_finite()).collect();
    if finite.len() > 1 {
        out.push_str(r##"<polyline fill="none" stroke="#2a5d9f" stroke-width="1.5" points=""##);
        for p in &finite {
            let _ = write!(out, "{:.1},{:.1} ", s.x(p.t), s.y(p.v));
        }
        out.push_str(r#""/>"#);
    }
    for p in &finite {
        let _ = write!(
            out,
            r##"<circle cx="{:.1}" cy="{:.1}" r="{r}" fill="{}"/>"##,
            s.x(p.t),
            s.y(p.v),
            if p.abnormal { "#c62828" } else { "#2a5d9f" }
        );
    }
}

/// A small trend (120×32) with the reference band; `label` is read by screen readers.
pub fn sparkline(points: &[Point], range: Option<(f64, f64)>, label: &str) -> String {
    let (w, h) = (120.0, 32.0);
    let s = Scale::new(points, range, (3.0, w - 3.0), (3.0, h - 3.0));
    let mut out = format!(
        r#"<svg class="spark" width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img" aria-label="{}" xmlns="http://www.w3.org/2000/svg">"#,
        escape(label)
    );
    band(&s, range, &mut out);
    line_and_dots(&s, points, 2.2, &mut out);
    out.push_str("</svg>");
    out
}

/// A larger plot (640×220) with value ticks and the first and last dates.
pub fn plot(points: &[Point], range: Option<(f64, f64)>, label: &str, first: &str, last: &str) -> String {
    let (w, h) = (640.0, 220.0);
    let s = Scale::new(points, range, (56.0, w - 12.0), (12.0, h - 28.0));
    let mut out = format!(
        r#"<svg class="plot" width="100%" viewBox="0 0 {w} {h}" role="img" aria-label="{}" xmlns="http://www.w3.org/2000/svg">"#,
        escape(label)
    );
    band(&s, range, &mut out);
    let _ = write!(
        out,
        r##"<line x1="{x0}" y1="{yb}" x2="{x1}" y2="{yb}" stroke="#888"/><line x1="{x0}" y1="{yt}" x2="{x0}" y2="{yb}" stroke="#888"/>"##,
        x0 = s.x0,
        x1 = s.x1,
        yb = s.y1,
        yt = s.y0
    );
    for i in 0..=4 {
        let v = s.v0 + (s.v1 - s.v0) * f64::from(i) / 4.0;
        let y = s.y(v);
        let _ = write!(
            out,
            r##"<text x="{:.1}" y="{:.1}" font-size="11" text-anchor="end" fill="#444">{}</text><line x1="{:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/>"##,
            s.x0 - 6.0,
            y + 4.0,
            escape(&tick(v)),
            s.x0,
            s.x1
        );
    }
    let _ = write!(
        out,
        r##"<text x="{:.1}" y="{:.1}" font-size="11" fill="#444">{}</text><text x="{:.1}" y="{:.1}" font-size="11" text-anchor="end" fill="#444">{}</text>"##,
        s.x0,
        h - 8.0,
        escape(first),
        s.x1,
        h - 8.0,
        escape(last)
    );
    line_and_dots(&s, points, 3.5, &mut out);
    out.push_str("</svg>");
    out
}

fn tick(v: f64) -> String {
    let a = v.abs();
    if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn sparkline_marks_abnormal_values_and_draws_the_band() {
        let pts = [Point { t: 0, v: 6.0, abnormal: false }, Point { t: 10, v: 7.2, abnormal: true }];
        let svg = sparkline(&pts, Some((4.6, 6.2)), "HbA1c <推移>");
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains(r#"aria-label="HbA1c &lt;推移&gt;""#));
        assert!(svg.contains("<rect class=\"band\""));
        assert_eq!(svg.matches("#c62828").count(), 1);
        assert_eq!(svg.matches("<circle").count(), 2);
        assert!(svg.contains("<polyline"));
    }

    #[test]
    fn one_point_and_no_range_still_draw() {
        let svg = plot(&[Point { t: 5, v: 3.0, abnormal: false }], None, "x", "2026/01/01", "2026/01/01");
        // The only point is in the middle of the plot area (56..628).
        assert!(svg.contains("<circle cx=\"342.0\""), "{svg}");
        assert!(!svg.contains("NaN"));
    }

    proptest! {
        #[test]
        fn never_nan_or_panic(vals in proptest::collection::vec((any::<i32>(), any::<f64>()), 0..20), lo in any::<f64>(), hi in any::<f64>()) {
            let pts: Vec<Point> = vals.iter().map(|(t, v)| Point { t: i64::from(*t), v: *v, abnormal: false }).collect();
            let svg = sparkline(&pts, Some((lo, hi)), "x");
            prop_assert!(svg.ends_with("</svg>"));
            let svg = plot(&pts, Some((lo, hi)), "x", "a", "b");
            prop_assert!(svg.ends_with("</svg>"));
        }
    }
}
