//! PDF rendering for Musubi: the emergency summary (救急用サマリ) as an A4 document that an
//! emergency doctor reads at a glance and can print.
//!
//! [`render_summary`] takes the [`EmergencySummary`] that `musubi-record` built from what the
//! gate let through (this crate reads no data itself and does not depend on the service) and
//! who asked for it ([`PdfMeta`]), and returns the PDF bytes:
//! A4 portrait, the IPAexGothic font embedded as a subset (IPA Font License v1.0, which allows
//! embedding; the font file and its licence are in `fonts/`), the patient's identity and the
//! page number (`1 / 2`) on every page, the generation time and the person who generated it in
//! every footer, one heading per section, and each item's source facility and date beside it.
//!
//! ```no_run
//! # fn demo(summary: &musubi_record::summary::EmergencySummary) -> Result<(), musubi_pdf::PdfError> {
//! let pdf = musubi_pdf::render_summary(summary, &musubi_pdf::PdfMeta {
//!     generated_at: 1_790_000_000_000,
//!     generated_by: "山田 太郎（医師）".into(),
//!     facility: "東京結び病院".into(),
//! })?;
//! std::fs::write("summary.pdf", pdf).ok();
//! # Ok(()) }
//! ```
//!
//! The layout is done here in two passes (the items are laid out into pages first, so that
//! every page can say how many pages there are), with text measured from the font's own
//! advance widths; krilla (typst's PDF layer) shapes the text, subsets the font and writes the
//! file.

#![deny(missing_docs)]

mod layout;

use std::sync::OnceLock;

use krilla::Document;
use krilla::color::rgb;
use krilla::geom::{PathBuilder, Point, Rect};
use krilla::metadata::{DateTime, Metadata};
use krilla::num::NormalizedF32;
use krilla::page::PageSettings;
use krilla::paint::{Fill, Stroke};
use krilla::text::{Font, TextDirection};
use musubi_record::summary::EmergencySummary;

use layout::{Color, Op};

/// The embedded font: IPAexGothic (IPAexゴシック), shipped verbatim from Debian's
/// `fonts-ipaexfont-gothic` under the IPA Font License v1.0 (`fonts/ipaexg-LICENSE.txt`).
pub static FONT: &[u8] = include_bytes!("../fonts/ipaexg.ttf");

/// A4 in PostScript points.
pub const A4: (f32, f32) = (595.28, 841.89);

/// Who generated the document, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PdfMeta {
    /// When (epoch milliseconds); printed in JST.
    pub generated_at: i64,
    /// Who (the user's name and profession as people read it).
    pub generated_by: String,
    /// The facility they act for.
    pub facility: String,
}

/// What can go wrong while rendering.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PdfError {
    /// The embedded font could not be read (a build problem, not an input problem).
    #[error("the embedded font could not be loaded")]
    Font,
    /// The PDF writer refused the document.
    #[error("the PDF could not be written: {0}")]
    Write(String),
}

fn font() -> Result<Font, PdfError> {
    static F: OnceLock<Option<Font>> = OnceLock::new();
    F.get_or_init(|| Font::new(FONT.into(), 0)).clone().ok_or(PdfError::Font)
}

/// Renders the emergency summary as an A4 PDF.
pub fn render_summary(summary: &EmergencySummary, meta: &PdfMeta) -> Result<Vec<u8>, PdfError> {
    let font = font()?;
    let measure = layout::Measure::new(FONT).ok_or(PdfError::Font)?;
    let pages = layout::summary_pages(summary, meta, &measure);
    let mut doc = Document::new();
    let title = format!("救急用サマリ {}", summary.identity.name);
    let mut md = Metadata::new()
        .title(title)
        .creator("Musubi".into())
        .producer("Musubi (krilla)".into())
        .language("ja".into())
        .authors(vec![meta.generated_by.clone()]);
    if let Some(dt) = pdf_datetime(meta.generated_at) {
        md = md.creation_date(dt);
    }
    doc.set_metadata(md);
    let settings = PageSettings::from_wh(A4.0, A4.1).ok_or_else(|| PdfError::Write("page size".into()))?;
    for ops in &pages {
        let mut page = doc.start_page_with(settings.clone());
        let mut surface = page.surface();
        for op in ops {
            match op {
                Op::Text { x, y, size, color, text } => {
                    surface.set_fill(Some(fill(*color)));
                    surface.draw_text(Point::from_xy(*x, *y), font.clone(), *size, text, false, TextDirection::Auto);
                }
                Op::Rect { x, y, w, h, color } => {
                    let mut pb = PathBuilder::new();
                    if let Some(r) = Rect::from_xywh(*x, *y, *w, *h) {
                        pb.push_rect(r);
                    }
                    if let Some(path) = pb.finish() {
                        surface.set_stroke(None);
                        surface.set_fill(Some(fill(*color)));
                        surface.draw_path(&path);
                    }
                }
                Op::Line { x1, y1, x2, y2, width, color } => {
                    let mut pb = PathBuilder::new();
                    pb.move_to(*x1, *y1);
                    pb.line_to(*x2, *y2);
                    if let Some(path) = pb.finish() {
                        surface.set_fill(None);
                        surface.set_stroke(Some(Stroke {
                            paint: rgb::Color::new(color.0, color.1, color.2).into(),
                            width: *width,
                            ..Default::default()
                        }));
                        surface.draw_path(&path);
                        surface.set_stroke(None);
                    }
                }
            }
        }
        surface.finish();
        page.finish();
    }
    doc.finish().map_err(|e| PdfError::Write(format!("{e:?}")))
}

fn fill(c: Color) -> Fill {
    Fill { paint: rgb::Color::new(c.0, c.1, c.2).into(), opacity: NormalizedF32::ONE, rule: Default::default() }
}

fn pdf_datetime(ms: i64) -> Option<DateTime> {
    let t = layout::jst(ms)?;
    Some(
        DateTime::new(u16::try_from(t.year()).ok()?)
            .month(t.month() as u8)
            .day(t.day())
            .hour(t.hour())
            .minute(t.minute())
            .utc_offset_hour(9),
    )
}
