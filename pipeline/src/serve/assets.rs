//! The page: one HTML file, its script and its style sheet, compiled into the binary
//! (`include_str!`), so `kelp serve` needs no files beside it and nothing from the network. The
//! script is plain browser JavaScript (no framework, no build step); only the names listed here
//! are served, so no request path ever reaches the filesystem.

const FILES: &[(&str, &str, &str)] = &[
    (
        "index.html",
        include_str!("assets/index.html"),
        "text/html; charset=utf-8",
    ),
    (
        "app.js",
        include_str!("assets/app.js"),
        "text/javascript; charset=utf-8",
    ),
    (
        "style.css",
        include_str!("assets/style.css"),
        "text/css; charset=utf-8",
    ),
];

/// An asset's text and content type, by exact name.
pub fn get(name: &str) -> Option<(&'static str, &'static str)> {
    FILES
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, body, ct)| (*body, *ct))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_nothing_from_outside_the_server() {
        for (name, body, _) in FILES {
            for remote in ["http://", "https://", "//cdn", "@import url("] {
                assert!(!body.contains(remote), "{name} refers to {remote}");
            }
        }
        assert!(get("index.html").is_some());
        assert!(get("../Cargo.toml").is_none());
    }
}
