//! `/png` and `/svg`: a status badge, `build | RESULT`, for a builder's build:
//! `number=N`, else the last build of `revision=` (the full hash), else its last finished
//! build; `size=small|normal|large`. The PNG is drawn here (a 5×7 pixel font, scaled),
//! so no image library or font file is needed.

use std::io::Write;

use axum::extract::{RawQuery, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use flate2::write::ZlibEncoder;
use flate2::Compression;

use super::{argument, arguments, build_ref, builder_ref, query, render, PageError, Pages};
use crate::data::builds::{self, BuildsOf};
use crate::model::BuildResult;

pub async fn png(
    State(pages): State<Pages>,
    RawQuery(raw): RawQuery,
) -> Result<Response, PageError> {
    let (status, scale) = badge_status(&pages, &raw).await?;
    Ok(badge_response(
        "image/png",
        encode_png(&draw(status, scale)),
    ))
}

pub async fn svg(
    State(pages): State<Pages>,
    RawQuery(raw): RawQuery,
) -> Result<Response, PageError> {
    let (status, scale) = badge_status(&pages, &raw).await?;
    Ok(badge_response(
        "image/svg+xml",
        svg_badge(status, scale).into_bytes(),
    ))
}

fn badge_response(content_type: &'static str, body: Vec<u8>) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// The word on the badge (a result's name, `running`, or `unknown` without a build) and
/// the scale its size asks for.
async fn badge_status(
    pages: &Pages,
    raw: &Option<String>,
) -> Result<(&'static str, usize), PageError> {
    let args = arguments(raw);
    let scale = match argument(&args, "size") {
        Some("small") => 1,
        None | Some("" | "normal") => 2,
        Some("large") => 3,
        Some(other) => {
            return Err(PageError::bad_request(format!(
                "size={other}: expected small, normal or large"
            )))
        }
    };
    let name =
        argument(&args, "builder").ok_or_else(|| PageError::bad_request("builder= is required"))?;
    let (builderid, _) = builder_ref(pages, name).await?;
    let db = &pages.context.db;
    let build = if let Some(number) = argument(&args, "number") {
        match builds::build_id(db, &build_ref(name, number)?).await? {
            Some(id) => builds::build(db, id, &query(&builds::BUILD, &[])).await?,
            None => None,
        }
    } else {
        let mut pairs = vec![("order", "-number".to_string()), ("limit", "1".into())];
        match argument(&args, "revision") {
            Some(revision) => {
                let ids = builds::builds_of_revision(db, builderid, revision).await?;
                let Some(last) = ids.last() else {
                    return Ok(("unknown", scale));
                };
                pairs.push(("buildid", last.to_string()));
            }
            None => pairs.push(("complete", "true".into())),
        }
        let of = BuildsOf {
            builderid: Some(builderid),
            ..Default::default()
        };
        builds::builds(db, &of, &query(&builds::BUILD, &pairs))
            .await?
            .items
            .into_iter()
            .next()
    };
    let Some(build) = build else {
        return Ok(("unknown", scale));
    };
    if !build["complete"].as_bool().unwrap_or(false) {
        return Ok(("running", scale));
    }
    Ok((
        build["results"]
            .as_i64()
            .and_then(BuildResult::from_code)
            .map_or("unknown", BuildResult::name),
        scale,
    ))
}

/// The badge's right-hand colour for a status word.
fn colour(status: &str) -> [u8; 3] {
    match status {
        "success" => [0x44, 0xcc, 0x11],
        "warnings" => [0xff, 0xaa, 0x33],
        "failure" => [0xe0, 0x5d, 0x44],
        "exception" => [0xcc, 0x66, 0xcc],
        "retry" => [0xaa, 0x66, 0xcc],
        "running" => [0xdf, 0xb3, 0x17],
        _ => [0x9f, 0x9f, 0x9f],
    }
}

const LABEL: &str = "build";
const LABEL_COLOUR: [u8; 3] = [0x55, 0x55, 0x55];

fn svg_badge(status: &str, scale: usize) -> String {
    let [r, g, b] = colour(status);
    let text_width = |text: &str| 7 * text.len() + 10;
    let (left, right) = (text_width(LABEL), text_width(status));
    let width = left + right;
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{sw}\" height=\"{sh}\" viewBox=\"0 0 {width} 20\" \
         role=\"img\" aria-label=\"{LABEL}: {status}\"><title>{LABEL}: {status}</title>\
         <rect width=\"{left}\" height=\"20\" fill=\"#555\"/>\
         <rect x=\"{left}\" width=\"{right}\" height=\"20\" fill=\"#{r:02x}{g:02x}{b:02x}\"/>\
         <g fill=\"#fff\" font-family=\"DejaVu Sans,Verdana,sans-serif\" font-size=\"11\" text-anchor=\"middle\">\
         <text x=\"{lx}\" y=\"14\">{LABEL}</text><text x=\"{rx}\" y=\"14\">{text}</text></g></svg>\n",
        sw = width * scale / 2,
        sh = 20 * scale / 2,
        lx = left / 2,
        rx = left + right / 2,
        text = render::escape(status),
    )
}

/// An RGB image.
struct Image {
    width: usize,
    height: usize,
    pixels: Vec<u8>,
}

impl Image {
    fn fill(&mut self, x0: usize, x1: usize, y0: usize, y1: usize, rgb: [u8; 3]) {
        for y in y0..y1.min(self.height) {
            for x in x0..x1.min(self.width) {
                let at = (y * self.width + x) * 3;
                self.pixels[at..at + 3].copy_from_slice(&rgb);
            }
        }
    }
}

/// Glyph cell: 5 pixels wide and a column of space; 7 rows; a margin around the text.
const GLYPH_ADVANCE: usize = 6;
const GLYPH_ROWS: usize = 7;
const MARGIN: usize = 4;

fn draw(status: &str, scale: usize) -> Image {
    let text_width = |text: &str| 2 * MARGIN + GLYPH_ADVANCE * text.len() - 1;
    let (left, right) = (text_width(LABEL), text_width(status));
    let height = GLYPH_ROWS + 2 * MARGIN;
    let mut image = Image {
        width: (left + right) * scale,
        height: height * scale,
        pixels: vec![0; (left + right) * scale * height * scale * 3],
    };
    image.fill(0, left * scale, 0, image.height, LABEL_COLOUR);
    image.fill(left * scale, image.width, 0, image.height, colour(status));
    for (text, x) in [(LABEL, MARGIN), (status, left + MARGIN)] {
        for (n, c) in text.chars().enumerate() {
            let Some(rows) = glyph(c) else { continue };
            for (row, bits) in rows.iter().enumerate() {
                for (column, bit) in bits.bytes().enumerate() {
                    if bit == b'#' {
                        let px = (x + n * GLYPH_ADVANCE + column) * scale;
                        let py = (MARGIN + row) * scale;
                        image.fill(px, px + scale, py, py + scale, [0xff; 3]);
                    }
                }
            }
        }
    }
    image
}

/// An 8-bit RGB PNG: signature, IHDR, one zlib IDAT (no row filter), IEND.
fn encode_png(image: &Image) -> Vec<u8> {
    let mut raw = Vec::with_capacity(image.height * (image.width * 3 + 1));
    for row in image.pixels.chunks(image.width * 3) {
        raw.push(0);
        raw.extend_from_slice(row);
    }
    let mut zlib = ZlibEncoder::new(Vec::new(), Compression::default());
    zlib.write_all(&raw).expect("writing to memory");
    let compressed = zlib.finish().expect("writing to memory");
    let mut header = Vec::with_capacity(13);
    header.extend_from_slice(&(image.width as u32).to_be_bytes());
    header.extend_from_slice(&(image.height as u32).to_be_bytes());
    header.extend_from_slice(&[8, 2, 0, 0, 0]);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    for (kind, data) in [
        (b"IHDR", &header[..]),
        (b"IDAT", &compressed[..]),
        (b"IEND", &[][..]),
    ] {
        png.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let start = png.len();
        png.extend_from_slice(kind);
        png.extend_from_slice(data);
        let crc = crc32fast::hash(&png[start..]);
        png.extend_from_slice(&crc.to_be_bytes());
    }
    png
}

/// The rows of a letter the badges write, `#` for a lit pixel.
fn glyph(c: char) -> Option<[&'static str; GLYPH_ROWS]> {
    Some(match c {
        'a' => [
            ".....", ".....", ".###.", "....#", ".####", "#...#", ".####",
        ],
        'b' => [
            "#....", "#....", "#.##.", "##..#", "#...#", "#...#", "####.",
        ],
        'c' => [
            ".....", ".....", ".###.", "#....", "#....", "#...#", ".###.",
        ],
        'd' => [
            "....#", "....#", ".##.#", "#..##", "#...#", "#...#", ".####",
        ],
        'e' => [
            ".....", ".....", ".###.", "#...#", "#####", "#....", ".###.",
        ],
        'f' => [
            "..##.", ".#..#", ".#...", "###..", ".#...", ".#...", ".#...",
        ],
        'g' => [
            ".....", ".####", "#...#", "#...#", ".####", "....#", ".###.",
        ],
        'i' => [
            "..#..", ".....", ".##..", "..#..", "..#..", "..#..", ".###.",
        ],
        'k' => [
            "#....", "#....", "#..#.", "#.#..", "##...", "#.#..", "#..#.",
        ],
        'l' => [
            ".##..", "..#..", "..#..", "..#..", "..#..", "..#..", ".###.",
        ],
        'n' => [
            ".....", ".....", "#.##.", "##..#", "#...#", "#...#", "#...#",
        ],
        'o' => [
            ".....", ".....", ".###.", "#...#", "#...#", "#...#", ".###.",
        ],
        'p' => [
            ".....", "####.", "#...#", "#...#", "####.", "#....", "#....",
        ],
        'r' => [
            ".....", ".....", "#.##.", "##..#", "#....", "#....", "#....",
        ],
        's' => [
            ".....", ".....", ".####", "#....", ".###.", "....#", "####.",
        ],
        't' => [
            ".#...", ".#...", "###..", ".#...", ".#...", ".#..#", "..##.",
        ],
        'u' => [
            ".....", ".....", "#...#", "#...#", "#...#", "#..##", ".##.#",
        ],
        'w' => [
            ".....", ".....", "#...#", "#...#", "#.#.#", "#.#.#", ".#.#.",
        ],
        'x' => [
            ".....", ".....", "#...#", ".#.#.", "..#..", ".#.#.", "#...#",
        ],
        'y' => [
            ".....", "#...#", "#...#", "#...#", ".####", "....#", ".###.",
        ],
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_word_a_badge_writes_has_its_letters() {
        for word in BuildResult::ALL
            .iter()
            .map(|r| r.name())
            .chain([LABEL, "running", "unknown"])
        {
            assert!(word.chars().all(|c| glyph(c).is_some()), "{word}");
        }
    }

    #[test]
    fn a_png_badge_has_the_size_it_was_asked_for_and_valid_chunks() {
        let small = draw("success", 1);
        let large = draw("success", 3);
        assert_eq!(
            (large.width, large.height),
            (small.width * 3, small.height * 3)
        );
        let png = encode_png(&small);
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        assert_eq!(&png[12..16], b"IHDR");
        assert_eq!(
            u32::from_be_bytes(png[16..20].try_into().unwrap()) as usize,
            small.width
        );
        let ihdr_crc = crc32fast::hash(&png[12..29]);
        assert_eq!(&png[29..33], &ihdr_crc.to_be_bytes());
        assert!(png.ends_with(&[0, 0, 0, 0, b'I', b'E', b'N', b'D', 0xae, 0x42, 0x60, 0x82]));
    }
}
