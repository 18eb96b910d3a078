//! Rewriter conformance documents: HTML whose parsing context decides what may be rewritten.
//! Written to tests/data/conformance/ (`IMGRELAY_REGENERATE=1 cargo test --test
//! rewrite_conformance` rewrites them) so they can be read and tried in a browser.

/// A wrapped image URL as the posts carry them.
pub const WRAPPED: &str =
    "https://cors.zfour.workers.dev/?http://static.1sapp.com/qupost/img/2022/03/25/f226a1.jpeg";

/// One document and what its rewritten form must show.
pub struct Doc {
    pub name: &'static str,
    pub html: String,
    /// Proxied URLs the output must hold: one for each `<img>` a browser would create.
    pub proxied: usize,
    /// Substrings that must come out byte for byte: raw text a browser never parses as markup.
    pub kept: Vec<String>,
    /// When not empty, the upstream URLs the proxied ones must point at, in order.
    pub sources: Vec<&'static str>,
    /// A post's front matter: each image key with the upstreams its values must be proxied
    /// to, in order. Every other key must load as it did before.
    pub front_matter: Vec<(&'static str, Vec<&'static str>)>,
    /// Stored as UTF-16 (`Some(big_endian)`, with a BOM) instead of UTF-8.
    pub utf16: Option<bool>,
}

impl Doc {
    /// The document's bytes as stored and rewritten.
    pub fn bytes(&self) -> Vec<u8> {
        match self.utf16 {
            None => self.html.clone().into_bytes(),
            Some(big_endian) => utf16_bytes(&format!("\u{feff}{}", self.html), big_endian),
        }
    }
}

/// UTF-16 bytes (no BOM) as text; `None` when they are not whole, valid UTF-16.
pub fn utf16_text(bytes: &[u8], big_endian: bool) -> Option<String> {
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    let units: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|p| {
            let pair = [p[0], p[1]];
            if big_endian {
                u16::from_be_bytes(pair)
            } else {
                u16::from_le_bytes(pair)
            }
        })
        .collect();
    String::from_utf16(&units).ok()
}

pub fn utf16_bytes(text: &str, big_endian: bool) -> Vec<u8> {
    text.encode_utf16()
        .flat_map(|u| {
            if big_endian {
                u.to_be_bytes()
            } else {
                u.to_le_bytes()
            }
        })
        .collect()
}

/// Raw-text and RCDATA elements, each holding a wrapped `<img>` as text.
fn raw_text_payload() -> (String, Vec<String>) {
    let img = format!("<img src=\"{WRAPPED}\">");
    let parts = vec![
        format!("<script>var t='{img}';</script>"),
        format!("<style>/* {img} */</style>"),
        format!("<textarea>{img}</textarea>"),
        format!("<title>{img}</title>"),
        format!("<xmp>{img}</xmp>"),
        format!("<iframe>{img}</iframe>"),
        format!("<noembed>{img}</noembed>"),
        format!("<noframes>{img}</noframes>"),
        format!("<noscript>{img}</noscript>"),
    ];
    (parts.concat(), parts)
}

/// After `trigger`, the parser is in HTML content again: the payload's elements are raw text,
/// and an `<img>` after them is a real image.
fn after(name: &'static str, trigger: &str) -> Doc {
    let (payload, kept) = raw_text_payload();
    Doc {
        name,
        html: format!(
            "<!doctype html><html><body>\n{trigger}{payload}<img src=\"{WRAPPED}\">\n</body></html>\n"
        ),
        proxied: 1,
        kept,
        sources: vec![],
        front_matter: vec![],
        utf16: None,
    }
}

pub fn documents() -> Vec<Doc> {
    let img = format!("<img src=\"{WRAPPED}\">");
    vec![
        after(
            "foreign-title-in-foreignobject.html",
            "<svg><foreignObject><title>t</title>",
        ),
        after("foreign-desc-in-desc.html", "<svg><desc><desc>x</desc>"),
        after("foreign-mi-in-mi.html", "<math><mi><mi>t</mi>"),
        after("foreign-div-in-svg-title.html", "<svg><title><div></title>"),
        after("foreign-unclosed-svg-in-div.html", "<div><svg></div>"),
        after("foreign-self-closing-svg.html", "<p><svg/>"),
        after(
            "foreign-svg-closed-by-p-end-tag.html",
            "<svg><g><circle r=\"1\"/></p>",
        ),
        // The inverse: properly closed foreign content leaves HTML as it was.
        Doc {
            name: "foreign-closed-then-img.html",
            html: format!(
                "<!doctype html><p><svg viewBox=\"0 0 1 1\"><title>icon</title><circle r=\"1\"/>\
                 </svg>{img}</p><math><mi>x</mi></math>{img}\
                 <svg><foreignObject><p>{img}</p></foreignObject></svg>{img}\n"
            ),
            proxied: 4,
            kept: vec![],
            sources: vec![],
            front_matter: vec![],
            utf16: None,
        },
        // Inside SVG, CDATA is text: nothing in it is an element.
        Doc {
            name: "foreign-cdata-in-svg.html",
            html: format!(
                "<svg><script><![CDATA[ if (a > b) {{ t = '{img}'; }} ]]></script></svg>{img}\n"
            ),
            proxied: 1,
            kept: vec![format!("<![CDATA[ if (a > b) {{ t = '{img}'; }} ]]>")],
            sources: vec![],
            front_matter: vec![],
            utf16: None,
        },
        wrapper_forms(),
        hexo_theme(),
        front_matter_blocks_and_flows(),
        front_matter_escapes(),
        utf16_page("utf16le-page.html", false),
        utf16_page("utf16be-page.html", true),
    ]
}

/// Upstream URLs of the Hexo-theme document, in the order of its `<img>` tags.
pub const THEME_UPSTREAMS: [&str; 4] = [
    "http://static.1sapp.com/theme/plain.jpeg",
    "http://static.1sapp.com/theme/lazysizes.jpeg",
    "http://static.1sapp.com/theme/original.jpeg",
    "http://static.1sapp.com/theme/density.jpeg",
];

/// Markup themes and lazy loaders write: a plain hinted image (what Hexo's `open_graph()` picks
/// up), lazysizes with a data: placeholder, a `data-original` loader with a local placeholder
/// GIF, and density descriptors.
fn hexo_theme() -> Doc {
    let w = |u: &str| format!("https://cors.zfour.workers.dev/?{u}");
    let [plain, lazy, original, density] = THEME_UPSTREAMS.map(w);
    let html = format!(
        "<!doctype html><body><article>\n\
         <img src=\"{plain}\" data-size=\"640,422\" alt=\"plain\">\n\
         <img class=\"lazyload\" src=\"data:image/gif;base64,R0lGODlhAQABAAAAACw=\" data-src=\"{lazy}\" data-size=\"1280,720\">\n\
         <img src=\"/images/loading.gif\" data-original=\"{original}\" data-size=\"800,600\">\n\
         <img src=\"{density}\" srcset=\"{density} 1x, {density} 2x, {density} 3x\" data-size=\"320,200\">\n\
         </article></body>\n"
    );
    Doc {
        name: "hexo-theme.html",
        html,
        // src + generated 320w, 640w; data-src + 320…1280w; data-original + 320, 640, 800w;
        // src + its three density candidates.
        proxied: 3 + 5 + 4 + 4,
        kept: vec!["src=\"/images/loading.gif\"".into()],
        sources: vec![],
        front_matter: vec![],
        utf16: None,
    }
}

/// Every wrapper form: corsproxy.io's documented `?url=`, its bare form decoded once, nested
/// wrappers, and an unusable inner URL (kept as written, with a reason in the report).
fn wrapper_forms() -> Doc {
    let imgs = [
        "https://corsproxy.io/?url=https%3A%2F%2Fstatic.1sapp.com%2Fa.jpeg%3Fx%3D1",
        "https://corsproxy.io/?http://static.1sapp.com/b.jpeg%3Fx%3D1%26y%3D2",
        "https://cors-anywhere.herokuapp.com/https://cors.zfour.workers.dev/?http://static.1sapp.com/c.jpeg",
        "https://api.allorigins.win/raw?url=https%3A%2F%2Fcorsproxy.io%2F%3Furl%3Dhttp%253A%252F%252Fstatic.1sapp.com%252Fd.jpeg",
        "https://cors.zfour.workers.dev/?images/e.jpeg",
    ];
    let body: String = imgs
        .iter()
        .map(|u| format!("<img src=\"{u}\">\n"))
        .collect();
    Doc {
        name: "wrapper-forms.html",
        html: format!("<!doctype html><body>\n{body}</body>\n"),
        proxied: 4,
        kept: vec![format!("<img src=\"{}\"", imgs[4])],
        sources: vec![
            "https://static.1sapp.com/a.jpeg?x=1",
            "http://static.1sapp.com/b.jpeg?x=1&y=2",
            "http://static.1sapp.com/c.jpeg",
            "http://static.1sapp.com/d.jpeg",
        ],
        front_matter: vec![],
        utf16: None,
    }
}

const FM: &str = "https://cors.zfour.workers.dev/?http://static.1sapp.com/fm";

/// Block scalars, a flow sequence over two lines, and wrapped URLs where no image key is: in
/// the text of another key and in a block scalar whose text looks like a key.
fn front_matter_blocks_and_flows() -> Doc {
    let text = format!(
        "---\n\
         title: 块标量与流式序列\n\
         excerpt: '原图：{FM}/excerpt.jpeg 仅供参考'\n\
         cover: >-\n  {FM}/cover.jpeg\n\
         thumbnail: |-\n  {FM}/thumb.jpeg\n\
         photos: ['{FM}/p1.jpeg', \"{FM}/p2.jpeg\",\n  '{FM}/p3.jpeg']\n\
         tags: [hexo, \"a, b\"]\n\
         summary: |\n  cover: {FM}/not-a-key.jpeg\n\
         ---\n\
         <p>正文 <img src=\"{FM}/body.jpeg\"></p>\n"
    );
    Doc {
        name: "front-matter-blocks-and-flows.md",
        html: text,
        proxied: 1,
        kept: vec![
            format!("excerpt: '原图：{FM}/excerpt.jpeg 仅供参考'\n"),
            format!("summary: |\n  cover: {FM}/not-a-key.jpeg\n"),
            "cover: >-\n  /".into(),
            "thumbnail: |-\n  /".into(),
            "photos: ['/".into(),
            "\",\n  '/".into(),
        ],
        sources: vec!["http://static.1sapp.com/fm/body.jpeg"],
        front_matter: vec![
            ("cover", vec!["http://static.1sapp.com/fm/cover.jpeg"]),
            ("thumbnail", vec!["http://static.1sapp.com/fm/thumb.jpeg"]),
            (
                "photos",
                vec![
                    "http://static.1sapp.com/fm/p1.jpeg",
                    "http://static.1sapp.com/fm/p2.jpeg",
                    "http://static.1sapp.com/fm/p3.jpeg",
                ],
            ),
        ],
        utf16: None,
    }
}

/// A UTF-16 page (Windows editors save them), whose `<meta charset>` must not switch it, with
/// an image in an attribute, one in a `style` URL, and one in a script that stays as it is.
fn utf16_page(name: &'static str, big_endian: bool) -> Doc {
    let u = |p: &str| format!("https://cors.zfour.workers.dev/?http://static.1sapp.com/u16/{p}");
    let (a, bg) = (u("配图.jpeg"), u("bg.jpeg"));
    let script = format!("<script>var t='<img src=\"{WRAPPED}\">';</script>");
    Doc {
        name,
        html: format!(
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>UTF-16 页面</title></head><body>\r\n\
             <p>正文 <img src=\"{a}\" data-size=\"640,422\" alt=\"配图\"></p>\r\n\
             <div style=\"background-image: url('{bg}')\">文字 😀</div>\r\n{script}\r\n</body></html>\r\n"
        ),
        // src and its 320w, 640w candidates; the style URL.
        proxied: 4,
        kept: vec![script, "alt=\"配图\"".into(), "文字 😀".into()],
        sources: vec![
            "http://static.1sapp.com/u16/%E9%85%8D%E5%9B%BE.jpeg",
            "http://static.1sapp.com/u16/%E9%85%8D%E5%9B%BE.jpeg",
            "http://static.1sapp.com/u16/%E9%85%8D%E5%9B%BE.jpeg",
            "http://static.1sapp.com/u16/bg.jpeg",
        ],
        front_matter: vec![],
        utf16: Some(big_endian),
    }
}

/// Double-quoted escapes as JSON encoders write them, `''` inside a single-quoted URL, a plain
/// URL with a comment, and a block list mixing styles, with CRLF line ends.
fn front_matter_escapes() -> Doc {
    let escaped = FM.replace('/', "\\/");
    let lines = [
        "---".to_string(),
        "title: \"转义 \\\"quoted\\\"\"".to_string(),
        format!("headimg: \"{escaped}\\/\\u914d\\u56fe.jpeg\""),
        format!("thumbnail: '{FM}/it''s.jpeg'"),
        format!("cover: {FM}/plain.jpeg # a comment stays"),
        "photos:".to_string(),
        format!("  - \"{FM}/b1.jpeg\""),
        format!("  - {FM}/b2.jpeg"),
        format!("  - >-\n    {FM}/b3.jpeg"),
        "---".to_string(),
        "body".to_string(),
    ];
    Doc {
        name: "front-matter-escapes.md",
        html: lines.join("\r\n").replace("-\n    ", "-\r\n    ") + "\r\n",
        proxied: 0,
        kept: vec![
            "headimg: \"\\/".into(),
            " # a comment stays\r\n".into(),
            "  - >-\r\n    /".into(),
        ],
        sources: vec![],
        front_matter: vec![
            (
                "headimg",
                vec!["http://static.1sapp.com/fm/%E9%85%8D%E5%9B%BE.jpeg"],
            ),
            ("thumbnail", vec!["http://static.1sapp.com/fm/it's.jpeg"]),
            ("cover", vec!["http://static.1sapp.com/fm/plain.jpeg"]),
            (
                "photos",
                vec![
                    "http://static.1sapp.com/fm/b1.jpeg",
                    "http://static.1sapp.com/fm/b2.jpeg",
                    "http://static.1sapp.com/fm/b3.jpeg",
                ],
            ),
        ],
        utf16: None,
    }
}
