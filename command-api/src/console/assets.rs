//! The console's static files, compiled into the binary: the vendored htmx (0BSD, its
//! licence beside it) and the console's own script and stylesheet. No CDN: the console
//! makes no request outside its server.

use std::sync::LazyLock;

use axum::{
    extract::Path,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use sha2::{Digest, Sha256};

/// A static file and the URL pages load it from: the URL changes whenever the content
/// does (a version in the name, or a digest in the query), so it can be cached for good.
struct Asset {
    file: &'static str,
    content_type: &'static str,
    body: &'static str,
}

const HTMX: Asset = Asset {
    file: "htmx-2.0.11.min.js",
    content_type: "text/javascript; charset=utf-8",
    body: include_str!("static/htmx-2.0.11.min.js"),
};
const SCRIPT: Asset = Asset {
    file: "console.js",
    content_type: "text/javascript; charset=utf-8",
    body: include_str!("static/console.js"),
};
const STYLE: Asset = Asset {
    file: "console.css",
    content_type: "text/css; charset=utf-8",
    body: include_str!("static/console.css"),
};
const LICENCE: Asset = Asset {
    file: "LICENSE-htmx",
    content_type: "text/plain; charset=utf-8",
    body: include_str!("static/LICENSE-htmx"),
};

const ALL: [&Asset; 4] = [&HTMX, &SCRIPT, &STYLE, &LICENCE];

impl Asset {
    fn url(&self) -> String {
        let digest = Sha256::digest(self.body.as_bytes());
        format!(
            "/console/static/{}?v={}",
            self.file,
            &hex::encode(digest)[..12]
        )
    }
}

static URLS: LazyLock<[String; 3]> = LazyLock::new(|| [HTMX.url(), SCRIPT.url(), STYLE.url()]);

/// Where pages load htmx, the console script and the stylesheet from.
pub(super) fn htmx_url() -> &'static str {
    &URLS[0]
}
pub(super) fn script_url() -> &'static str {
    &URLS[1]
}
pub(super) fn style_url() -> &'static str {
    &URLS[2]
}

pub(super) async fn serve(Path(file): Path<String>) -> Response {
    let Some(asset) = ALL.iter().find(|a| a.file == file) else {
        return (StatusCode::NOT_FOUND, "no such console file").into_response();
    };
    let mut r = asset.body.into_response();
    let headers = r.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    r
}

/// Browsers ask for it whatever the page declares; an empty icon keeps their network log
/// free of failures.
pub(super) async fn favicon() -> Response {
    let mut r = StatusCode::NO_CONTENT.into_response();
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=86400"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asset_urls_name_the_htmx_version_and_carry_a_digest_of_the_content() {
        assert!(htmx_url().starts_with("/console/static/htmx-2.0.11.min.js?v="));
        let digest = hex::encode(Sha256::digest(STYLE.body.as_bytes()));
        assert_eq!(
            style_url(),
            format!("/console/static/console.css?v={}", &digest[..12])
        );
        assert_ne!(script_url(), style_url());
        assert!(HTMX.body.contains("htmx"), "the vendored file is htmx");
        assert!(LICENCE.body.contains("Zero-Clause BSD"));
    }
}
