//! "Did you mean …?" for names users mistype.

/// The candidate closest to `given` by edit distance, if it is close enough
/// to be a plausible typo (at most a third of the word, and at most 3 edits).
pub fn closest<'a>(given: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    // A typo is short: a long input is no near miss, and comparing it
    // with every name would take long.
    if given.len() > 64 {
        return None;
    }
    let given = given.to_ascii_lowercase();
    let limit = (given.chars().count() / 3).clamp(1, 3);
    candidates
        .into_iter()
        .map(|c| (distance(&given, &c.to_ascii_lowercase()), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Edit distance counting a swap of neighbours as one edit (optimal string
/// alignment), on chars: `sgi` is one edit from `sig`.
fn distance(a: &str, b: &str) -> usize {
    strsim::osa_distance(a, b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_typos_not_strangers() {
        assert_eq!(
            closest("ptrce", ["ptrace", "pread64", "kill"]),
            Some("ptrace")
        );
        assert_eq!(closest("SIGKIL", ["SIGKILL", "SIGILL"]), Some("SIGKILL"));
        assert_eq!(closest("banana", ["ptrace", "kill"]), None);
        assert_eq!(distance("", "abc"), 3);
        assert_eq!(distance("kitten", "sitting"), 3);
        assert_eq!(distance("sgi", "sig"), 1);
    }
}
