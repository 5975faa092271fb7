//! Line charts as SVG, written by hand: a few series of (x, y) points on linear or
//! logarithmic axes, with ticks and a legend. Enough for the report's plots.

use std::fmt::Write;

pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

pub struct Chart<'a> {
    pub title: &'a str,
    pub x_label: &'a str,
    pub y_label: &'a str,
    pub log_x: bool,
    pub log_y: bool,
    pub series: Vec<Series>,
}

const WIDTH: f64 = 640.0;
/// Height of the plot and its axes; the legend adds a line per series below.
const PLOT_HEIGHT: f64 = 360.0;
const LEGEND_LINE: f64 = 18.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 36.0;
const BOTTOM: f64 = 50.0;
const COLOURS: [&str; 6] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf"];

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Ticks for an axis: powers of ten on a log axis, 1-2-5 steps on a linear one.
fn ticks(low: f64, high: f64, log: bool) -> Vec<f64> {
    if log {
        let (a, b) = (low.log10().floor() as i32, high.log10().ceil() as i32);
        return (a..=b).map(|e| 10f64.powi(e)).collect();
    }
    let span = (high - low).max(1e-9);
    let raw = span / 5.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step =
        [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * magnitude).find(|s| span / s <= 6.0).unwrap_or(10.0 * magnitude);
    let mut tick = (low / step).floor() * step;
    let mut out = Vec::new();
    while tick <= high + step * 1e-9 {
        out.push(tick);
        tick += step;
    }
    out
}

fn label(value: f64) -> String {
    if value >= 1000.0 && value.fract() == 0.0 {
        let thousands = value / 1000.0;
        if thousands.fract() == 0.0 {
            return format!("{thousands}k");
        }
    }
    if value.abs() < 10.0 && value.fract() != 0.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.0}")
    }
}

impl Chart<'_> {
    pub fn svg(&self) -> String {
        let points: Vec<(f64, f64)> = self
            .series
            .iter()
            .flat_map(|s| s.points.iter().copied())
            .filter(|(x, y)| x.is_finite() && y.is_finite() && (!self.log_x || *x > 0.0) && (!self.log_y || *y > 0.0))
            .collect();
        let mut svg = String::new();
        let height = PLOT_HEIGHT + 10.0 + LEGEND_LINE * self.series.len() as f64;
        let _ = write!(
            svg,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12"><rect width="100%" height="100%" fill="white"/><text x="{}" y="20" font-size="14" font-weight="bold">{}</text>"#,
            LEFT,
            escape(self.title)
        );
        if points.is_empty() {
            svg.push_str(r#"<text x="80" y="180">no data</text></svg>"#);
            return svg;
        }
        let bounds = |values: Vec<f64>, log: bool| {
            let low = values.iter().copied().fold(f64::INFINITY, f64::min);
            let high = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            if log {
                (10f64.powf(low.log10().floor()), 10f64.powf(high.log10().ceil().max(low.log10().floor() + 1.0)))
            } else {
                let top = if high > 0.0 { high * 1.1 } else { 1.0 };
                (0.0f64.min(low), top)
            }
        };
        let (x0, x1) = bounds(points.iter().map(|p| p.0).collect(), self.log_x);
        let (y0, y1) = bounds(points.iter().map(|p| p.1).collect(), self.log_y);
        let (plot_w, plot_h) = (WIDTH - LEFT - RIGHT, PLOT_HEIGHT - TOP - BOTTOM);
        let scale = |v: f64, low: f64, high: f64, log: bool| {
            if log {
                (v.log10() - low.log10()) / (high.log10() - low.log10())
            } else {
                (v - low) / (high - low).max(1e-12)
            }
        };
        let sx = |x: f64| LEFT + scale(x, x0, x1, self.log_x) * plot_w;
        let sy = |y: f64| TOP + plot_h - scale(y, y0, y1, self.log_y) * plot_h;
        for tick in ticks(x0, x1, self.log_x).into_iter().filter(|t| *t >= x0 && *t <= x1) {
            let x = sx(tick);
            let _ = write!(
                svg,
                r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{:.1}" stroke="#ddd"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
                TOP + plot_h,
                TOP + plot_h + 16.0,
                label(tick)
            );
        }
        for tick in ticks(y0, y1, self.log_y).into_iter().filter(|t| *t >= y0 && *t <= y1) {
            let y = sy(tick);
            let _ = write!(
                svg,
                r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
                LEFT + plot_w,
                LEFT - 6.0,
                y + 4.0,
                label(tick)
            );
        }
        let _ = write!(
            svg,
            r##"<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#888"/><text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text><text transform="translate(16 {:.1}) rotate(-90)" text-anchor="middle">{}</text>"##,
            LEFT + plot_w / 2.0,
            PLOT_HEIGHT - 10.0,
            escape(self.x_label),
            TOP + plot_h / 2.0,
            escape(self.y_label)
        );
        for (i, series) in self.series.iter().enumerate() {
            let colour = COLOURS[i % COLOURS.len()];
            let shown: Vec<(f64, f64)> = series
                .points
                .iter()
                .copied()
                .filter(|(x, y)| {
                    x.is_finite() && y.is_finite() && (!self.log_x || *x > 0.0) && (!self.log_y || *y > 0.0)
                })
                .collect();
            let path: Vec<String> = shown.iter().map(|(x, y)| format!("{:.1},{:.1}", sx(*x), sy(*y))).collect();
            let _ = write!(
                svg,
                r#"<polyline points="{}" fill="none" stroke="{colour}" stroke-width="2"/>"#,
                path.join(" ")
            );
            for (x, y) in &shown {
                let _ = write!(svg, r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{colour}"/>"#, sx(*x), sy(*y));
            }
            let ly = PLOT_HEIGHT + 10.0 + i as f64 * LEGEND_LINE;
            let lx = LEFT;
            let _ = write!(
                svg,
                r#"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="{colour}" stroke-width="2"/><text x="{}" y="{}">{}</text>"#,
                lx + 18.0,
                lx + 24.0,
                ly + 4.0,
                escape(&series.name)
            );
        }
        svg.push_str("</svg>\n");
        svg
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_cover_the_range() {
        assert_eq!(ticks(1.0, 10_000.0, true), vec![1.0, 10.0, 100.0, 1000.0, 10_000.0]);
        assert_eq!(ticks(0.0, 45.0, false), vec![0.0, 10.0, 20.0, 30.0, 40.0]);
    }

    #[test]
    fn a_chart_draws_each_series() {
        let chart = Chart {
            title: "t",
            x_label: "x",
            y_label: "y",
            log_x: true,
            log_y: false,
            series: vec![
                Series { name: "a".into(), points: vec![(1.0, 2.0), (100.0, 4.0)] },
                Series { name: "b <peer>".into(), points: vec![(1.0, 3.0)] },
            ],
        };
        let svg = chart.svg();
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("b &lt;peer&gt;"));
    }
}
