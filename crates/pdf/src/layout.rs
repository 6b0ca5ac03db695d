//! Layout of the summary into pages of drawing operations: measured, wrapped text in rows with
//! the source column on the right, section headings, and (in a second pass, once the number of
//! pages is known) the header and footer of every page. Pure: no PDF types here.

use musubi_record::summary::{EmergencySummary, Section, Source};
use skrifa::instance::{LocationRef, Size};
use skrifa::metrics::GlyphMetrics;
use skrifa::{FontRef, MetadataProvider};

use crate::{A4, PdfMeta};

/// An RGB colour.
pub(crate) type Color = (u8, u8, u8);

const BLACK: Color = (0x1a, 0x1a, 0x1a);
const GRAY: Color = (0x55, 0x5b, 0x66);
const LIGHT: Color = (0xd0, 0xd4, 0xda);
const HEAD_BG: Color = (0x1f, 0x3a, 0x5f);
const WHITE: Color = (0xff, 0xff, 0xff);
const RED: Color = (0xb0, 0x10, 0x10);
const BANNER: Color = (0xc6, 0x28, 0x28);

const LEFT: f32 = 36.0;
const RIGHT: f32 = A4.0 - 36.0;
/// Where the source column (facility and date) starts.
const SRC_X: f32 = 440.0;
const TOP: f32 = 74.0;
const BOTTOM: f32 = A4.1 - 46.0;
const BODY: f32 = 8.8;
const SMALL: f32 = 7.4;
const LEADING: f32 = 1.32;

/// One drawing operation (top-left origin, y downwards; text at its baseline).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Op {
    /// Text.
    Text {
        /// Left.
        x: f32,
        /// Baseline.
        y: f32,
        /// Font size.
        size: f32,
        /// Colour.
        color: Color,
        /// The text (one line).
        text: String,
    },
    /// A filled rectangle.
    Rect {
        /// Left.
        x: f32,
        /// Top.
        y: f32,
        /// Width.
        w: f32,
        /// Height.
        h: f32,
        /// Colour.
        color: Color,
    },
    /// A line.
    Line {
        /// Start x.
        x1: f32,
        /// Start y.
        y1: f32,
        /// End x.
        x2: f32,
        /// End y.
        y2: f32,
        /// Width.
        width: f32,
        /// Colour.
        color: Color,
    },
}

/// Text measurement from the font's advance widths.
pub(crate) struct Measure {
    font: FontRef<'static>,
    metrics: GlyphMetrics<'static>,
    upem: f32,
}

impl Measure {
    pub(crate) fn new(data: &'static [u8]) -> Option<Measure> {
        let font = FontRef::new(data).ok()?;
        let metrics = font.glyph_metrics(Size::unscaled(), LocationRef::default());
        let upem = f32::from(font.metrics(Size::unscaled(), LocationRef::default()).units_per_em);
        Some(Measure { font, metrics, upem })
    }

    fn char_width(&self, c: char, size: f32) -> f32 {
        let adv = self.font.charmap().map(c).and_then(|g| self.metrics.advance_width(g)).unwrap_or(self.upem);
        adv * size / self.upem
    }

    pub(crate) fn width(&self, text: &str, size: f32) -> f32 {
        text.chars().map(|c| self.char_width(c, size)).sum()
    }

    /// Wraps `text` to `width`: Japanese breaks between any two characters; a run of Latin
    /// letters and digits breaks at its last space when there is one.
    pub(crate) fn wrap(&self, text: &str, width: f32, size: f32) -> Vec<String> {
        let mut lines = Vec::new();
        for para in text.split('\n') {
            let mut line = String::new();
            let mut w = 0.0;
            for c in para.chars() {
                let cw = self.char_width(c, size);
                if w + cw > width && !line.is_empty() {
                    let cut = if c.is_ascii_alphanumeric() { line.rfind(' ').filter(|&i| i > 0) } else { None };
                    match cut {
                        Some(i) => {
                            let rest = line[i + 1..].to_owned();
                            line.truncate(i);
                            lines.push(std::mem::take(&mut line));
                            w = self.width(&rest, size);
                            line = rest;
                        }
                        None => {
                            lines.push(std::mem::take(&mut line));
                            w = 0.0;
                        }
                    }
                }
                line.push(c);
                w += cw;
            }
            lines.push(line);
        }
        lines
    }
}

/// Epoch ms as a JST date-time.
pub(crate) fn jst(ms: i64) -> Option<time::OffsetDateTime> {
    let offset = time::UtcOffset::from_hms(9, 0, 0).ok()?;
    Some(time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()?.to_offset(offset))
}

fn jst_text(ms: i64) -> String {
    match jst(ms) {
        Some(t) => {
            format!("{:04}-{:02}-{:02} {:02}:{:02} JST", t.year(), t.month() as u8, t.day(), t.hour(), t.minute())
        }
        None => "不明".into(),
    }
}

/// A cell of a row: where, how wide, how large, what colour, what text.
struct Cell {
    x: f32,
    width: f32,
    size: f32,
    color: Color,
    text: String,
}

impl Cell {
    fn new(x: f32, width: f32, size: f32, color: Color, text: impl Into<String>) -> Cell {
        Cell { x, width, size, color, text: text.into() }
    }
}

struct Pager<'a> {
    m: &'a Measure,
    pages: Vec<Vec<Op>>,
    y: f32,
}

impl Pager<'_> {
    fn ops(&mut self) -> &mut Vec<Op> {
        if self.pages.is_empty() {
            self.pages.push(Vec::new());
        }
        let last = self.pages.len() - 1;
        &mut self.pages[last]
    }

    fn new_page(&mut self) {
        self.pages.push(Vec::new());
        self.y = TOP;
    }

    /// Starts a new page unless `h` more points fit on this one.
    fn ensure(&mut self, h: f32) {
        if self.y + h > BOTTOM && self.y > TOP {
            self.new_page();
        }
    }

    fn row(&mut self, cells: Vec<Cell>, rule: bool) {
        let wrapped: Vec<(Cell, Vec<String>)> = cells
            .into_iter()
            .map(|c| {
                let lines = self.m.wrap(&c.text, c.width, c.size);
                (c, lines)
            })
            .collect();
        let height =
            wrapped.iter().map(|(c, l)| l.len() as f32 * c.size * LEADING).fold(BODY * LEADING, f32::max) + 2.0;
        self.ensure(height);
        let top = self.y;
        for (c, lines) in wrapped {
            for (i, l) in lines.into_iter().enumerate() {
                if l.is_empty() {
                    continue;
                }
                let y = top + c.size + i as f32 * c.size * LEADING;
                self.ops().push(Op::Text { x: c.x, y, size: c.size, color: c.color, text: l });
            }
        }
        self.y = top + height;
        if rule {
            let y = self.y - 1.0;
            self.ops().push(Op::Line { x1: LEFT, y1: y, x2: RIGHT, y2: y, width: 0.4, color: LIGHT });
        }
    }

    /// A main text with the source (facility and date) on the right.
    fn item(&mut self, text: String, color: Color, source: Option<&Source>) {
        let src = source.map(source_text).unwrap_or_default();
        self.row(
            vec![
                Cell::new(LEFT + 4.0, SRC_X - LEFT - 12.0, BODY, color, text),
                Cell::new(SRC_X, RIGHT - SRC_X, SMALL, GRAY, src),
            ],
            true,
        );
    }

    fn heading(&mut self, title: &str, count: usize) {
        // A heading never ends a page: keep room for it and one row.
        self.ensure(18.0 + 2.0 * BODY * LEADING);
        self.y += 4.0;
        let y = self.y;
        self.ops().push(Op::Rect { x: LEFT, y, w: RIGHT - LEFT, h: 15.0, color: HEAD_BG });
        let label = if count > 0 { format!("{title}（{count}件）") } else { title.to_owned() };
        self.ops().push(Op::Text { x: LEFT + 5.0, y: y + 11.2, size: 10.0, color: WHITE, text: label });
        self.y += 18.0;
    }

    fn section<T>(&mut self, s: &Section<T>, count: usize, mut each: impl FnMut(&mut Self, &T)) {
        self.heading(s.title, count);
        if let Some(e) = s.empty_text {
            self.item(e.to_owned(), GRAY, None);
        }
        for it in &s.items {
            each(self, it);
        }
        if s.more > 0 {
            self.item(format!("ほか {} 件（画面で確認してください）", s.more), GRAY, None);
        }
    }
}

fn source_text(s: &Source) -> String {
    match &s.date {
        Some(d) => format!("{}\n{d}", s.facility_label()),
        None => s.facility_label().to_owned(),
    }
}

fn join(parts: &[Option<&str>]) -> String {
    parts.iter().flatten().filter(|p| !p.is_empty()).copied().collect::<Vec<_>>().join("　")
}

/// Lays the summary out into pages (header and footer included).
pub(crate) fn summary_pages(s: &EmergencySummary, meta: &PdfMeta, m: &Measure) -> Vec<Vec<Op>> {
    let mut p = Pager { m, pages: vec![Vec::new()], y: TOP };
    let id = &s.identity;

    // Identity details (the name line is in every page's header).
    let details = join(&[
        (!id.insurance.is_empty()).then(|| format!("保険 {}", id.insurance)).as_deref(),
        (!id.address.is_empty()).then(|| format!("住所 {}", id.address)).as_deref(),
        (!id.phone.is_empty()).then(|| format!("電話 {}", id.phone)).as_deref(),
    ]);
    if !details.is_empty() {
        p.row(vec![Cell::new(LEFT, RIGHT - LEFT, BODY, BLACK, details)], false);
    }
    if let Some(reason) = &s.emergency {
        let lines =
            m.wrap(&format!("緊急時アクセス（ブレークグラス）による閲覧　理由: {reason}"), RIGHT - LEFT - 10.0, 9.5);
        let h = lines.len() as f32 * 9.5 * LEADING + 6.0;
        p.ensure(h + 4.0);
        let y = p.y + 2.0;
        p.ops().push(Op::Rect { x: LEFT, y, w: RIGHT - LEFT, h, color: BANNER });
        for (i, l) in lines.into_iter().enumerate() {
            p.ops().push(Op::Text {
                x: LEFT + 5.0,
                y: y + 3.0 + 9.5 + i as f32 * 9.5 * LEADING,
                size: 9.5,
                color: WHITE,
                text: l,
            });
        }
        p.y = y + h + 2.0;
    }

    p.section(&s.allergies, s.allergies.items.len() + s.allergies.more, |p, a| {
        let text = join(&[
            Some(&format!("［{}］{}", a.category, a.substance)),
            a.criticality.as_ref().map(|c| format!("重篤度 {c}")).as_deref(),
            a.reaction.as_ref().map(|r| format!("症状 {r}")).as_deref(),
        ]);
        let color = if a.is_drug || a.criticality.as_deref() == Some("高") { RED } else { BLACK };
        p.item(text, color, Some(&a.source));
    });
    p.section(&s.infections, s.infections.items.iter().filter(|i| i.result.is_some()).count(), |p, i| {
        let result = i.result.as_deref().unwrap_or("記録なし");
        let text = match &i.test {
            Some(t) => format!("{}　{result}（{t}）", i.item),
            None => format!("{}　{result}", i.item),
        };
        let color = match i.positive {
            Some(true) => RED,
            _ if i.result.is_none() => GRAY,
            _ => BLACK,
        };
        p.item(text, color, i.source.as_ref());
    });
    p.section(&s.medications, s.medications.items.len() + s.medications.more, |p, med| {
        let text = join(&[
            Some(&format!("［{}］{}", med.kind, med.name)),
            med.dose.as_deref(),
            med.usage.as_deref(),
            med.route.as_deref(),
            med.days.as_deref(),
        ]);
        p.item(text, BLACK, Some(&med.source));
    });
    p.section(&s.diagnoses, s.diagnoses.items.len() + s.diagnoses.more, |p, d| {
        let text = join(&[
            Some(&format!("{}{}", d.name, if d.suspected { "（疑い）" } else { "" })),
            d.onset.as_ref().map(|o| format!("発症 {o}")).as_deref(),
        ]);
        p.item(text, BLACK, Some(&d.source));
    });
    // Labs as a table.
    p.heading(s.labs.title, s.labs.items.len() + s.labs.more);
    let cols = [LEFT + 4.0, 190.0, 268.0, 298.0, 318.0, SRC_X];
    if let Some(e) = s.labs.empty_text {
        p.item(e.to_owned(), GRAY, None);
    } else {
        p.row(
            vec![
                Cell::new(cols[0], cols[1] - cols[0] - 4.0, SMALL, GRAY, "項目"),
                Cell::new(cols[1], cols[2] - cols[1] - 4.0, SMALL, GRAY, "結果"),
                Cell::new(cols[2], cols[3] - cols[2], SMALL, GRAY, "判定"),
                Cell::new(cols[3], cols[4] - cols[3], SMALL, GRAY, "推移"),
                Cell::new(cols[4], cols[5] - cols[4] - 6.0, SMALL, GRAY, "前回"),
                Cell::new(cols[5], RIGHT - cols[5], SMALL, GRAY, "出典"),
            ],
            true,
        );
    }
    for l in &s.labs.items {
        let color = if l.abnormal { RED } else { BLACK };
        p.row(
            vec![
                Cell::new(cols[0], cols[1] - cols[0] - 4.0, BODY, BLACK, l.name.clone()),
                Cell::new(cols[1], cols[2] - cols[1] - 4.0, BODY, color, l.value.clone()),
                Cell::new(cols[2], cols[3] - cols[2], BODY, color, l.flag.clone().unwrap_or_default()),
                Cell::new(cols[3], cols[4] - cols[3], BODY, BLACK, l.trend.unwrap_or("")),
                Cell::new(cols[4], cols[5] - cols[4] - 6.0, SMALL, GRAY, l.previous.clone().unwrap_or_default()),
                Cell::new(cols[5], RIGHT - cols[5], SMALL, GRAY, source_text(&l.source)),
            ],
            true,
        );
    }
    p.section(&s.events, s.events.items.len() + s.events.more, |p, e| {
        p.item(format!("［{}］{}　{}", e.kind, e.what, e.period), BLACK, Some(&e.source));
    });
    p.section(&s.contacts, s.contacts.items.len() + s.contacts.more, |p, c| {
        let text = join(&[
            Some(&format!("{}（{}）", c.name, c.facility)),
            c.phone.as_ref().map(|t| format!("電話 {t}")).as_deref(),
            (!c.practitioners.is_empty()).then(|| format!("担当 {}", c.practitioners.join("、"))).as_deref(),
        ]);
        let src = match &c.last_date {
            Some(d) => format!("最終記録 {d}\n記録 {} 件", c.records),
            None => format!("記録 {} 件", c.records),
        };
        p.row(
            vec![
                Cell::new(LEFT + 4.0, SRC_X - LEFT - 12.0, BODY, BLACK, text),
                Cell::new(SRC_X, RIGHT - SRC_X, SMALL, GRAY, src),
            ],
            true,
        );
    });

    // Second pass: header and footer with the page count.
    let total = p.pages.len();
    let ident = format!("患者　{}", id.line());
    let footer = format!("作成 {}　作成者 {}（{}）", jst_text(meta.generated_at), meta.generated_by, meta.facility);
    let mut pages = p.pages;
    for (i, ops) in pages.iter_mut().enumerate() {
        let num = format!("ページ {} / {total}", i + 1);
        let nw = m.width(&num, 8.5);
        let mut head = vec![
            Op::Text { x: LEFT, y: 30.0, size: 13.0, color: HEAD_BG, text: "救急用サマリ".into() },
            Op::Text {
                x: LEFT + 90.0,
                y: 30.0,
                size: SMALL,
                color: GRAY,
                text: format!("Musubi　データ件数 {}", s.records_seen),
            },
            Op::Text { x: RIGHT - nw, y: 30.0, size: 8.5, color: GRAY, text: num.clone() },
        ];
        for (j, l) in m.wrap(&ident, RIGHT - LEFT, 10.5).into_iter().take(2).enumerate() {
            head.push(Op::Text { x: LEFT, y: 48.0 + j as f32 * 12.0, size: 10.5, color: BLACK, text: l });
        }
        head.push(Op::Line { x1: LEFT, y1: 66.0, x2: RIGHT, y2: 66.0, width: 1.0, color: HEAD_BG });
        let fy = A4.1 - 30.0;
        head.push(Op::Line { x1: LEFT, y1: fy - 10.0, x2: RIGHT, y2: fy - 10.0, width: 0.5, color: LIGHT });
        for (j, l) in m.wrap(&footer, RIGHT - LEFT - nw - 12.0, SMALL).into_iter().take(2).enumerate() {
            head.push(Op::Text { x: LEFT, y: fy + j as f32 * 9.0, size: SMALL, color: GRAY, text: l });
        }
        head.push(Op::Text { x: RIGHT - nw, y: fy, size: 8.5, color: GRAY, text: num });
        head.push(Op::Text {
            x: LEFT,
            y: fy + 18.0,
            size: 6.5,
            color: GRAY,
            text: "閲覧権限の範囲の記録から自動作成。各項目の出典医療機関・日付を確認してください。".into(),
        });
        head.append(ops);
        *ops = head;
    }
    pages
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps_japanese_anywhere_and_latin_at_spaces() {
        let m = Measure::new(crate::FONT).unwrap();
        let w = m.width("あ", 10.0);
        assert!((w - 10.0).abs() < 0.01, "full-width is 1 em: {w}");
        let lines = m.wrap("あいうえおかきくけこ", 10.0 * 4.5, 10.0);
        assert_eq!(lines, ["あいうえ", "おかきく", "けこ"]);
        let lines = m.wrap("HbA1c value high", m.width("HbA1c valu", 10.0), 10.0);
        assert_eq!(lines[0], "HbA1c");
        assert_eq!(lines[1..].join(" "), "value high");
        assert_eq!(m.wrap("一行目\n二行目", 500.0, 10.0), ["一行目", "二行目"]);
    }
}
