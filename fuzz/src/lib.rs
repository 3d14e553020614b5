//! Helpers shared by the fuzz targets: one input holding several named files, and
//! the check every loader error must pass.

/// Splits a fuzz input into named files.
///
/// A line `@@ name` starts a file called `name`; text before the first such line is
/// a file called `first` (left out when empty). One input can so hold a whole
/// multi-file data set (a pathway catalogue, a template folder), the fuzzer mutates
/// any file of it, and the checks across files are reached.
pub fn split_files<'a>(input: &'a str, first: &'a str) -> Vec<(&'a str, &'a str)> {
    let mut files = Vec::new();
    let mut name = first;
    let mut start = 0;
    let mut offset = 0;
    for line in input.split_inclusive('\n') {
        if let Some(next) = line.strip_prefix("@@ ") {
            if offset > 0 {
                files.push((name, &input[start..offset]));
            }
            name = next.trim_end_matches(['\n', '\r']);
            start = offset + line.len();
        }
        offset += line.len();
    }
    files.push((name, &input[start..]));
    files
}

/// A rejected input must say why: an error whose text is blank helps nobody fix the
/// file.
pub fn assert_explained(message: &str, input: &str) {
    assert!(
        !message.trim().is_empty(),
        "an error without a message for input {input:?}"
    );
}

#[cfg(test)]
mod tests {
    use super::split_files;

    #[test]
    fn splits_on_headers() {
        assert_eq!(split_files("a = 1\n", "x.toml"), [("x.toml", "a = 1\n")]);
        assert_eq!(
            split_files("@@ a.toml\na = 1\n@@ b.toml\nb = 2", "x.toml"),
            [("a.toml", "a = 1\n"), ("b.toml", "b = 2")]
        );
        assert_eq!(
            split_files("lead\n@@ a.toml\r\n", "x.toml"),
            [("x.toml", "lead\n"), ("a.toml", "")]
        );
        assert_eq!(split_files("", "x.toml"), [("x.toml", "")]);
    }
}
