//! Reports: one document model rendered to `report.md` (plots as PNG files beside it) and a
//! self-contained `report.html` (plots embedded as base64 PNG). Reports are built from measured
//! data only; nothing in here knows any paper's numbers.

use crate::atomic::write_atomic;
use crate::error::Result;
use crate::plot::Plot;
use std::fmt::Write as _;
use std::path::Path;

#[derive(Debug, Clone)]
pub enum Block {
    Heading(u8, String),
    Paragraph(String),
    Table(Table),
    Plot(Plot),
    Code(String),
}

#[derive(Debug, Clone, Default)]
pub struct Table {
    pub headers: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new<S: Into<String>>(headers: impl IntoIterator<Item = S>) -> Self {
        Table {
            headers: headers.into_iter().map(Into::into).collect(),
            rows: Vec::new(),
        }
    }
    pub fn row<S: Into<String>>(&mut self, cells: impl IntoIterator<Item = S>) -> &mut Self {
        self.rows.push(cells.into_iter().map(Into::into).collect());
        self
    }
}

#[derive(Debug, Clone, Default)]
pub struct Report {
    pub title: String,
    pub blocks: Vec<Block>,
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Escaped text with Markdown's inline code (`x`) as `<code>`, so backticks written for the
/// Markdown report do not show in the HTML one.
fn inline_html(s: &str) -> String {
    let parts: Vec<&str> = s.split('`').collect();
    if parts.len() < 3 {
        return html_escape(s);
    }
    let mut out = String::new();
    for (i, p) in parts.iter().enumerate() {
        if i % 2 == 1 && i + 1 < parts.len() {
            let _ = write!(out, "<code>{}</code>", html_escape(p));
        } else {
            if i % 2 == 1 {
                out.push('`');
            }
            out.push_str(&html_escape(p));
        }
    }
    out
}

/// The CSS class of a table cell that states a claim's verdict, so verdicts read at a glance.
fn verdict_class(cell: &str) -> Option<&'static str> {
    match cell {
        VERDICT_HELD => Some("held"),
        VERDICT_NOT_HELD => Some("not-held"),
        VERDICT_UNDECIDED => Some("undecided"),
        VERDICT_UNRESOLVED => Some("unresolved"),
        _ => None,
    }
}

/// The words a report uses for a claim's verdict.
pub const VERDICT_HELD: &str = "held";
pub const VERDICT_NOT_HELD: &str = "not held";
pub const VERDICT_UNDECIDED: &str = "undecided";
/// The margin that decides the claim is inside what this size resolves.
pub const VERDICT_UNRESOLVED: &str = "not resolved at this size";

fn md_cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

impl Report {
    pub fn new(title: impl Into<String>) -> Self {
        Report {
            title: title.into(),
            blocks: Vec::new(),
        }
    }
    pub fn heading(&mut self, level: u8, text: impl Into<String>) -> &mut Self {
        self.blocks
            .push(Block::Heading(level.clamp(1, 6), text.into()));
        self
    }
    pub fn paragraph(&mut self, text: impl Into<String>) -> &mut Self {
        self.blocks.push(Block::Paragraph(text.into()));
        self
    }
    pub fn table(&mut self, t: Table) -> &mut Self {
        self.blocks.push(Block::Table(t));
        self
    }
    pub fn plot(&mut self, p: Plot) -> &mut Self {
        self.blocks.push(Block::Plot(p));
        self
    }
    pub fn code(&mut self, text: impl Into<String>) -> &mut Self {
        self.blocks.push(Block::Code(text.into()));
        self
    }
    pub fn extend(&mut self, blocks: impl IntoIterator<Item = Block>) -> &mut Self {
        self.blocks.extend(blocks);
        self
    }

    pub fn to_markdown(&self) -> String {
        let mut md = format!("# {}\n\n", self.title);
        for b in &self.blocks {
            match b {
                Block::Heading(l, t) => {
                    let _ = write!(md, "{} {t}\n\n", "#".repeat(*l as usize + 1));
                }
                Block::Paragraph(t) => {
                    let _ = write!(md, "{t}\n\n");
                }
                Block::Code(t) => {
                    let _ = write!(md, "```\n{t}\n```\n\n");
                }
                Block::Table(t) => {
                    let _ = writeln!(
                        md,
                        "| {} |",
                        t.headers
                            .iter()
                            .map(|h| md_cell(h))
                            .collect::<Vec<_>>()
                            .join(" | ")
                    );
                    let _ = writeln!(md, "|{}", "---|".repeat(t.headers.len()));
                    for r in &t.rows {
                        let _ = writeln!(
                            md,
                            "| {} |",
                            r.iter().map(|c| md_cell(c)).collect::<Vec<_>>().join(" | ")
                        );
                    }
                    md.push('\n');
                }
                Block::Plot(p) => {
                    let _ = write!(md, "![{}](plots/{}.png)\n\n", p.title, p.id);
                }
            }
        }
        md
    }

    /// Renders HTML; `png_of` gives each plot's PNG bytes for embedding.
    fn to_html(&self, png_of: &dyn Fn(&Plot) -> Option<Vec<u8>>) -> String {
        use base64::Engine as _;
        let mut h = String::new();
        let _ = write!(
            h,
            "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{t}</title>\n<style>\
body{{font-family:sans-serif;max-width:60em;margin:2em auto;padding:0 1em;color:#222}}\
table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #bbb;padding:.25em .6em;text-align:left}}\
th{{background:#eee}}pre{{background:#f6f6f6;padding:.6em;overflow-x:auto}}img{{max-width:100%}}\
code{{background:#f0f0f0;padding:0 .2em}}td.held{{background:#dff3dc;color:#17601a;font-weight:bold}}\
td.not-held{{background:#fbe0de;color:#8a1c12;font-weight:bold}}td.undecided{{background:#eee;color:#555}}td.unresolved{{background:#fff4d6;color:#7a5a00}}\
</style></head><body>\n<h1>{t}</h1>\n",
            t = html_escape(&self.title)
        );
        for b in &self.blocks {
            match b {
                Block::Heading(l, t) => {
                    let l = (*l + 1).min(6);
                    let _ = writeln!(h, "<h{l}>{}</h{l}>", html_escape(t));
                }
                Block::Paragraph(t) => {
                    let _ = writeln!(h, "<p>{}</p>", inline_html(t));
                }
                Block::Code(t) => {
                    let _ = writeln!(h, "<pre>{}</pre>", html_escape(t));
                }
                Block::Table(t) => {
                    h.push_str("<table><tr>");
                    for c in &t.headers {
                        let _ = write!(h, "<th>{}</th>", html_escape(c));
                    }
                    h.push_str("</tr>\n");
                    for r in &t.rows {
                        h.push_str("<tr>");
                        for c in r {
                            match verdict_class(c) {
                                Some(k) => {
                                    let _ = write!(h, "<td class=\"{k}\">{}</td>", html_escape(c));
                                }
                                None => {
                                    let _ = write!(h, "<td>{}</td>", inline_html(c));
                                }
                            }
                        }
                        h.push_str("</tr>\n");
                    }
                    h.push_str("</table>\n");
                }
                Block::Plot(p) => match png_of(p) {
                    Some(png) => {
                        let b64 = base64::engine::general_purpose::STANDARD.encode(png);
                        let _ = writeln!(
                            h,
                            "<figure><img alt=\"{}\" src=\"data:image/png;base64,{b64}\"></figure>",
                            html_escape(&p.title)
                        );
                    }
                    None => {
                        let _ = writeln!(
                            h,
                            "<p><em>plot {} could not be rendered</em></p>",
                            html_escape(&p.id)
                        );
                    }
                },
            }
        }
        h.push_str("</body></html>\n");
        h
    }

    /// Writes `report.md`, `report.html` and `plots/<id>.{png,svg}` into `dir` (atomically each).
    pub fn write(&self, dir: impl AsRef<Path>) -> Result<()> {
        let dir = dir.as_ref();
        let mut pngs = std::collections::HashMap::new();
        for b in &self.blocks {
            if let Block::Plot(p) = b {
                let png = p.to_png()?;
                write_atomic(dir.join("plots").join(format!("{}.png", p.id)), &png)?;
                write_atomic(
                    dir.join("plots").join(format!("{}.svg", p.id)),
                    p.to_svg()?.as_bytes(),
                )?;
                pngs.insert(p.id.clone(), png);
            }
        }
        write_atomic(dir.join("report.md"), self.to_markdown().as_bytes())?;
        let html = self.to_html(&|p| pngs.get(&p.id).cloned());
        write_atomic(dir.join("report.html"), html.as_bytes())?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plot::{Plot, PlotKind, Series};

    #[test]
    fn inline_code_becomes_code_and_verdicts_are_coloured_in_html() {
        assert_eq!(
            inline_html("run `make test` & <see>"),
            "run <code>make test</code> &amp; &lt;see&gt;"
        );
        assert_eq!(inline_html("a lone ` stays"), "a lone ` stays");
        assert_eq!(inline_html("`a` and `b"), "<code>a</code> and `b");
        let dir = tempfile::tempdir().unwrap();
        let mut r = Report::new("Claims");
        let mut t = Table::new(["claim", "verdict"]);
        t.row(["`x` beats y", VERDICT_HELD]);
        t.row(["z", VERDICT_NOT_HELD]);
        t.row(["w", VERDICT_UNDECIDED]);
        t.row(["v", VERDICT_UNRESOLVED]);
        r.table(t);
        r.write(dir.path()).unwrap();
        let html = std::fs::read_to_string(dir.path().join("report.html")).unwrap();
        assert!(html.contains("<td><code>x</code> beats y</td>"), "{html}");
        assert!(html.contains("<td class=\"held\">held</td>"), "{html}");
        assert!(
            html.contains("<td class=\"not-held\">not held</td>"),
            "{html}"
        );
        assert!(
            html.contains("<td class=\"undecided\">undecided</td>"),
            "{html}"
        );
        assert!(
            html.contains("<td class=\"unresolved\">not resolved at this size</td>"),
            "{html}"
        );
        assert!(!html.contains('`'), "no raw backticks: {html}");
    }

    #[test]
    fn report_writes_markdown_and_self_contained_html() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = Report::new("Demo <report>");
        r.heading(1, "Numbers").paragraph("a | b & c");
        let mut t = Table::new(["name", "value"]);
        t.row(["x|y", "1.0"]);
        r.table(t);
        r.plot(Plot {
            id: "loss".into(),
            title: "Loss".into(),
            x_label: "step".into(),
            y_label: "loss".into(),
            kind: PlotKind::Line,
            series: vec![Series::new(
                "train",
                (0..20)
                    .map(|i| (i as f64, 1.0 / (1.0 + i as f64)))
                    .collect(),
            )],
            log_y: false,
            x_labels: Vec::new(),
        });
        r.write(dir.path()).unwrap();
        let md = std::fs::read_to_string(dir.path().join("report.md")).unwrap();
        assert!(md.contains("| x\\|y | 1.0 |"), "{md}");
        assert!(md.contains("plots/loss.png"));
        let html = std::fs::read_to_string(dir.path().join("report.html")).unwrap();
        assert!(
            html.contains("data:image/png;base64,iVBOR"),
            "PNG must be embedded"
        );
        assert!(html.contains("Demo &lt;report&gt;"));
        assert!(
            !html.contains("src=\"plots/"),
            "HTML must not reference external files"
        );
        assert!(dir.path().join("plots/loss.svg").exists());
    }
}
