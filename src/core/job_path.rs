//! The one rule for a path a job supplies (`params.file`, `params.output`): a relative path
//! with `/` between its parts that means the same file under a node's root on Linux, macOS and
//! Windows. The server checks it at submit (a 400 naming the field) and the node checks it
//! again before it touches a file (a server of another version, or a stored job, may let
//! anything through); both call [`check`].
//!
//! Refused, with the reason returned:
//! - empty, longer than 4,096 bytes, a leading `-` (a program would read it as a flag), control
//!   characters;
//! - absolute: a leading `/`; any `\` (a Windows separator, or the start of `\\server\share`);
//!   any `:` (a drive, `C:\x`, or the drive-relative `C:x`; a Windows alternate data stream,
//!   `file:stream`);
//! - a `..` part, an empty part (`a//b`, a trailing `/`);
//! - parts Windows alters or reserves: the device names `CON`, `PRN`, `AUX`, `NUL`, `COM0`-`COM9`,
//!   `LPT0`-`LPT9` in any case and with any extension (`nul.txt`), a trailing `.` or space, and
//!   the characters `< > " | ? *`.
//!
//! `.` parts are allowed (they add nothing). Pure string logic: no file is looked at.

/// Longest path accepted, bytes.
pub const MAX_LEN: usize = 4096;

/// Checks a job-supplied relative path; `Err` says why it is refused.
pub fn check(path: &str) -> Result<(), &'static str> {
    if path.is_empty() {
        return Err("is empty");
    }
    if path.len() > MAX_LEN {
        return Err("is longer than 4096 bytes");
    }
    if path.starts_with('-') {
        return Err("starts with '-' (would be read as a flag)");
    }
    if path.chars().any(char::is_control) {
        return Err("contains control characters");
    }
    if path.starts_with('/') {
        return Err("is absolute; give a path under the root");
    }
    let b = path.as_bytes();
    if b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b':' {
        return Err("names a drive (as in C:\\x or C:x); give a path under the root");
    }
    if path.contains('\\') {
        return Err("contains '\\'; separate parts with '/'");
    }
    if path.contains(':') {
        return Err("contains ':' (a Windows alternate data stream)");
    }
    path.split('/').try_for_each(check_component)
}

/// Checks one part of a path (between two `/`).
pub fn check_component(part: &str) -> Result<(), &'static str> {
    match part {
        "" => return Err("has an empty part ('//' or a trailing '/')"),
        "." => return Ok(()),
        ".." => return Err("contains '..'"),
        _ => {}
    }
    if part.contains(['<', '>', '"', '|', '?', '*', ':', '\\', '/']) {
        return Err("contains one of < > \" | ? * : \\ (not allowed in Windows file names)");
    }
    if part.ends_with('.') || part.ends_with(' ') {
        return Err("has a part ending in '.' or a space (Windows drops them)");
    }
    if is_reserved(part) {
        return Err(
            "has a part that is a Windows device name (CON, PRN, AUX, NUL, COM1, LPT1, ...)",
        );
    }
    Ok(())
}

/// Whether Windows reads `part` as a device: the name before the first `.`, without trailing
/// spaces, is a device name in any case.
fn is_reserved(part: &str) -> bool {
    let stem = part.split('.').next().unwrap_or(part).trim_end_matches(' ');
    let upper = stem.to_ascii_uppercase();
    if matches!(
        upper.as_str(),
        "CON" | "PRN" | "AUX" | "NUL" | "CONIN$" | "CONOUT$"
    ) {
        return true;
    }
    let mut chars = upper.chars();
    let last = chars.next_back();
    matches!(chars.as_str(), "COM" | "LPT") && matches!(last, Some('0'..='9' | '¹' | '²' | '³'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_relative_paths_pass() {
        for ok in [
            "shots/a.blend",
            "a",
            "./shots/a.blend",
            "out/frame_####",
            "con_art/console.blend",
            "nullable/auxiliary.png",
            "COM10/x",
            "LPT/x",
            "a b/c d.png",
            "ünïcode/ファイル.blend",
            ".hidden/x",
        ] {
            assert_eq!(check(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn absolute_and_escaping_paths_are_refused() {
        for (bad, why) in [
            ("", "empty"),
            ("/etc/passwd", "absolute"),
            ("-o", "flag"),
            ("shots/../../etc", ".."),
            ("..", ".."),
            ("a//b", "empty part"),
            ("a/", "empty part"),
            ("a\nb", "control"),
        ] {
            let err = check(bad).unwrap_err();
            assert!(err.contains(why), "{bad:?}: {err}");
        }
    }

    #[test]
    fn windows_forms_are_refused_on_every_platform() {
        for (bad, why) in [
            (r"shots\a.blend", "'\\'"),
            (r"..\..\x", "'\\'"),
            (r"\\server\share\x", "'\\'"),
            (r"\Windows\x", "'\\'"),
            (r"C:\Windows\x", "drive"),
            ("C:foo", "drive"),
            ("c:/x", "drive"),
            ("a.blend:stream", "stream"),
            ("shots/a.png::$DATA", "stream"),
            ("CON", "device"),
            ("nul", "device"),
            ("shots/NUL.png", "device"),
            ("aux.tar.gz", "device"),
            ("Com1/x", "device"),
            ("lpt9.txt", "device"),
            ("COM¹", "device"),
            ("con .txt", "device"),
            ("CONOUT$", "device"),
            ("shots./a", "'.'"),
            ("shot /a", "space"),
            ("a?.png", "not allowed"),
            ("a*.png", "not allowed"),
            ("a|b", "not allowed"),
            ("a<b>", "not allowed"),
            ("\"q\"", "not allowed"),
        ] {
            let err = check(bad).unwrap_err();
            assert!(err.contains(why), "{bad:?}: {err}");
        }
    }

    #[test]
    fn overlong_paths_are_refused() {
        assert!(check(&"a/".repeat(3000)).is_err());
    }
}
