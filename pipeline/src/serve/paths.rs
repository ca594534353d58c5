//! Everything a request names is checked here before the store is touched: clip ids (32 hex
//! digits, so they can be quoted into SQL and looked up, never used as paths) and object paths or
//! URIs taken from data (a `preview_uri` column, say), which must lie inside the dataset.

use object_store::path::Path as ObjectPath;

use super::ServeError;
use crate::store::Location;

/// A clip id as kelp writes them: 32 lowercase hex digits (BLAKE3 of video id and frame range).
pub fn clip_id(s: &str) -> Result<&str, ServeError> {
    if s.len() == 32
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        Ok(s)
    } else {
        Err(ServeError::BadRequest(format!(
            "not a clip id: {:?} (clip ids are 32 lowercase hex digits)",
            s.chars().take(80).collect::<String>()
        )))
    }
}

/// The 16 bytes a clip id spells.
pub fn clip_key(id: &str) -> Option<[u8; 16]> {
    if id.len() != 32 {
        return None;
    }
    let mut key = [0u8; 16];
    for (i, k) in key.iter_mut().enumerate() {
        *k = u8::from_str_radix(id.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(key)
}

/// The object `uri` names inside the dataset at `loc`: a path relative to the dataset root
/// (`previews/x.webp`), or a URI or absolute path that starts with the dataset's own. Anything
/// else — another bucket, another folder, `..`, `.`, a backslash, an encoded separator — is
/// refused, naming the dataset.
pub fn inside(loc: &Location, uri: &str) -> Result<ObjectPath, ServeError> {
    let refuse = |why: &str| {
        ServeError::Outside(format!(
            "{uri:?} is outside the dataset {} ({why}); kelp serve reads only objects inside it",
            loc.uri
        ))
    };
    let rel = relative_part(loc, uri).ok_or_else(|| refuse("not under its root"))?;
    if rel.is_empty() {
        return Err(refuse("no object named"));
    }
    for part in rel.split('/') {
        if part.is_empty() || part == "." || part == ".." {
            return Err(refuse("empty, '.' or '..' path segment"));
        }
        if part.contains('\\') || part.contains('%') || part.chars().any(char::is_control) {
            return Err(refuse("backslash, percent-encoding or control character"));
        }
    }
    Ok(loc.child(rel))
}

/// The part of `uri` below the dataset root, when `uri` is relative or starts with the root.
fn relative_part<'a>(loc: &Location, uri: &'a str) -> Option<&'a str> {
    let has_scheme = uri.contains("://");
    if !has_scheme && !uri.starts_with('/') {
        return Some(uri);
    }
    let roots: Vec<String> = if has_scheme {
        vec![loc.object_url(&loc.prefix)]
    } else {
        loc.local_dir
            .iter()
            .map(|d| d.to_string_lossy().into_owned())
            .collect()
    };
    roots.iter().find_map(|root| {
        let root = root.trim_end_matches('/');
        uri.strip_prefix(root)?.strip_prefix('/')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local() -> Location {
        crate::store::resolve("/data/sets/ds").unwrap()
    }

    #[test]
    fn clip_ids_are_32_lowercase_hex_digits() {
        assert!(clip_id("0123456789abcdef0123456789abcdef").is_ok());
        for bad in [
            "",
            "../../etc/passwd",
            "0123456789ABCDEF0123456789ABCDEF",
            "0123456789abcdef0123456789abcde",
            "0123456789abcdef0123456789abcdeg",
            "0123456789abcdef'; DROP TABLE x--",
        ] {
            assert!(clip_id(bad).is_err(), "{bad}");
        }
        assert_eq!(
            clip_key("000102030405060708090a0b0c0d0e0f"),
            Some([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15])
        );
    }

    #[test]
    fn objects_inside_the_dataset_are_found_and_everything_else_refused() {
        let loc = local();
        let want = loc.child("previews/a.webp");
        assert_eq!(inside(&loc, "previews/a.webp").unwrap(), want);
        assert_eq!(inside(&loc, "/data/sets/ds/previews/a.webp").unwrap(), want);
        assert_eq!(
            inside(&loc, "file:///data/sets/ds/previews/a.webp").unwrap(),
            want
        );
        for bad in [
            "../../etc/passwd",
            "previews/../../../etc/passwd",
            "./_manifest.json",
            "/etc/passwd",
            "/data/sets/ds-other/x",
            "/data/sets/ds",
            "file:///etc/passwd",
            "s3://other-bucket/ds/x.jpg",
            "previews/..%2F..%2Fetc/passwd",
            "previews\\..\\x",
            "previews//x",
        ] {
            let e = inside(&loc, bad).unwrap_err();
            assert!(matches!(e, ServeError::Outside(_)), "{bad}: {e}");
            assert!(e.to_string().contains("outside the dataset"), "{e}");
        }
    }

    #[test]
    fn object_store_datasets_accept_their_own_uris_only() {
        let loc = crate::store::resolve("memory://serve-paths/ds").unwrap();
        assert_eq!(
            inside(&loc, "memory://serve-paths/ds/media/x.mp4").unwrap(),
            loc.child("media/x.mp4")
        );
        assert!(inside(&loc, "memory://serve-paths/other/x.mp4").is_err());
        assert!(inside(&loc, "memory://elsewhere/ds/x.mp4").is_err());
    }
}
