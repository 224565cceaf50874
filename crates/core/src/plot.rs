//! Plots drawn with plotters, text set in an embedded DejaVu Sans font (no system fonts needed).

use crate::error::{Error, Result};
use plotters::prelude::*;
use std::sync::Once;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlotKind {
    Line,
    Scatter,
    /// Lines through each series' points, with a marker at every point: a curve measured at a
    /// few places (a series of one point still shows).
    LinePoints,
    /// Grouped bars: each series is a group member, point `(i, y)` is its bar at the `i`-th
    /// of [`Plot::x_labels`].
    Bars,
}

#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

impl Series {
    pub fn new(name: impl Into<String>, points: Vec<(f64, f64)>) -> Self {
        Series {
            name: name.into(),
            points,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Plot {
    /// File stem: `plots/<id>.png`.
    pub id: String,
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub kind: PlotKind,
    pub series: Vec<Series>,
    pub log_y: bool,
    /// Category names of a [`PlotKind::Bars`] plot (x = index); empty for numeric x.
    pub x_labels: Vec<String>,
}

const W: u32 = 800;
const H: u32 = 500;
const FONT: &str = "sans-serif";

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular())
            .unwrap_or_else(|_| panic!("embedded DejaVu Sans is a valid font"));
    });
}

fn palette(i: usize) -> RGBColor {
    const C: [RGBColor; 8] = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(127, 127, 127),
    ];
    C[i % C.len()]
}

impl Plot {
    fn has_legend(&self) -> bool {
        self.series.len() > 1 || self.series.iter().any(|s| !s.name.is_empty())
    }

    /// Headroom for the legend in the upper right, so it never covers a point or a bar: the
    /// data keep the lower (1 - share) of the plot area (about 400 px high, 20 px per entry).
    fn legend_share(&self) -> f64 {
        if self.has_legend() {
            ((self.series.len() as f64 * 20.0 + 12.0) / 400.0).min(0.6)
        } else {
            0.0
        }
    }

    /// The top of a bar chart's y axis: 10% above the tallest bar, and the legend's share.
    fn bar_top(&self) -> f64 {
        let top = self
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.1))
            .filter(|y| y.is_finite())
            .fold(0.0f64, f64::max);
        if top > 0.0 {
            top * 1.1 / (1.0 - self.legend_share())
        } else {
            1.0
        }
    }

    fn bounds(&self) -> ((f64, f64), (f64, f64)) {
        let pts = self
            .series
            .iter()
            .flat_map(|s| s.points.iter())
            .filter(|(x, y)| x.is_finite() && y.is_finite() && (!self.log_y || *y > 0.0));
        let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
        for &(x, y) in pts {
            x0 = x0.min(x);
            x1 = x1.max(x);
            y0 = y0.min(y);
            y1 = y1.max(y);
        }
        if x0 > x1 {
            return ((0.0, 1.0), (if self.log_y { 0.1 } else { 0.0 }, 1.0));
        }
        let pad = |a: f64, b: f64| {
            let d = if b > a {
                (b - a) * 0.05
            } else {
                a.abs().max(1.0) * 0.05
            };
            (a - d, b + d)
        };
        let (y0, y1) = if self.log_y {
            (y0 * 0.8, y1 * 1.25)
        } else {
            pad(y0, y1)
        };
        let share = self.legend_share();
        let grow = share / (1.0 - share);
        let y1 = if self.log_y {
            y1 * (y1 / y0).powf(grow)
        } else {
            y1 + (y1 - y0) * grow
        };
        (pad(x0, x1), (y0, y1))
    }

    fn draw<DB: DrawingBackend>(&self, root: DrawingArea<DB, plotters::coord::Shift>) -> Result<()>
    where
        DB::ErrorType: 'static,
    {
        let err = |e: String| Error::Other(format!("plot {}: {e}", self.id));
        root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
        if self.kind == PlotKind::Bars {
            return self.draw_bars(root);
        }
        let ((x0, x1), (y0, y1)) = self.bounds();
        let mut builder = ChartBuilder::on(&root);
        builder
            .caption(&self.title, (FONT, 22))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60);
        macro_rules! body {
            ($chart:expr) => {{
                let mut chart = $chart;
                chart
                    .configure_mesh()
                    .x_desc(&self.x_label)
                    .y_desc(&self.y_label)
                    .label_style((FONT, 14))
                    .draw()
                    .map_err(|e| err(e.to_string()))?;
                for (i, s) in self.series.iter().enumerate() {
                    let c = palette(i);
                    let pts = s.points.iter().copied().filter(|(x, y)| {
                        x.is_finite() && y.is_finite() && (!self.log_y || *y > 0.0)
                    });
                    let anno = match self.kind {
                        // Bars are drawn by `draw_bars`; never reached.
                        PlotKind::Line | PlotKind::Bars => {
                            chart.draw_series(LineSeries::new(pts, c.stroke_width(2)))
                        }
                        PlotKind::Scatter => {
                            chart.draw_series(pts.map(|p| Circle::new(p, 3, c.mix(0.7).filled())))
                        }
                        PlotKind::LinePoints => {
                            let pts: Vec<(f64, f64)> = pts.collect();
                            chart
                                .draw_series(LineSeries::new(
                                    pts.iter().copied(),
                                    c.stroke_width(2),
                                ))
                                .map_err(|e| err(e.to_string()))?;
                            chart.draw_series(pts.iter().map(|&p| Circle::new(p, 4, c.filled())))
                        }
                    }
                    .map_err(|e| err(e.to_string()))?;
                    anno.label(s.name.clone()).legend(move |(x, y)| {
                        Rectangle::new([(x, y - 4), (x + 14, y + 4)], c.filled())
                    });
                }
                if self.has_legend() {
                    chart
                        .configure_series_labels()
                        .position(SeriesLabelPosition::UpperRight)
                        .label_font((FONT, 14))
                        .background_style(WHITE.mix(0.85))
                        .border_style(BLACK)
                        .draw()
                        .map_err(|e| err(e.to_string()))?;
                }
            }};
        }
        if self.log_y {
            body!(
                builder
                    .build_cartesian_2d(x0..x1, (y0..y1).log_scale())
                    .map_err(|e| err(e.to_string()))?
            );
        } else {
            body!(
                builder
                    .build_cartesian_2d(x0..x1, y0..y1)
                    .map_err(|e| err(e.to_string()))?
            );
        }
        root.present().map_err(|e| err(e.to_string()))?;
        Ok(())
    }

    fn draw_bars<DB: DrawingBackend>(
        &self,
        root: DrawingArea<DB, plotters::coord::Shift>,
    ) -> Result<()>
    where
        DB::ErrorType: 'static,
    {
        let err = |e: String| Error::Other(format!("plot {}: {e}", self.id));
        let n = self.x_labels.len().max(1);
        let y1 = self.bar_top();
        let labels = self.x_labels.clone();
        let mut chart = ChartBuilder::on(&root)
            .caption(&self.title, (FONT, 22))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(-0.5f64..n as f64 - 0.5, 0f64..y1)
            .map_err(|e| err(e.to_string()))?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(n)
            .x_label_formatter(&|x| {
                let i = x.round();
                if (x - i).abs() < 1e-6 && i >= 0.0 {
                    labels.get(i as usize).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            })
            .x_desc(&self.x_label)
            .y_desc(&self.y_label)
            .label_style((FONT, 13))
            .draw()
            .map_err(|e| err(e.to_string()))?;
        let k = self.series.len().max(1) as f64;
        let width = 0.8 / k;
        for (j, s) in self.series.iter().enumerate() {
            let c = palette(j);
            let left = -0.4 + j as f64 * width;
            let bars = s.points.iter().filter(|p| p.1.is_finite()).map(|&(x, y)| {
                Rectangle::new([(x + left, 0.0), (x + left + width * 0.92, y)], c.filled())
            });
            chart
                .draw_series(bars)
                .map_err(|e| err(e.to_string()))?
                .label(s.name.clone())
                .legend(move |(x, y)| Rectangle::new([(x, y - 4), (x + 14, y + 4)], c.filled()));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .label_font((FONT, 14))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(|e| err(e.to_string()))?;
        root.present().map_err(|e| err(e.to_string()))?;
        Ok(())
    }

    pub fn to_png(&self) -> Result<Vec<u8>> {
        register_font();
        let mut rgb = vec![0u8; (W * H * 3) as usize];
        self.draw(BitMapBackend::with_buffer(&mut rgb, (W, H)).into_drawing_area())?;
        let mut out = Vec::new();
        {
            let mut enc = png::Encoder::new(&mut out, W, H);
            enc.set_color(png::ColorType::Rgb);
            enc.set_depth(png::BitDepth::Eight);
            let mut w = enc
                .write_header()
                .map_err(|e| Error::Other(format!("png: {e}")))?;
            w.write_image_data(&rgb)
                .map_err(|e| Error::Other(format!("png: {e}")))?;
        }
        Ok(out)
    }

    pub fn to_svg(&self) -> Result<String> {
        register_font();
        let mut s = String::new();
        self.draw(SVGBackend::with_string(&mut s, (W, H)).into_drawing_area())?;
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The legend sits in the upper right; the y range leaves it room above every point.
    #[test]
    fn the_y_range_leaves_the_legend_room_above_the_data() {
        let series = |n: usize| {
            (0..n)
                .map(|i| Series::new(format!("s{i}"), vec![(0.0, 0.4), (1.0, 0.8)]))
                .collect()
        };
        let plot = |n: usize, log_y: bool| Plot {
            id: "t".into(),
            title: "t".into(),
            x_label: "x".into(),
            y_label: "y".into(),
            kind: PlotKind::Scatter,
            series: series(n),
            log_y,
            x_labels: Vec::new(),
        };
        for log_y in [false, true] {
            let (_, (y0, y1)) = plot(4, log_y).bounds();
            let at = |y: f64| {
                if log_y {
                    (y / y0).ln() / (y1 / y0).ln()
                } else {
                    (y - y0) / (y1 - y0)
                }
            };
            // 4 entries: 92 of about 400 px.
            assert!(
                at(0.8) < 1.0 - 92.0 / 400.0 + 1e-9,
                "log_y {log_y}: {y0}..{y1}"
            );
            assert!(at(0.8) > 0.6, "log_y {log_y}: {y0}..{y1}");
        }
        // One unnamed series draws no legend and keeps the plain 5% padding.
        let mut one = plot(1, false);
        one.series[0].name.clear();
        let (_, (y0, y1)) = one.bounds();
        assert!(
            (y1 - 0.82).abs() < 1e-9 && (y0 - 0.38).abs() < 1e-9,
            "{y0}..{y1}"
        );
    }

    /// A bar chart's legend (upper right) sits above the tallest bar: four entries take 92 of
    /// about 400 px, and the bars stay below that.
    #[test]
    fn bars_leave_the_legend_room() {
        let bars = |names: &[&str]| Plot {
            id: "t".into(),
            title: "t".into(),
            x_label: "x".into(),
            y_label: "y".into(),
            kind: PlotKind::Bars,
            series: names
                .iter()
                .map(|n| Series::new(*n, vec![(0.0, 30.0), (1.0, 80.0)]))
                .collect(),
            log_y: false,
            x_labels: vec!["a".into(), "b".into()],
        };
        let four = bars(&["a", "b", "c", "d"]);
        assert!(80.0 / four.bar_top() < 1.0 - 92.0 / 400.0 + 1e-9);
        assert!(80.0 / four.bar_top() > 0.6);
        // an unnamed single series has no legend: 10% above the tallest bar
        assert!((bars(&[""]).bar_top() - 88.0).abs() < 1e-9);
    }

    /// A learning curve joins its points and marks each one: a line per series and a marker
    /// per point, where a scatter plot draws markers only.
    #[test]
    fn line_points_draw_a_line_and_a_marker_per_point() {
        let plot = |kind| Plot {
            id: "t".into(),
            title: "t".into(),
            x_label: "x".into(),
            y_label: "y".into(),
            kind,
            series: vec![
                Series::new("a", vec![(1.0, 0.5), (2.0, 0.6), (3.0, 0.7)]),
                Series::new("b", vec![(1.0, 0.4)]),
            ],
            log_y: false,
            x_labels: Vec::new(),
        };
        let count = |kind, tag: &str| plot(kind).to_svg().unwrap().matches(tag).count();
        assert_eq!(count(PlotKind::LinePoints, "<circle"), 4);
        assert_eq!(count(PlotKind::Scatter, "<circle"), 4);
        // The mesh is drawn with polylines too: the curve adds one per series.
        assert_eq!(
            count(PlotKind::LinePoints, "<polyline") - count(PlotKind::Scatter, "<polyline"),
            2
        );
    }
}
