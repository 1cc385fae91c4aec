//! The internal search UI at `/ui/`: a few static files compiled into the binary.
//!
//! The page asks for a viewer token and calls the JSON API with it, so serving the
//! files needs no auth. Nothing is fetched from anywhere but this server: the
//! Content-Security-Policy allows only `'self'`, and `form-action 'none'` makes sure the
//! token form can never be submitted into a URL, even if the script failed to load.
//! Assets are served with `Cache-Control: no-cache` and a content-hash ETag: a browser
//! revalidates each load (a cheap 304) and so never runs an old script against a newer
//! server, which fixed `max-age` on unversioned file names would allow.

use std::sync::LazyLock;

use actix_web::http::header::{self, HeaderValue};
use actix_web::{web, HttpRequest, HttpResponse};
use sha2::{Digest, Sha256};

/// The policy for every UI response: same-origin scripts, styles, images and API
/// calls; no inline code, no frames, no plugins, no form posts.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
     connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

const CACHE_CONTROL: &str = "no-cache";

/// One embedded file.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

static ASSETS: [Asset; 4] = [
    Asset { path: "/ui/", content_type: "text/html; charset=utf-8", body: include_bytes!("../ui/index.html") },
    Asset { path: "/ui/app.js", content_type: "text/javascript; charset=utf-8", body: include_bytes!("../ui/app.js") },
    Asset { path: "/ui/app.css", content_type: "text/css; charset=utf-8", body: include_bytes!("../ui/app.css") },
    Asset { path: "/ui/favicon.svg", content_type: "image/svg+xml", body: include_bytes!("../ui/favicon.svg") },
];

/// A strong ETag per asset, from its content; computed once.
static ETAGS: LazyLock<Vec<String>> =
    LazyLock::new(|| ASSETS.iter().map(|a| format!("\"{}\"", hex::encode(&Sha256::digest(a.body)[..12]))).collect());

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/ui", web::get().to(redirect_to_index));
    for (index, asset) in ASSETS.iter().enumerate() {
        let handler = move |req: HttpRequest| async move { serve(&req, index) };
        // Another method falls through to the app's default (a 405 problem with
        // `Allow`), not to the resource's own empty 405.
        cfg.service(
            web::resource(asset.path)
                .route(web::get().to(handler))
                .route(web::head().to(handler))
                .default_service(web::to(super::not_found)),
        );
    }
}

/// The UI's routes and their methods (they are not in the OpenAPI document).
pub fn routes() -> impl Iterator<Item = (&'static str, &'static [&'static str])> {
    std::iter::once(("/ui", &["GET"][..])).chain(ASSETS.iter().map(|a| (a.path, &["GET", "HEAD"][..])))
}

/// `/ui` → `/ui/`, so the page's relative world (and bookmarks without the slash) work.
async fn redirect_to_index() -> HttpResponse {
    HttpResponse::PermanentRedirect().insert_header((header::LOCATION, "/ui/")).finish()
}

fn serve(req: &HttpRequest, index: usize) -> HttpResponse {
    let asset = &ASSETS[index];
    let etag = &ETAGS[index];
    let fresh = req.headers().get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()).is_some_and(|v| etag_matches(v, etag));
    let mut res = if fresh { HttpResponse::NotModified() } else { HttpResponse::Ok() };
    res.insert_header((header::ETAG, etag.as_str()))
        .insert_header((header::CACHE_CONTROL, CACHE_CONTROL))
        .insert_header((header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")))
        .insert_header((header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")))
        .insert_header((header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")));
    if fresh {
        return res.finish();
    }
    res.insert_header((header::CONTENT_TYPE, asset.content_type)).body(asset.body)
}

/// `If-None-Match` is a list of (possibly weak) tags or `*` (RFC 9110 §13.1.2; the
/// comparison for it is the weak one).
fn etag_matches(header: &str, etag: &str) -> bool {
    header.split(',').map(str::trim).any(|t| t == "*" || t.strip_prefix("W/").unwrap_or(t) == etag)
}

#[cfg(test)]
mod tests {
    use actix_web::http::StatusCode;
    use actix_web::{test as atest, App};

    use super::*;

    async fn get(path: &str, headers: &[(&str, &str)]) -> (StatusCode, actix_web::http::header::HeaderMap, Vec<u8>) {
        let app = atest::init_service(App::new().configure(configure)).await;
        let mut req = atest::TestRequest::get().uri(path);
        for (k, v) in headers {
            req = req.insert_header((*k, *v));
        }
        let res = atest::call_service(&app, req.to_request()).await;
        let status = res.status();
        let headers = res.headers().clone();
        let body = atest::read_body(res).await.to_vec();
        (status, headers, body)
    }

    fn header<'a>(h: &'a actix_web::http::header::HeaderMap, name: &str) -> &'a str {
        h.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default()
    }

    #[actix_web::test]
    async fn every_asset_has_its_content_type_csp_and_cache_headers() {
        for (path, content_type) in [
            ("/ui/", "text/html; charset=utf-8"),
            ("/ui/app.js", "text/javascript; charset=utf-8"),
            ("/ui/app.css", "text/css; charset=utf-8"),
            ("/ui/favicon.svg", "image/svg+xml"),
        ] {
            let (status, h, body) = get(path, &[]).await;
            assert_eq!(status, StatusCode::OK, "{path}");
            assert_eq!(header(&h, "content-type"), content_type, "{path}");
            assert_eq!(header(&h, "content-security-policy"), CONTENT_SECURITY_POLICY, "{path}");
            assert_eq!(header(&h, "cache-control"), "no-cache", "{path}");
            assert_eq!(header(&h, "x-content-type-options"), "nosniff", "{path}");
            assert!(header(&h, "etag").starts_with('"'), "{path}");
            assert!(!body.is_empty(), "{path}");
        }
    }

    #[actix_web::test]
    async fn bare_ui_redirects_to_the_index() {
        let (status, h, _) = get("/ui", &[]).await;
        assert_eq!(status, StatusCode::PERMANENT_REDIRECT);
        assert_eq!(header(&h, "location"), "/ui/");
    }

    #[actix_web::test]
    async fn a_matching_etag_answers_not_modified_without_a_body() {
        let (_, h, _) = get("/ui/app.js", &[]).await;
        let etag = header(&h, "etag").to_string();
        let (status, h2, body) = get("/ui/app.js", &[("if-none-match", &format!("W/{etag}, \"other\""))]).await;
        assert_eq!(status, StatusCode::NOT_MODIFIED);
        assert_eq!(header(&h2, "etag"), etag);
        assert!(body.is_empty());
        let (status, _, _) = get("/ui/app.js", &[("if-none-match", "\"stale\"")]).await;
        assert_eq!(status, StatusCode::OK);
    }

    #[test]
    fn the_page_loads_only_its_own_files() {
        let html = std::str::from_utf8(ASSETS[0].body).unwrap();
        for asset in &ASSETS[1..] {
            assert!(html.contains(asset.path), "index.html does not reference {}", asset.path);
        }
        // No CDN, no web fonts, no inline script or style (the CSP would block them).
        for asset in &ASSETS[..3] {
            let text = std::str::from_utf8(asset.body).unwrap();
            for banned in ["http://", "https://", "@import", "url(", "<script>", "<style", " style=\"", " onclick="] {
                assert!(!text.contains(banned), "{} contains {banned:?}", asset.path);
            }
        }
    }
}
